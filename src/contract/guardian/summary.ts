// A run as a guardian remembers it: from the run's own record (the workflow that tells its guardian)
// or from Temporal (the intake seeding a guardian that starts now). Workflow code: no Node imports.
import type { RunRecord } from '../runbook/types';
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
