// A run as a guardian remembers it: from the run's own record (the workflow that tells its guardian)
// or from Temporal (the intake seeding a guardian that starts now). Workflow code: no Node imports.
import type { DrainHandoff, RunRecord } from '../runbook/types';
import type { RunSummary } from './types';

export function runSummaryOf(rec: RunRecord): RunSummary {
  return {
    workflowId: rec.workflowId,
    runId: rec.runId,
    kind: rec.kind,
    trigger: rec.trigger,
    requestedBy: rec.requestedBy,
    target: rec.target,
    mode: rec.mode,
    dryRun: rec.dryRun,
    status: rec.status,
    startedAt: rec.startedAt,
    endedAt: rec.endedAt,
  };
}

/** What an undrain needs from a succeeded drain's record; undefined when the record lacks it. */
export function drainHandoffOf(rec: RunRecord): DrainHandoff | undefined {
  const d = rec.drain;
  if (rec.kind !== 'drain' || rec.status !== 'succeeded' || rec.dryRun || !d?.before || !d.after) return undefined;
  return {
    workflowId: rec.workflowId,
    runId: rec.runId,
    region: d.region,
    before: d.before,
    after: d.after,
    ...(rec.endedAt ? { endedAt: rec.endedAt } : {}),
  };
}
