// What a person reads during an incident: one line per step, in order, with the next action.
import type { DbNodeState } from '../contract/activities';
import type { RunRecord, StepState } from '../contract/runbook/types';

const MARK: Record<StepState['status'], string> = {
  pending: ' ',
  running: '>',
  waiting: '?',
  done: '✓',
  skipped: '-',
  failed: '✗',
  compensated: '↺',
};

function took(s: StepState): string {
  if (!s.startedAt || !s.endedAt) return '';
  return ` ${Date.parse(s.endedAt) - Date.parse(s.startedAt)} ms`;
}

export function stepLine(s: StepState): string {
  const where = s.region ? ` [${s.region}]` : '';
  const info = s.error ?? s.detail;
  return `  ${MARK[s.status]} ${s.id.padEnd(16)}${where}${took(s)}${info ? `  ${info}` : ''}`;
}

/**
 * Where a run moves what: a reconciliation carries mode unplanned (it follows one) and a failback
 * is a planned switchover, but saying so in the header would mislead a person scanning it.
 */
export function runRoute(rec: RunRecord): string {
  const from = rec.source ?? '?';
  const dry = rec.dryRun ? ' (dry run)' : '';
  switch (rec.kind) {
    case 'reconcile':
      return `old primary ${from} → ${rec.target}${dry}`;
    case 'failback':
      return `${from} → ${rec.target} (back to the old primary${rec.dryRun ? ', dry run' : ''})`;
    case 'drain':
      return `${rec.target} out of service${dry}`;
    case 'undrain':
      return `${rec.target} back into service${dry}`;
    default:
      return `${from} → ${rec.target} (${rec.dryRun ? 'dry run' : rec.mode})`;
  }
}

/** How long the run took to recover the service; an undrain recovers nothing, it puts a region back. */
export function rtoFact(rec: RunRecord): string | undefined {
  if (rec.rtoMs === undefined) return undefined;
  return rec.kind === 'undrain' ? `back in service after ${rec.rtoMs} ms` : `RTO ${rec.rtoMs} ms`;
}

/** The run's first line: kind, service, route, status. */
export function headline(rec: RunRecord): string {
  return `${rec.kind} ${rec.service}: ${runRoute(rec)} ${rec.status.toUpperCase()}`;
}

export function formatRecord(rec: RunRecord, uiUrl?: string): string {
  const head = headline(rec);
  const lines = [head, ...rec.steps.map(stepLine)];
  if (rec.plan) {
    lines.push('', 'plan:');
    for (const p of rec.plan) {
      const vals = p.values
        ? `  ${Object.entries(p.values)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ')}`
        : '';
      lines.push(
        `  ${p.skip ? '-' : '•'} ${p.id.padEnd(16)}${p.region ? ` [${p.taskQueue}]` : ''}${p.skip ? `  (${p.skip})` : ''}${vals}`,
      );
    }
  }
  if (rec.pendingApproval) {
    lines.push(
      '',
      `WAITING FOR APPROVAL (${rec.pendingApproval.reason}), until ${rec.pendingApproval.timeoutAt}:`,
      `  regionshift approve ${rec.service} --by <you> --key <ssh key>     (or, to refuse it, add --reject)`,
    );
  }
  if (rec.pendingDecision) {
    lines.push(
      '',
      `STEP ${rec.pendingDecision.stepId} FAILED, WAITING FOR A PERSON: ${rec.pendingDecision.error}`,
      `  regionshift retry|skip|compensate ${rec.service} --by <you> --key <ssh key> --reason <why>`,
    );
  }
  if (rec.paused)
    lines.push(
      '',
      `PAUSED by ${rec.paused.by} (${rec.paused.reason}): regionshift resume ${rec.service} --by <you> --key <ssh key> --reason <why>`,
    );
  for (const o of rec.operator ?? [])
    lines.push(`  ${o.action}${o.stepId ? ` ${o.stepId}` : ''} by ${o.signed}: ${o.reason}`);
  const facts: string[] = [];
  const rto = rtoFact(rec);
  if (rto) facts.push(rto);
  if (rec.rpo)
    facts.push(
      rec.rpo.zeroLoss
        ? 'RPO 0 (fenced, lag confirmed)'
        : rec.rpo.estimateSeconds === undefined
          ? 'RPO unknown (source unreachable)'
          : `RPO estimate ${rec.rpo.estimateSeconds} s`,
    );
  if (rec.dataLossAck) facts.push(`data loss acknowledged by ${rec.dataLossAck.by}`);
  if (facts.length) lines.push('', facts.join(' · '));
  if (rec.topologyAfter)
    lines.push('', 'regions after the run:', ...rec.topologyAfter.map((n) => `  ${regionLine(n)}`));
  if (rec.compensation) {
    for (const u of rec.compensation.undone) lines.push(`  undone: ${u}`);
    for (const n of rec.compensation.notUndone) lines.push(`  NOT undone: ${n}`);
  }
  if (rec.error) lines.push('', `error: ${rec.error}`);
  if (rec.reconcile?.required)
    lines.push(`next: reconcile writes ${rec.reconcile.oldPrimary} accepted after the divergence point`);
  if (uiUrl) lines.push(`Temporal UI: ${uiUrl}`);
  return lines.join('\n');
}

/** "us-west-2       standby ← 127.0.0.1:5433, timeline 2, replayed 0/3000148": one region at the run's end. */
export function regionLine(n: DbNodeState): string {
  const name = n.region.padEnd(16);
  if (!n.reachable) return `${name}unreachable${n.error ? `: ${n.error}` : ''}`;
  const tl = n.timeline !== undefined ? `, timeline ${n.timeline}` : '';
  if (n.role !== 'standby') return `${name}${n.role}${n.fenced ? ' (fenced)' : ''}${tl}${n.lsn ? `, at ${n.lsn}` : ''}`;
  return `${name}standby ← ${n.streamingFrom ?? 'nothing (not streaming)'}${tl}${n.lsn ? `, replayed ${n.lsn}` : ''}`;
}

export function runUiUrl(base: string, namespace: string, workflowId: string, runId: string): string {
  return `${base.replace(/\/$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(runId)}/history`;
}
