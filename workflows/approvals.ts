// A run's approvals and abort: the `approve` and `abort` updates, and the wait at an approval
// gate. A decision counts only once a worker has verified its signature (activities/approvals.ts):
// the update validator does the cheap checks, the handler awaits the verifier and checks the run's
// state again afterwards, since the run may have moved on while it waited (the shape of
// temporalio/samples-typescript's safe-message-handlers).
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/common';
import type { DecisionActivities } from '../activities/approvals';
import {
  caseSubject,
  DECISION_REFUSED,
  type DecisionClaim,
  type DecisionSignature,
  type VerifiedDecision,
} from '../src/contract/approvals';
import { durationMs } from '../src/contract/runbook/duration';
import type {
  AbortInput,
  ApproveInput,
  PendingApproval,
  RunInput,
  RunRecord,
  StepState,
} from '../src/contract/runbook/types';
import type { CaseResolveInput } from '../src/contract/reconcile';

export const approveUpdate = wf.defineUpdate<string, [ApproveInput]>('approve');
export const abortUpdate = wf.defineUpdate<string, [AbortInput]>('abort');

// On the run's own task queue: the control workers that run the workflow verify its decisions.
const { verifyDecision } = wf.proxyActivities<DecisionActivities>({
  startToCloseTimeout: '20s',
  // A person is waiting on the answer: a verifier that cannot be reached is an error soon, not a hang.
  scheduleToCloseTimeout: '1m',
  retry: { initialInterval: '200ms', maximumAttempts: 3 },
});

const iso = (ms: number = Date.now()): string => new Date(ms).toISOString();

function refusal(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: DECISION_REFUSED, message, nonRetryable: true });
}

export interface DecisionsContext {
  input: RunInput;
  rec: RunRecord;
  stepState(id: string): StepState;
  publish(): void;
  refuse(message: string): never;
  /** Called once an abort is verified. */
  onAbort(): void;
}

interface Decided {
  by: string;
  decision: 'approve' | 'reject';
  reason?: string;
  signed: string;
}

export class RunDecisions {
  private readonly approvers: string[];
  private readonly quorum: number;
  private decision: Decided | undefined;
  /** Keys that approved the pending gate: two approvals need two keys, not one key under two names. */
  private keysSoFar: string[] = [];
  private readonly nonces = new Set<string>();
  private readonly info = wf.workflowInfo();

  constructor(private readonly ctx: DecisionsContext) {
    this.approvers = ctx.input.approval?.approvers ?? ctx.input.policy.approvers.map((a) => a.name);
    this.quorum = ctx.input.approval?.quorum ?? 1;
  }

  install(): void {
    wf.setHandler(approveUpdate, (a) => this.approve(a), { validator: (a) => this.validateApprove(a) });
    wf.setHandler(abortUpdate, (a) => this.abort(a), { validator: (a) => this.validateAbort(a) });
  }

  /** Waits for a verified decision at a gate (or the data-loss acknowledgement); throws on reject or a timeout that rejects. */
  async awaitApproval(stepId: string, reason: string, gate = false): Promise<{ by: string; reason?: string }> {
    const { input, rec } = this.ctx;
    // The run's own override applies to its approval gate; a data-loss acknowledgement keeps the policy's.
    const { approvalTimeout, onApprovalTimeout } =
      gate && input.approval
        ? { approvalTimeout: input.approval.timeout, onApprovalTimeout: input.approval.onTimeout }
        : input.policy;
    const timeoutMs = durationMs(approvalTimeout);
    const pending: PendingApproval = {
      stepId,
      reason,
      requestedAt: iso(),
      timeoutAt: iso(Date.now() + timeoutMs),
      ...(this.quorum > 1 ? { quorum: this.quorum } : {}),
    };
    rec.pendingApproval = pending;
    this.decision = undefined;
    this.keysSoFar = [];
    this.ctx.stepState(stepId).status = 'waiting';
    this.ctx.publish();
    const decided = await wf.condition(() => this.decision !== undefined, timeoutMs);
    rec.pendingApproval = undefined;
    if (!decided) {
      rec.approvals.push({ stepId, by: 'timeout', decision: 'timeout', at: iso() });
      if (onApprovalTimeout === 'proceed')
        return { by: 'timeout', reason: `no answer within ${approvalTimeout}; policy proceeds` };
      this.ctx.refuse(`no approval within ${approvalTimeout} (${reason}); policy rejects on timeout`);
    }
    const d = this.decision!;
    rec.approvals.push({ stepId, by: d.by, decision: d.decision, at: iso(), reason: d.reason, signed: d.signed });
    if (d.decision === 'reject') this.ctx.refuse(`rejected by ${d.by}${d.reason ? `: ${d.reason}` : ''}`);
    return { by: d.by, reason: d.reason };
  }

  /** Lets a decision being verified get its answer before the run ends. */
  async drain(): Promise<void> {
    await wf.CancellationScope.nonCancellable(() => wf.condition(wf.allHandlersFinished));
  }

  private unsigned(what: string, by: string, flag: string): string {
    return `${what} by ${by} is not signed: sign it with your SSH key (regionshift ${flag} --by ${by} --key ~/.ssh/id_ed25519), or decide from Slack`;
  }

  private validateApprove(a: ApproveInput): void {
    const { input, rec } = this.ctx;
    if (!rec.pendingApproval) throw new Error(`run ${this.info.workflowId} is not waiting for an approval`);
    if (!a.signature?.value)
      throw new Error(
        this.unsigned(
          `the ${a.decision === 'reject' ? 'rejection' : 'approval'}`,
          a.by,
          `approve ${input.service}${a.decision === 'reject' ? ' --reject' : ''}`,
        ),
      );
    if (this.nonces.has(a.signature.nonce))
      throw new Error(`this signature was already used (nonce ${a.signature.nonce}): sign the decision again`);
    if (a.by === input.requestedBy) throw new Error(`${a.by} requested this run and cannot approve it`);
    if (!this.approvers.includes(a.by) && !a.groups?.some((g: string) => this.approvers.includes(g))) {
      throw new Error(
        `${a.by} may not approve runs of ${input.service}; approvers: ${this.approvers.join(', ') || 'none are configured'}`,
      );
    }
    if (rec.pendingApproval.approvedBy?.includes(a.by))
      throw new Error(`${a.by} has already approved; a second, different approver is needed`);
  }

  private async approve(a: ApproveInput): Promise<string> {
    const { rec } = this.ctx;
    const stepId = rec.pendingApproval!.stepId;
    const verified = await this.verify(
      { kind: a.decision, subject: stepId, by: a.by, groups: a.groups ?? [], reason: a.reason ?? '' },
      a.signature,
    );
    // The gate may have timed out, or been decided, while the signature was checked.
    const pending = rec.pendingApproval;
    if (!pending || pending.stepId !== stepId || this.decision)
      throw refusal(`the approval of step ${stepId} is no longer pending; nothing was changed`);
    if (pending.approvedBy?.includes(a.by))
      throw refusal(`${a.by} has already approved; a second, different approver is needed`);
    if (a.decision === 'approve' && this.keysSoFar.includes(verified.key)) {
      throw refusal(
        `${verified.signedAs} has already approved this step under another name; a second approver with their own key is needed`,
      );
    }
    if (a.decision === 'approve' && (pending.approvedBy?.length ?? 0) + 1 < this.quorum) {
      pending.approvedBy = [...(pending.approvedBy ?? []), a.by];
      this.keysSoFar.push(verified.key);
      rec.approvals.push({
        stepId,
        by: a.by,
        decision: 'approve',
        at: iso(),
        reason: a.reason,
        signed: verified.signedAs,
      });
      return `approval ${pending.approvedBy.length} of ${this.quorum} by ${a.by}; waiting for another approver`;
    }
    this.decision = { by: a.by, decision: a.decision, reason: a.reason, signed: verified.signedAs };
    return `${a.decision === 'approve' ? 'approved' : 'rejected'} by ${a.by}`;
  }

  private validateAbort(a: AbortInput): void {
    const { input, rec } = this.ctx;
    if (rec.status !== 'running') throw new Error(`run ${this.info.workflowId} has already ${rec.status}`);
    if (rec.abort) throw new Error(`run ${this.info.workflowId} is already being aborted`);
    if (!a.signature?.value) throw new Error(this.unsigned('the abort', a.by, `abort ${input.service} --reason …`));
    if (this.nonces.has(a.signature.nonce))
      throw new Error(`this signature was already used (nonce ${a.signature.nonce}): sign the abort again`);
  }

  private async abort(a: AbortInput): Promise<string> {
    const { rec } = this.ctx;
    const verified = await this.verify(
      { kind: 'abort', subject: 'run', by: a.by, groups: a.groups ?? [], reason: a.reason },
      a.signature,
    );
    if (rec.abort) throw refusal(`run ${this.info.workflowId} is already being aborted (by ${rec.abort.by})`);
    if (rec.status !== 'running') throw refusal(`run ${this.info.workflowId} has already ${rec.status}`);
    rec.abort = { by: a.by, reason: a.reason, signed: verified.signedAs };
    this.ctx.onAbort();
    return `abort requested by ${a.by}: compensating`;
  }

  private async verify(
    part: Omit<DecisionClaim, 'workflowId' | 'runId'>,
    signature: DecisionSignature | undefined,
  ): Promise<VerifiedDecision> {
    // A decision a run accepted before decisions were signed replays as it ran then (no activity);
    // every decision sent to it since is verified.
    if (!wf.patched('signed-decisions'))
      return {
        by: part.by,
        scheme: 'ssh',
        key: `unsigned:${part.by}`,
        signedAs: `${part.by} (unsigned, before signing)`,
      };
    // Taken before the wait, so the same signature sent twice at once is refused the second time.
    this.nonces.add(signature!.nonce);
    const claim: DecisionClaim = { ...part, workflowId: this.info.workflowId, runId: this.info.runId };
    try {
      return await verifyDecision({
        service: this.ctx.input.service,
        mode: this.ctx.input.mode,
        claim,
        signature: signature!,
        requester: this.ctx.input.requestedBy,
      });
    } catch (err) {
      const cause = err instanceof wf.ActivityFailure ? err.cause : err;
      throw refusal(cause instanceof Error ? cause.message : String(cause));
    }
  }
}

/**
 * Verifies a case decision inside the cases workflow, before the case is touched; returns how it
 * was signed. The claim names this workflow's id, which the caller chose (and signed) before
 * starting it. Cases are decided by the approvers of unplanned runs, as in Slack.
 */
export async function verifyCaseDecision(r: CaseResolveInput): Promise<string> {
  const refused = (message: string) => ApplicationFailure.create({ type: 'CaseRefused', message, nonRetryable: true });
  if (!r.signature?.value) {
    throw refused(
      `the decision on case ${r.caseId} by ${r.by} is not signed: sign it with your SSH key (regionshift cases resolve ${r.caseId} --by ${r.by} --key ~/.ssh/id_ed25519 …), or decide from Slack`,
    );
  }
  const claim: DecisionClaim = {
    kind: 'case',
    workflowId: wf.workflowInfo().workflowId,
    runId: '',
    subject: caseSubject(r),
    by: r.by,
    groups: r.groups ?? [],
    reason: r.note ?? '',
  };
  try {
    return (await verifyDecision({ service: r.service, mode: 'unplanned', claim, signature: r.signature })).signedAs;
  } catch (err) {
    const cause = err instanceof wf.ActivityFailure ? err.cause : err;
    throw refused(cause instanceof Error ? cause.message : String(cause));
  }
}
