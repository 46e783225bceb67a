// The guardian's state as `regionshift status` and the Slack bot show it.
import type { Client } from '@temporalio/client';
import { guardianWorkflowId } from '../contract/guardian/ids';
import type { AttachedAlarm } from '../contract/runbook/types';
import type { GuardianView } from '../contract/guardian/types';

/** The guardian's view, or undefined when the service has none (no alarm ever, no intake). */
export async function guardianView(client: Client, service: string): Promise<GuardianView | undefined> {
  try {
    const handle = client.workflow.getHandle(guardianWorkflowId(service));
    return await handle.query<GuardianView>('state');
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'WorkflowNotFoundError' || name === 'QueryNotRegisteredError') return undefined;
    // A guardian that has ended cannot answer queries: report it as absent.
    if (/closed|completed|not found/i.test((err as Error).message)) return undefined;
    throw err;
  }
}

const times = (n: number): string => (n > 1 ? ` (×${n})` : '');

/** A region's failing signals, counted against the number the guardian acts at (CLI and Slack). */
export function failingLine(f: GuardianView['failing'][number], v: GuardianView): string {
  return `failing: ${f.region}, ${f.count} failing signal${f.count === 1 ? '' : 's'} since ${f.since} (acts at ${v.debounce.failures})`;
}

export function guardianLines(v: GuardianView): string[] {
  const lines = [
    `guardian: writer ${v.primary ?? '?'} · fails over after ${v.debounce.failures} failing signals within ${v.debounce.window} · cooldown ${v.cooldown} · ${v.received} alarms received, ${v.runsStarted} runs started`,
  ];
  if (v.inCooldown) {
    lines.push(
      `  COOLDOWN until ${v.cooldownUntil}: no automatic failover (last run ${v.lastRun?.workflowId} ${v.lastRun?.status} at ${v.lastRun?.endedAt}); manual runs are allowed`,
    );
  }
  if (v.blocked) lines.push(`  held back at ${v.blocked.at}: ${v.blocked.detail}${times(v.blocked.count)}`);
  if (v.current)
    lines.push(
      `  run in progress: ${v.current.workflowId}${v.current.trigger ? ` (${v.current.trigger})` : ''}; new alarms are attached to it`,
    );
  for (const f of v.failing) lines.push(`  ${failingLine(f, v)}`);
  // A view from a guardian started before drains existed has no list.
  for (const d of v.drained ?? []) {
    lines.push(
      `  drained: ${d.region} (run ${d.drainRunId}); ${d.undrainAt ? `undrained at ${d.undrainAt} if it stays healthy` : 'undrained once healthy (an OK) for triggers.undrainAfter'}`,
    );
  }
  const last = v.decisions[v.decisions.length - 1];
  if (last) lines.push(`  last decision (${last.at}): ${last.kind}: ${last.detail}${times(last.count)}`);
  return lines;
}

export function formatGuardian(v: GuardianView): string {
  return guardianLines(v).join('\n');
}

/** The alarms the guardian attached to a run while it was in progress. */
export function formatAttachedAlarms(alarms: AttachedAlarm[] | undefined): string {
  if (!alarms?.length) return '';
  return `alarms during the run: ${alarms.map((a) => `${a.trigger} [${a.region}] ${a.state} ×${a.count}`).join(', ')}`;
}
