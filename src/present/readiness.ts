import type { ReadinessEvaluation } from '../contract/readiness';
import type { RunRecord } from '../contract/runbook/types';

/**
 * Whether the evaluation was made before the run ended (or while it runs): the schedule evaluates
 * every readiness.every, and one from before a failover names the old writer.
 */
export function readinessPredates(e: ReadinessEvaluation, rec: RunRecord): boolean {
  return !rec.dryRun && (!rec.endedAt || Date.parse(e.at) < Date.parse(rec.endedAt));
}

/** Said under an evaluation that predates the run shown above it. */
export const freshReadinessHint = (service: string): string =>
  `from before this run ended; a fresh one: regionshift readiness --service ${service}`;

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
