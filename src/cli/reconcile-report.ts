// What a person reads after a reconciliation or a failback: counts per class, what was applied,
// the cases still open and how to decide them; and the cases themselves for `cases list`.
import type { RunRecord } from '../contract/runbook/types';
import { describeRecords } from '../contract/traffic/plan';
import type { ReconcileCase, ReconcileReport } from '../contract/reconcile';

export function formatReconcileReport(rep: ReconcileReport): string {
  const lines = [
    `reconciliation ${rep.reconciliationId}: ${rep.oldRegion} (old primary) → ${rep.newRegion}${rep.passes > 1 ? ` (${rep.passes} passes)` : ''}`,
  ];
  if (rep.divergence) {
    const d = rep.divergence;
    lines.push(
      `  divergence: timeline ${d.newTimeline ?? '?'} forked at ${d.switchLsn ?? '?'}; old primary on timeline ${d.oldTimeline ?? '?'} up to ${d.oldLsn ?? '?'}`,
    );
    lines.push(`  window: ${d.windowFrom} → ${d.windowTo} (${d.basis})`);
  }
  const t = rep.txn;
  lines.push(
    `  transactions: lost (only in ${rep.oldRegion}) ${t['only-old']}, only in ${rep.newRegion} ${t['only-new']}, identical ${t.identical}, same id different payload ${t['same-id-different-payload']} (${t.replicated} replicated in the margin)`,
  );
  const rows = Object.entries(rep.rows).filter(([, v]) => v > 0);
  if (rows.length) lines.push(`  mutable rows: ${rows.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(
    `  applied: ${rep.applied.transactions} transactions (${rep.applied.entries} entries) re-inserted with their original ids, ${rep.applied.stateMoves} state moves, ${rep.applied.duplicatesDropped} duplicates dropped`,
  );
  if (rep.verify)
    lines.push(
      `  verify: ${rep.verify.ok ? 'no difference outside the window' : `${rep.verify.differences} difference(s), ${rep.verify.balanceMismatches} balance mismatch(es) → case ${rep.verify.escalatedCase}`} (${rep.verify.ms} ms)`,
    );
  lines.push(
    `  cases: ${rep.cases.open} open of ${rep.cases.opened}${
      rep.cases.opened
        ? ` (${Object.entries(rep.cases.byKind)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')})`
        : ''
    }`,
  );
  for (const c of rep.cases.list.filter((x) => x.status === 'open').slice(0, 20))
    lines.push(`    ${c.id.padEnd(12)} ${c.kind.padEnd(26)} ${c.summary}`);
  if (rep.cases.open > 0)
    lines.push(
      `  decide them: regionshift cases list --service <service>; regionshift cases resolve <id> --by <you> --action accept|reject|compensate`,
    );
  return lines.join('\n');
}

export function formatReconcileRun(rec: RunRecord): string {
  const rep = rec.reconciliation?.report;
  return rep ? formatReconcileReport(rep) : '';
}

export function formatFailbackRun(rec: RunRecord): string {
  const f = rec.failback;
  if (!f) return '';
  const lines: string[] = [];
  if (f.override)
    lines.push(`OVERRIDE by ${f.override.by}: "${f.override.reason}" (${f.check?.overridden.join('; ')})`);
  if (f.oldPrimaryRejoin)
    lines.push(
      `old primary ${rec.target}: ${f.oldPrimaryRejoin.rewound ? 'rewound' : (f.oldPrimaryRejoin.detail ?? 'rejoined')} and streamed from ${f.oldPrimaryRejoin.streamingFrom} before the switchover`,
    );
  if (f.trafficRestored) lines.push(`traffic restored: ${describeRecords(f.trafficRestored.after.records)}`);
  if (rec.rpo)
    lines.push(
      `RPO of the switchover: ${rec.rpo.zeroLoss ? '0 (fenced, lag confirmed zero)' : `estimate ${rec.rpo.estimateSeconds ?? '?'} s`}`,
    );
  return lines.join('\n');
}

export function formatCase(c: ReconcileCase, full = false): string {
  const actions = ['reject', ...Object.keys(c.proposals)].sort().join('|');
  const head = `${c.id.padEnd(12)} ${c.status.padEnd(8)} ${c.kind.padEnd(26)} ${c.summary}`;
  if (!full)
    return `${head}\n${' '.repeat(13)}actions: ${actions}${c.status === 'resolved' ? `; resolved ${c.resolution} by ${c.resolvedBy} at ${c.resolvedAt}` : ''}`;
  const lines = [
    head,
    `  reconciliation ${c.reconciliationId}, opened ${c.openedAt}${c.txnIds.length ? `, transactions ${c.txnIds.join(', ')}` : ''}`,
  ];
  lines.push(`  old region's version: ${JSON.stringify(c.oldVersion)}`);
  lines.push(`  new region's version: ${JSON.stringify(c.newVersion)}`);
  for (const [action, p] of Object.entries(c.proposals)) lines.push(`  ${action}: ${p.description}`);
  lines.push("  reject: book nothing; the new region's version stands");
  if (c.status === 'resolved')
    lines.push(`  resolved: ${c.resolution} by ${c.resolvedBy} at ${c.resolvedAt}${c.note ? ` ("${c.note}")` : ''}`);
  return lines.join('\n');
}
