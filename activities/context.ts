// Heartbeats and sleeps that work inside an activity and also when a provider is called directly
// (the demo, the bench and tests drive providers without a worker, where nobody listens).
import { Context } from '@temporalio/activity';
import { sleepMs } from './db/sql';

/** The running activity's context, or undefined outside one. */
export function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

export function heartbeat(details: unknown): void {
  activityContext()?.heartbeat(details);
}

/** Sleeps; inside an activity it throws CancelledFailure when the activity is cancelled. */
export async function pause(ms: number): Promise<void> {
  const ctx = activityContext();
  if (ctx) await ctx.sleep(ms);
  else await sleepMs(ms);
}
