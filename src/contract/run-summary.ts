// What a finished run tells the metrics: computed inside the workflow sandbox from the run's
// record (so it must stay free of Node imports), handed out through a sink. A compact summary
// rather than the record itself: a reconciliation's record carries accounts and amounts that
// have no business leaving the run just to be counted.
import type { RunRecord } from './runbook/types';

export type RunResult = 'succeeded' | 'failed' | 'aborted' | 'refused';

export interface StepTiming {
  id: string;
  action: string;
  status: string;
  region?: string;
  startedMs: number;
  endedMs: number;
}

export interface RunSummary {
  workflowId: string;
  runId: string;
  kind: string;
  service: string;
  /** planned, unplanned or dry-run, as the RegionshiftMode search attribute has it. */
  mode: string;
  result: RunResult;
  source?: string;
  target: string;
  startedMs: number;
  endedMs: number;
  rtoMs?: number;
  /** Estimated data loss in seconds at promotion; 0 for a fenced (planned) promotion. */
  rpoSeconds?: number;
  steps: StepTiming[];
  /** Each approval decision and how long it waited from its step's start. */
  approvals: { stepId: string; decision: string; waitMs: number }[];
}

const ms = (iso: string | undefined): number | undefined => {
  if (!iso) return undefined;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? undefined : t;
};

/** `failureType` is the ApplicationFailure type the run ended with (RunRefused, RunFailed, RunAborted). */
export function summarizeRun(rec: RunRecord, failureType?: string): RunSummary {
  const result: RunResult =
    rec.status === 'succeeded'
      ? 'succeeded'
      : rec.status === 'aborted'
        ? 'aborted'
        : failureType === 'RunRefused'
          ? 'refused'
          : 'failed';
  const startedMs = ms(rec.startedAt) ?? Date.now();
  const steps: StepTiming[] = [];
  for (const s of rec.steps) {
    const started = ms(s.startedAt);
    const ended = ms(s.endedAt);
    if (started === undefined || ended === undefined) continue; // skipped or never reached
    steps.push({
      id: s.id,
      action: s.action ?? 'approval',
      status: s.status,
      ...(s.region ? { region: s.region } : {}),
      startedMs: started,
      endedMs: ended,
    });
  }
  const approvals = rec.approvals.flatMap((a) => {
    const stepStart = ms(rec.steps.find((s) => s.id === a.stepId)?.startedAt);
    const at = ms(a.at);
    return stepStart === undefined || at === undefined
      ? []
      : [{ stepId: a.stepId, decision: a.decision, waitMs: Math.max(0, at - stepStart) }];
  });
  return {
    workflowId: rec.workflowId,
    runId: rec.runId,
    kind: rec.kind,
    service: rec.service,
    mode: rec.dryRun ? 'dry-run' : rec.mode,
    result,
    ...(rec.source ? { source: rec.source } : {}),
    target: rec.target,
    startedMs,
    endedMs: ms(rec.endedAt) ?? Date.now(),
    ...(rec.rtoMs !== undefined ? { rtoMs: rec.rtoMs } : {}),
    ...(rec.rpo?.estimateSeconds !== undefined ? { rpoSeconds: rec.rpo.estimateSeconds } : {}),
    steps,
    approvals,
  };
}
