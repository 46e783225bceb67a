import type { ReadinessEvaluation } from '../contract/readiness';

/** One line per check under the verdict, as `regionshift readiness` and `status` print it. */
export function formatReadiness(e: ReadinessEvaluation): string {
  const lines = [
    `${e.service}: ${e.status.toUpperCase()} (evaluated ${e.at})${e.targets.length ? `; failover targets now: ${e.targets.join(', ')}` : ''}`,
  ];
  for (const c of e.checks) lines.push(`  ${c.status.padEnd(4)} ${c.check.padEnd(9)} ${c.detail}`);
  for (const t of e.perTarget ?? []) {
    lines.push(
      `  to ${t.region}: ${t.status.toUpperCase()}${t.mode ? ` (${t.mode} dry run ${t.dryRun?.workflowId ?? ''})` : ''}`,
    );
    for (const c of t.checks) lines.push(`    ${c.status.padEnd(4)} ${c.check.padEnd(9)} ${c.detail}`);
  }
  return lines.join('\n');
}
