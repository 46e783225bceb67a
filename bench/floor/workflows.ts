// The least a runbook can cost on this server and SDK: a workflow that does nothing but call one
// no-op activity after another. Each call is the round trip a runbook step pays (a workflow task
// to decide, an activity task to dispatch) with none of the runbook's own code.
import { proxyActivities } from '@temporalio/workflow';

export interface FloorActivities {
  noop(): Promise<void>;
}

export async function oneStepAtATime(steps: number, activityQueue: string): Promise<void> {
  const { noop } = proxyActivities<FloorActivities>({ startToCloseTimeout: '10s', taskQueue: activityQueue });
  for (let i = 0; i < steps; i++) await noop();
}
