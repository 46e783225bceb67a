// Runs bench/floor/workflows.ts on the bench's own server, with a worker set up as a region's
// (one process polling a workflow queue and an activity queue, the stack's payload codec), and
// times each run as the planned failovers are timed (bench/history.ts).
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type { Client } from '@temporalio/client';
import { dataConverterFromEnv } from '../../src/lib/codec/env';
import type { Config } from '../../src/lib/config/schema';
import { runTiming, type RunTiming } from '../history';

const WORKFLOW_QUEUE = 'bench-floor';
const ACTIVITY_QUEUE = 'bench-floor-activities';
const noop = (): void => undefined;
const quiet = { trace: noop, debug: noop, info: noop, warn: noop, error: console.error, log: noop };

/** `runs` runs of `steps` sequential no-op activities each, one run at a time. */
export async function measureFloor(client: Client, config: Config, steps: number, runs: number): Promise<RunTiming[]> {
  try {
    // Its workers' lifecycle lines (and their warnings about the queue each one does not poll)
    // would land among the bench's figures.
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // Installed already by an earlier section: its logger stays.
  }
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('./workflows'), logger: quiet });
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const options = { connection, namespace: config.temporal.namespace, dataConverter: dataConverterFromEnv() };
  const workers = [
    await Worker.create({ ...options, taskQueue: WORKFLOW_QUEUE, workflowBundle: { code } }),
    await Worker.create({ ...options, taskQueue: ACTIVITY_QUEUE, activities: { noop: async () => undefined } }),
  ];
  const running = Promise.all(workers.map((w) => w.run()));
  const out: RunTiming[] = [];
  try {
    // One more run than asked: the first pays for creating the workflow sandbox (as a control
    // worker's warm-up does before the failovers) and is not counted.
    for (let i = 0; i <= runs; i++) {
      const handle = await client.workflow.start('oneStepAtATime', {
        taskQueue: WORKFLOW_QUEUE,
        workflowId: `bench-floor-${Date.now()}-${i}`,
        args: [steps, ACTIVITY_QUEUE],
      });
      await handle.result();
      // A pause between runs, as the failovers have (their rejoin, then the wait for streaming):
      // started back to back, this server dispatched every task of the next run ~40 ms late.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      if (i > 0) out.push(await runTiming(client, handle.workflowId, handle.firstExecutionRunId));
    }
  } finally {
    for (const w of workers) w.shutdown();
    await running;
    await connection.close();
  }
  return out;
}
