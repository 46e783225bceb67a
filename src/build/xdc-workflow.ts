// The run `npm run prove-replication` moves between clusters: a step, a wait for a signal (the
// namespace fails over meanwhile), another step. Workflow code: no I/O.
import { condition, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';

const { step } = proxyActivities<{ step(name: string): Promise<string> }>({ startToCloseTimeout: '10s' });
export const go = defineSignal('go');

export async function acrossFailover(): Promise<string[]> {
  let released = false;
  setHandler(go, () => {
    released = true;
  });
  const done = [await step('before')];
  await condition(() => released);
  done.push(await step('after'));
  return done;
}
