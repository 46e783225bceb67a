// One Temporal Schedule per service runs the readiness workflow every `readiness.every`; the
// evaluation is that run's result. Made (or brought up to date with the config) by whoever asks
// for readiness and by the intake when it starts, so a config change reaches it the same way.
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Config, Service } from './config/schema';
import { residencyRuleOf } from '../contract/policy/residency';
import { CONTROL_TASK_QUEUE, runWorkflowId } from '../contract/runbook/ids';
import { durationMs } from '../contract/runbook/duration';
import { askEachService } from './metrics/guardian-states';
import type { ReadinessStateName } from './metrics/registry';
import { approvalOverride } from './config/approval';
import { serviceTriggersOf } from './config/triggers';
import { loadServiceRunbook } from './runbooks';
import type { Mode, RunbookDoc } from '../contract/runbook/types';
import type { ApprovalNeed, ReadinessEvaluation, ReadinessInput } from '../contract/readiness';

export const readinessScheduleId = (service: string): string => `regionshift-readiness-${service}`;

/**
 * Who must approve a failover of each mode: a person's run by policy.approval, an alarm's or a
 * Slack run by the service's triggers; an unplanned run whose fence is not verified needs an
 * acknowledgement too unless allowDataLoss.
 */
function approvalNeeds(service: Service): Record<Mode, ApprovalNeed> {
  const need = (mode: Mode): ApprovalNeed => {
    const o = approvalOverride(service, mode);
    // Absent, the triggers' approval is the policy's: said once.
    const ownTrigger = serviceTriggersOf(service).approval[mode] !== undefined;
    const why = [
      ...(service.policy.approval[mode] === 'required' ? [`policy.approval.${mode}: required`] : []),
      ...(o.required && ownTrigger ? [`triggers.approval.${mode} for alarm and Slack runs`] : []),
      ...(mode === 'unplanned' && !service.policy.allowDataLoss
        ? ['an unverified fence needs an acknowledgement (allowDataLoss: false)']
        : []),
    ];
    return { required: why.length > 0, quorum: o.quorum ?? 1, why: why.join('; ') };
  };
  return { planned: need('planned'), unplanned: need('unplanned') };
}

/** The evaluation's input; with the failover runbook, each target's dry run runs it (per-target readiness). */
export function readinessInputOf(config: Config, service: Service, failover?: RunbookDoc): ReadinessInput {
  const residency = residencyRuleOf(config, service);
  const trafficDrain =
    service.traffic.provider === 'route53' && service.traffic.routing === 'weighted'
      ? service.traffic.drain
      : undefined;
  return {
    service: service.name,
    regions: service.regions,
    rpoBudgetSeconds: service.policy.rpoBudgetSeconds,
    ...(residency ? { residency } : {}),
    ...(service.traffic.provider === 'route53' ? { endpoints: service.traffic.endpoints } : {}),
    ...(failover
      ? {
          failover: {
            runbook: failover,
            service: service.name,
            regions: service.regions,
            policy: service.policy,
            ...(trafficDrain ? { trafficDrain } : {}),
            ...(service.cache ? { cache: true } : {}),
          },
        }
      : {}),
    approval: approvalNeeds(service),
  };
}

async function action(config: Config, service: Service) {
  return {
    type: 'startWorkflow' as const,
    workflowType: 'readiness',
    workflowId: readinessScheduleId(service.name),
    taskQueue: CONTROL_TASK_QUEUE,
    // The runbook as it is now: a later edit reaches the schedule the way a config change does.
    args: [readinessInputOf(config, service, await loadServiceRunbook(config, service.name, 'failover'))],
    workflowExecutionTimeout: 120_000,
  };
}

/** Creates the service's schedule, or updates its interval and input to the config's. */
export async function ensureReadinessSchedule(client: Client, config: Config, service: Service): Promise<void> {
  const scheduleId = readinessScheduleId(service.name);
  const spec = { intervals: [{ every: durationMs(config.readiness.every) }] };
  const next = await action(config, service);
  try {
    await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec, action: next }));
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    await client.schedule.create({
      scheduleId,
      spec,
      action: next,
      // An evaluation still running when the next is due (a region's worker slow to answer) is enough.
      policies: { overlap: ScheduleOverlapPolicy.SKIP },
      // The first evaluation is the asker's (latestReadiness triggers one when there is none).
      state: { note: `failover readiness of ${service.name} every ${config.readiness.every} (regionshift readiness)` },
    });
  }
}

async function resultOf(client: Client, workflowId: string, runId: string): Promise<ReadinessEvaluation> {
  return client.workflow.getHandle(workflowId, runId).result() as Promise<ReadinessEvaluation>;
}

type ScheduleHandle = ReturnType<Client['schedule']['getHandle']>;

/** The schedule's most recent start of an evaluation, if any. */
async function lastAction(
  handle: ScheduleHandle,
): Promise<{ takenAt: number; workflowId: string; firstExecutionRunId: string } | undefined> {
  const actions = (await handle.describe()).info.recentActions;
  const a = actions[actions.length - 1];
  return a?.action.type === 'startWorkflow' ? { takenAt: a.takenAt.getTime(), ...a.action.workflow } : undefined;
}

/**
 * The evaluation the schedule made last, without asking for one: undefined when there is no
 * schedule yet, it has made none, or the last one is still running (`regionshift status`).
 */
export async function recordedReadiness(client: Client, service: string): Promise<ReadinessEvaluation | undefined> {
  try {
    const last = await lastAction(client.schedule.getHandle(readinessScheduleId(service)));
    if (!last) return undefined;
    const handle = client.workflow.getHandle(last.workflowId, last.firstExecutionRunId);
    if ((await handle.describe()).status.name !== 'COMPLETED') return undefined;
    return (await handle.result()) as ReadinessEvaluation;
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return undefined;
    throw err;
  }
}

/** Each service's last evaluation's status for /metrics; unknown when there is none or it cannot be read within `timeoutMs`. */
export function readinessStates(
  client: Client,
  services: string[],
  timeoutMs = 2000,
): Promise<Record<string, ReadinessStateName>> {
  return askEachService(
    services,
    async (service) => (await recordedReadiness(client, service))?.status ?? 'unknown',
    timeoutMs,
  );
}

/** Whether a run of the service (not a dry run) ended after `since`: the writer may have moved. */
async function ranSince(client: Client, service: string, since: number): Promise<boolean> {
  const query = `WorkflowId = '${runWorkflowId(service)}' AND RegionshiftMode != 'dry-run' AND CloseTime > '${new Date(since).toISOString()}'`;
  for await (const _ of client.workflow.list({ query, pageSize: 1 })) return true;
  return false;
}

/**
 * The latest evaluation the schedule made; with `now`, when it has made none yet, or when a run of
 * the service ended after it (the evaluation may name the old writer), a fresh one triggered
 * through the schedule and waited for.
 */
export async function latestReadiness(
  client: Client,
  config: Config,
  service: Service,
  opts: { now?: boolean; timeoutMs?: number } = {},
): Promise<ReadinessEvaluation> {
  await ensureReadinessSchedule(client, config, service);
  const handle = client.schedule.getHandle(readinessScheduleId(service.name));
  const last = () => lastAction(handle);
  const before = await last();
  if (before && !opts.now && !(await ranSince(client, service.name, before.takenAt)))
    return resultOf(client, before.workflowId, before.firstExecutionRunId);
  // The schedule names each run by its start time to the second: a second trigger within the
  // same second as the last run would collide with it and start nothing.
  if (before && Math.floor(before.takenAt / 1000) === Math.floor(Date.now() / 1000))
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 10));
  const asked = Date.now();
  await handle.trigger(ScheduleOverlapPolicy.ALLOW_ALL);
  const deadline = asked + (opts.timeoutMs ?? 60_000);
  for (;;) {
    const now = await last();
    if (now && (!before || now.firstExecutionRunId !== before.firstExecutionRunId) && now.takenAt >= asked - 1_000)
      return resultOf(client, now.workflowId, now.firstExecutionRunId);
    if (Date.now() > deadline)
      throw new Error(
        `the readiness schedule of ${service.name} started no evaluation within ${(opts.timeoutMs ?? 60_000) / 1000} s of being triggered; is a control worker running?`,
      );
    await new Promise((r) => setTimeout(r, 200));
  }
}
