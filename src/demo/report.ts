// What the demo shows for each run: the run's own record (steps, timings, approvals) plus what
// only the application can tell: how many acknowledged writes the new primary is missing.
import { formatRecord } from '../cli/report';
import type { Mode, RunRecord } from '../runbook/types';

export interface DemoStep {
  id: string;
  title: string;
  status: string;
  region: string | null;
  startedAt: string | null;
  endedAt: string | null;
  detail?: string;
  error?: string;
}

export interface DemoRun {
  workflowId: string;
  runId: string;
  mode: Mode;
  source: string | null;
  target: string;
  status: RunRecord['status'];
  steps: DemoStep[];
  /** First alarm (the kill) or start → writes accepted in the target, as the workflow measured it. */
  rtoMs: number | null;
  /** Same interval as the application saw it: trigger → first transfer the target committed. */
  clientRtoMs: number | null;
  /** Writes the old primary acknowledged that the new primary does not have: the RPO in transactions. */
  lostWrites: number;
  /** Writes the old primary acknowledged (the denominator of lostWrites). */
  writesAcked: number;
  /** Unplanned runs: the replication evidence the workflow recorded at promotion. */
  rpo: RunRecord['rpo'] | null;
  approvals: RunRecord['approvals'];
  error?: string;
  uiUrl: string;
}

export function toDemoRun(
  rec: RunRecord,
  facts: { uiUrl: string; lostWrites: number; writesAcked: number; clientRtoMs: number | undefined },
): DemoRun {
  return {
    workflowId: rec.workflowId,
    runId: rec.runId,
    mode: rec.mode,
    source: rec.source ?? null,
    target: rec.target,
    status: rec.status,
    steps: rec.steps.map((s) => ({
      id: s.id, title: s.title, status: s.status, region: s.region ?? null,
      startedAt: s.startedAt ?? null, endedAt: s.endedAt ?? null,
      ...(s.detail ? { detail: s.detail } : {}), ...(s.error ? { error: s.error } : {}),
    })),
    rtoMs: rec.rtoMs ?? null,
    clientRtoMs: facts.clientRtoMs ?? null,
    lostWrites: facts.lostWrites,
    writesAcked: facts.writesAcked,
    rpo: rec.rpo ?? null,
    approvals: rec.approvals,
    ...(rec.error ? { error: rec.error } : {}),
    uiUrl: facts.uiUrl,
  };
}

export function formatDemoRun(rec: RunRecord, run: DemoRun): string {
  const lines = [formatRecord(rec, run.uiUrl), ''];
  lines.push(`lost writes: ${run.lostWrites} of ${run.writesAcked} acknowledged by ${run.source ?? '?'}`);
  const client = run.clientRtoMs === null ? 'no write accepted yet' : `${run.clientRtoMs} ms until the first transfer committed in ${run.target}`;
  lines.push(`RTO: ${run.rtoMs ?? '?'} ms (workflow, to verified writes); ${client} (application)`);
  return lines.join('\n');
}
