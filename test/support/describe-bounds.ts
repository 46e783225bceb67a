// How long each region's worker was given to pick up a run's first describe of it: read from the
// ActivityTaskScheduled events of the run's history, as the server enforced them.
import type { Client } from '@temporalio/client';

/** Region → the scheduleToStart timeout (seconds) of the run's first dbDescribe on its queue. */
export async function describePickUpSeconds(
  client: Client,
  workflowId: string,
  runId: string,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const e of (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? []) {
    const a = e.activityTaskScheduledEventAttributes;
    const region = a?.taskQueue?.name?.replace(/^region\./, '');
    if (a?.activityType?.name !== 'dbDescribe' || !region || region in out) continue;
    out[region] = Number(a.scheduleToStartTimeout?.seconds ?? 0);
  }
  return out;
}
