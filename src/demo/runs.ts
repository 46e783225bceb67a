// Running a failover the way an operator would, through the same client API as the CLI, with
// the demo standing in for the on-call approver: each approval the run asks for is granted, and
// what it was asked and why is printed.
import type { Client, WorkflowExecutionDescription } from '@temporalio/client';
import type { Config } from '../lib/config/schema';
import { runUiUrl } from '../present/run';
import { loadServiceRunbook } from '../lib/runbooks';
import { runWorkflowId } from '../contract/runbook/ids';
import type { Mode, RunInput, RunRecord } from '../contract/runbook/types';
import type { DecisionSigner } from '../lib/sign';
import { approveRun, awaitRecord, buildRunInput, progressOf, RefusedError, startRun } from '../lib/runs/client';
import { isClusterSilence } from '../lib/runs/following';
import { buildFollowUpInput } from '../lib/runs/reconcile';
import { buildDrainInput, buildUndrainInput } from '../lib/runs/drain';
import { guardianWorkflowId } from '../contract/guardian/ids';
import type { GuardianView } from '../contract/guardian/types';

export interface Approver {
  by: string;
  reason: string;
  /** Signs as `by` (their SSH key, listed for them in the config). */
  signer: DecisionSigner;
}

export interface FailoverRequest {
  service: string;
  target: string;
  mode: Mode;
  requestedBy: string;
  trigger: string;
  triggeredAt?: number;
  /**
   * Approves every gate the run waits on; without it a gate waits for a person. Watching for
   * gates means querying the workflow every 100 ms, which costs the control worker CPU: leave it
   * out where no gate can come (and where timings are measured).
   */
  approver?: Approver;
  /** Called with each line a person watching should see. */
  onProgress?: (line: string) => void;
}

export interface FailoverRun {
  record: RunRecord;
  workflowId: string;
  runId: string;
  uiUrl: string;
  /** The gates the approver answered: the step and the reason the workflow gave. */
  approved: { stepId: string; reason: string }[];
}

const POLL_MS = 100;

export async function runFailover(client: Client, config: Config, req: FailoverRequest): Promise<FailoverRun> {
  const input = buildRunInput(config, await loadServiceRunbook(config, req.service, 'failover'), {
    service: req.service,
    target: req.target,
    mode: req.mode,
    dryRun: false,
    requestedBy: req.requestedBy,
    trigger: req.trigger,
    triggeredAt: req.triggeredAt,
  });
  return runInput(client, config, input, req);
}

export interface FollowUpRunRequest extends Omit<FailoverRequest, 'target' | 'mode' | 'triggeredAt'> {
  kind: 'reconcile' | 'failback';
  overrideReason?: string;
}

/** A reconcile or failback run after the service's latest unplanned failover, as `regionshift reconcile|failback` starts it. */
export async function runFollowUp(client: Client, config: Config, req: FollowUpRunRequest): Promise<FailoverRun> {
  const input = await buildFollowUpInput(client, config, await loadServiceRunbook(config, req.service, req.kind), {
    service: req.service,
    requestedBy: req.requestedBy,
    trigger: req.trigger,
    ...(req.overrideReason ? { overrideReason: req.overrideReason } : {}),
  });
  return runInput(client, config, input, req);
}

export interface DrainRunRequest extends Omit<FailoverRequest, 'target' | 'mode'> {
  kind: 'drain' | 'undrain';
  region: string;
}

/** A drain, or the undrain of the region's latest drain, as `regionshift drain|undrain` starts it. */
export async function runDrain(client: Client, config: Config, req: DrainRunRequest): Promise<FailoverRun> {
  const runbook = await loadServiceRunbook(config, req.service, req.kind);
  const drainReq = {
    service: req.service,
    region: req.region,
    requestedBy: req.requestedBy,
    trigger: req.trigger,
    triggeredAt: req.triggeredAt,
  };
  const input =
    req.kind === 'undrain'
      ? await buildUndrainInput(client, config, runbook, drainReq)
      : buildDrainInput(config, runbook, drainReq);
  return runInput(client, config, input, req);
}

async function runInput(
  client: Client,
  config: Config,
  input: RunInput,
  req: Pick<FailoverRequest, 'approver' | 'onProgress' | 'service'>,
): Promise<FailoverRun> {
  const run = await startRun(client, input);
  (req.onProgress ?? (() => undefined))(`  started ${run.workflowId} run ${run.runId}`);
  return followRun(client, config, run, req);
}

export interface GuardianRunRequest {
  service: string;
  /** The run wanted is the first one that started at or after this (ms since epoch): the kill. */
  startedAfter: number;
  /** How long the guardian may take to start it before the demo gives up and says what the guardian saw. */
  timeoutMs: number;
  approver?: Approver;
  onProgress?: (line: string) => void;
}

/**
 * The run the guardian starts from the alerts, followed as runFailover follows the ones it starts
 * itself: the demo waits for it to appear under the service's run id, answers its gates as the
 * on-call, and returns its record. Nobody but the guardian starts it.
 */
export async function awaitGuardianRun(
  client: Client,
  config: Config,
  req: GuardianRunRequest,
): Promise<FailoverRun & { seenAt: number }> {
  const handle = client.workflow.getHandle(runWorkflowId(req.service));
  const deadline = Date.now() + req.timeoutMs;
  for (;;) {
    const desc = await handle.describe().catch((err: Error) => {
      if (err.name === 'WorkflowNotFoundError') return undefined;
      // A replicated control plane that lost the namespace's active cluster with the region: no
      // cluster answers for it until the intake fails it over to a survivor (this client's).
      if (isClusterSilence(err)) return undefined;
      throw err;
    });
    if (desc && desc.startTime.getTime() >= req.startedAfter) {
      const seenAt = Date.now();
      (req.onProgress ?? (() => undefined))(
        `  the guardian started ${desc.workflowId} run ${desc.runId} ${desc.startTime.getTime() - req.startedAfter} ms after the kill`,
      );
      return { ...(await followRun(client, config, { workflowId: desc.workflowId, runId: desc.runId }, req)), seenAt };
    }
    if (Date.now() > deadline) {
      const view = await client.workflow
        .getHandle(guardianWorkflowId(req.service))
        .query<GuardianView>('state')
        .catch((err: Error) => err);
      const saw =
        view instanceof Error
          ? `the guardian could not be asked (${view.message})`
          : `the guardian's last decisions: ${
              view.decisions
                .slice(-4)
                .map((d) => `${d.kind}: ${d.detail}`)
                .join(' | ') || 'none'
            }`;
      throw new Error(`no run of ${req.service} started within ${req.timeoutMs / 1000} s of the kill; ${saw}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** The guardian's cooldown after the last run (whoever ran it), when one is still on: until then no alert starts anything. */
export async function guardianCooldownUntil(client: Client, service: string): Promise<number | undefined> {
  try {
    const view = await client.workflow.getHandle(guardianWorkflowId(service)).query<GuardianView>('state');
    return view.inCooldown && view.cooldownUntil ? Date.parse(view.cooldownUntil) : undefined;
  } catch (err) {
    // No guardian yet: the intake starts it with the first alert, with no run to cool down from.
    if ((err as Error).name === 'WorkflowNotFoundError') return undefined;
    throw err;
  }
}

async function followRun(
  client: Client,
  config: Config,
  run: { workflowId: string; runId: string },
  req: Pick<FailoverRequest, 'approver' | 'onProgress' | 'service'>,
): Promise<FailoverRun> {
  const say = req.onProgress ?? (() => undefined);
  const uiUrl = runUiUrl(config.temporal.uiUrl, config.temporal.namespace, run.workflowId, run.runId);
  say(`  ${uiUrl}`);
  const approved: FailoverRun['approved'] = [];
  let done = false;
  const approving = req.approver ? approveWhileRunning() : Promise.resolve();
  try {
    const record = await awaitRecord(client, run.workflowId, run.runId);
    return { record, workflowId: run.workflowId, runId: run.runId, uiUrl, approved };
  } finally {
    done = true;
    await approving;
  }

  async function approveWhileRunning(): Promise<void> {
    const approver = req.approver!;
    const handle = client.workflow.getHandle(run.workflowId, run.runId);
    const answered = new Set<string>();
    while (!done) {
      const rec = await handle.query<RunRecord>('progress').catch(() => undefined);
      const pending = rec?.pendingApproval;
      const key = pending && `${pending.stepId}@${pending.requestedAt}`;
      if (pending && key && !answered.has(key)) {
        answered.add(key);
        say(`  approval asked at step ${pending.stepId}: ${pending.reason}`);
        try {
          await approveRun(
            client,
            run.workflowId,
            { by: approver.by, decision: 'approve', reason: approver.reason },
            approver.signer,
          );
          approved.push({ stepId: pending.stepId, reason: pending.reason });
          say(`  approved by ${approver.by} (playing the on-call): "${approver.reason}"`);
        } catch (err) {
          say(
            `  could not approve as ${approver.by}: ${(err as Error).message}; the run waits for a person: regionshift approve ${req.service} --by <you> --key <your ssh key>`,
          );
        }
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
}

/**
 * A run of the service left in flight by an earlier demo or bench (interrupted, or waiting for an
 * approval nobody will give) is terminated; anyone else's run is not ours to end.
 */
export async function clearStaleRun(
  client: Client,
  service: string,
  ours: string[],
  say: (line: string) => void,
): Promise<void> {
  const handle = client.workflow.getHandle(runWorkflowId(service));
  let desc: WorkflowExecutionDescription | undefined;
  try {
    desc = await handle.describe();
  } catch (err) {
    if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
  }
  if (desc?.status.name !== 'RUNNING') return;
  const rec = await progressOf(client, desc);
  if (!ours.includes(rec.requestedBy)) {
    throw new RefusedError(
      `${service} has a run in progress requested by ${rec.requestedBy} (${rec.kind} ${rec.source ?? '?'} → ${rec.target}, at step ${rec.currentStep ?? '-'}); ` +
        `let it finish or abort it (regionshift abort ${service} --by <you> --reason ...), then run the demo again`,
    );
  }
  await handle.terminate(`left over from an earlier ${rec.requestedBy} run; the demo starts over`);
  say(
    `terminated a ${rec.kind} run of ${service} left over from an earlier ${rec.requestedBy} (at step ${rec.currentStep ?? '-'})`,
  );
}
