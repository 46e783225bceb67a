// The approval rules of runs started by alarms (the guardian) and from Slack, per service and
// mode: `triggers.approval`, `triggers.approvers`, `triggers.twoApprovers`; absent, the service
// policy's approval settings. Passed to the run as RunInput.approval.
import type { Service } from './schema';
import { serviceTriggersOf, type ModeApproval } from './triggers';
import type { ApprovalOverride, Mode } from '../../contract/runbook/types';

/** The mode's policy as configured, or as the service policy implies it. */
export function modeApproval(service: Service, mode: Mode): ModeApproval {
  const configured = serviceTriggersOf(service).approval[mode];
  if (configured) return configured;
  const p = service.policy;
  if (p.approval[mode] === 'none') return { policy: 'auto' };
  return p.onApprovalTimeout === 'proceed'
    ? { policy: 'approve-or-proceed-after', after: p.approvalTimeout }
    : { policy: 'approve' };
}

/** Slack approvers (user and user-group ids) for the mode, plus the policy's named approvers. */
export function approversFor(service: Service, mode: Mode): string[] {
  const slack = serviceTriggersOf(service).approvers[mode] ?? [];
  return [...new Set([...service.policy.approvers.map((a) => a.name), ...slack])];
}

export function approvalOverride(service: Service, mode: Mode): ApprovalOverride {
  const m = modeApproval(service, mode);
  const approvers = approversFor(service, mode);
  const quorum = serviceTriggersOf(service).twoApprovers[mode] ? 2 : 1;
  const base = { approvers, ...(quorum > 1 ? { quorum } : {}) };
  switch (m.policy) {
    case 'auto':
      return { ...base, required: false, timeout: service.policy.approvalTimeout, onTimeout: 'reject' };
    case 'approve':
      return { ...base, required: true, timeout: m.timeout ?? service.policy.approvalTimeout, onTimeout: 'reject' };
    case 'approve-or-proceed-after':
      return { ...base, required: true, timeout: m.after, onTimeout: 'proceed' };
  }
}

/** One line for people: "approve-or-proceed-after 5m, two approvers". */
export function describeApproval(a: ApprovalOverride): string {
  const what = !a.required
    ? 'automatic (no approval gate)'
    : a.onTimeout === 'proceed'
      ? `proceeds after ${a.timeout} unless rejected`
      : `needs approval within ${a.timeout}`;
  return `${what}${(a.quorum ?? 1) > 1 ? `, ${a.quorum} distinct approvers` : ''}`;
}
