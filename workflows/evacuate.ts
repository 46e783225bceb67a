// Evacuating a region: one parent workflow (id regionshift-evacuate-<region>) that moves every
// given service out of the region, at most `maxConcurrent` at a time, in priority order. For each
// service it first asks a dry-run drain (its preflight finds the writer and reads the records,
// changing nothing), then runs, as a child with the service's own run id (regionshift-<service>,
// so single flight holds against the CLI, Slack and the guardian):
// - a failover when the writer is in the region, to the target chosen as `--to auto` does
//   (src/contract/policy/target.ts: healthy, least lag, residency-allowed);
// - a drain when the region only serves traffic;
// - nothing when it does neither.
// The result is one report: per service what ran, its RTO and RPO, and what failed.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { chooseTarget, NoTargetError } from '../src/contract/policy/target';
import { runWorkflowId } from '../src/contract/runbook/ids';
import type { Mode, RunInput, RunRecord } from '../src/contract/runbook/types';
import { serves } from './drain-actions';
import { SA } from './search-attributes';

export interface EvacuationService {
  service: string;
  priority: number;
  /** The drain of the region (also the probe, run as a dry run first). */
  drain: RunInput;
  /** The failover from the region; its target is chosen here. */
  failover: Omit<RunInput, 'target'>;
}

export interface EvacuateInput {
  region: string;
  mode: Mode;
  maxConcurrent: number;
  requestedBy: string;
  trigger: string;
  services: EvacuationService[];
}

export interface EvacuationEntry {
  service: string;
  priority: number;
  action: 'failover' | 'drain' | 'nothing';
  /** Why this action: the writer and traffic the probe found. */
  reason: string;
  status: 'pending' | 'probing' | 'running' | 'succeeded' | 'failed' | 'refused' | 'skipped';
  workflowId?: string;
  runId?: string;
  target?: string;
  startedAt?: string;
  endedAt?: string;
  rtoMs?: number;
  rpo?: RunRecord['rpo'];
  error?: string;
}

export interface EvacuationReport {
  region: string;
  mode: Mode;
  maxConcurrent: number;
  /** The most services that were being moved at the same time. */
  maxRunning: number;
  status: 'running' | 'succeeded' | 'failed';
  startedAt: string;
  endedAt?: string;
  services: EvacuationEntry[];
}

export const evacuationQuery = wf.defineQuery<EvacuationReport>('evacuation');

const iso = (ms: number = Date.now()): string => new Date(ms).toISOString();

function recordOf(err: unknown): RunRecord | undefined {
  if (err instanceof wf.ChildWorkflowFailure && err.cause instanceof ApplicationFailure)
    return err.cause.details?.[0] as RunRecord | undefined;
  return undefined;
}

function messageOf(err: unknown): string {
  if (err instanceof wf.ChildWorkflowFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

export async function evacuate(input: EvacuateInput): Promise<EvacuationReport> {
  const ordered = [...input.services].sort((a, b) => a.priority - b.priority || a.service.localeCompare(b.service));
  const report: EvacuationReport = {
    region: input.region,
    mode: input.mode,
    maxConcurrent: input.maxConcurrent,
    maxRunning: 0,
    status: 'running',
    startedAt: iso(),
    services: ordered.map((s) => ({
      service: s.service,
      priority: s.priority,
      action: 'nothing',
      reason: 'not yet probed',
      status: 'pending',
    })),
  };
  wf.setHandler(evacuationQuery, () => report);
  let running = 0;

  /** Runs one child of the service's run id to its end and returns its record. */
  async function child(runInput: RunInput, entry: EvacuationEntry): Promise<RunRecord> {
    const workflowId = runWorkflowId(runInput.service);
    try {
      const handle = await wf.startChild('runbook', {
        workflowId,
        args: [runInput],
        // A failover half-way must finish (or compensate) even if the evacuation is cancelled.
        parentClosePolicy: 'ABANDON',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        typedSearchAttributes: [
          { key: SA.service, value: runInput.service },
          { key: SA.target, value: runInput.target },
          { key: SA.mode, value: runInput.dryRun ? 'dry-run' : runInput.mode },
          { key: SA.trigger, value: runInput.trigger },
          ...(runInput.source ? [{ key: SA.source, value: runInput.source }] : []),
        ],
        staticSummary: `${runInput.runbook.kind} ${runInput.service} ${runInput.dryRun ? '(probe) ' : ''}for the evacuation of ${input.region}, by ${input.requestedBy}`,
      });
      entry.workflowId = workflowId;
      entry.runId = handle.firstExecutionRunId;
      return await handle.result();
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw err;
      const rec = recordOf(err);
      if (rec) return rec;
      throw err;
    }
  }

  async function move(s: EvacuationService, entry: EvacuationEntry): Promise<void> {
    entry.startedAt = iso();
    entry.status = 'probing';
    const probe = await child({ ...s.drain, dryRun: true, trigger: `${s.drain.trigger} (probe)` }, entry);
    const writer = probe.drain?.writer;
    if (!probe.drain || !probe.trafficBefore) {
      entry.status = 'refused';
      entry.error = `could not learn where ${s.service} writes and serves: ${probe.error ?? 'its preflight did not run'}`;
      return;
    }
    const serving = serves(probe.trafficBefore, input.region);
    let runInput: RunInput;
    if (writer === input.region) {
      entry.action = 'failover';
      try {
        const choice = chooseTarget({ name: s.service, regions: s.failover.regions }, probe.topology ?? [], {
          source: input.region,
          ...(s.failover.policy.residency ? { residency: s.failover.policy.residency } : {}),
        });
        entry.reason = `the writer is in ${input.region}; ${choice.reason}`;
        runInput = { ...s.failover, source: input.region, target: choice.target };
      } catch (err) {
        if (!(err instanceof NoTargetError)) throw err;
        entry.reason = `the writer is in ${input.region}`;
        entry.status = 'refused';
        entry.error = err.message;
        return;
      }
    } else if (serving) {
      entry.action = 'drain';
      entry.reason = `the writer is in ${writer ?? 'an unknown region'}; ${input.region} serves traffic`;
      runInput = s.drain;
    } else {
      entry.reason = `${input.region} neither holds the writer (${writer ?? 'unknown'}) nor serves traffic`;
      entry.status = 'skipped';
      return;
    }
    entry.target = runInput.target;
    entry.status = 'running';
    const rec = await child(runInput, entry);
    entry.status =
      rec.status === 'succeeded'
        ? 'succeeded'
        : rec.steps.some((x) => x.status === 'done' && x.action !== 'preflight')
          ? 'failed'
          : 'refused';
    if (rec.rtoMs !== undefined) entry.rtoMs = rec.rtoMs;
    if (rec.rpo) entry.rpo = rec.rpo;
    if (rec.error) entry.error = rec.error;
  }

  const queue = ordered.map((s, i) => ({ s, entry: report.services[i]! }));
  async function lane(): Promise<void> {
    for (let next = queue.shift(); next; next = queue.shift()) {
      running++;
      report.maxRunning = Math.max(report.maxRunning, running);
      try {
        await move(next.s, next.entry);
      } catch (err) {
        next.entry.status = err instanceof WorkflowExecutionAlreadyStartedError ? 'refused' : 'failed';
        next.entry.error =
          err instanceof WorkflowExecutionAlreadyStartedError
            ? `${next.s.service} already has a run in progress (${runWorkflowId(next.s.service)}); evacuate it once that run ends`
            : messageOf(err);
      } finally {
        next.entry.endedAt = iso();
        running--;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(input.maxConcurrent, queue.length)) }, lane));
  report.status = report.services.every((e) => e.status === 'succeeded' || e.status === 'skipped')
    ? 'succeeded'
    : 'failed';
  report.endedAt = iso();
  return report;
}
