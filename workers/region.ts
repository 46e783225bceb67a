// A region's worker process: the region's activities on task queue `region.<name>`, and, unless
// told otherwise, a control worker for runbook workflows. Control runs in every region so that
// losing a region never loses the ability to run the failover away from it.
import { DefaultLogger, NativeConnection, Runtime, Worker, makeTelemetryFilterString } from '@temporalio/worker';
import { createRegionActivities } from '../activities';
import { createDecisionActivities } from '../activities/approvals';
import { dataConverterFromEnv } from '../src/codec/env';
import type { Config } from '../src/config/schema';
import { CONTROL_TASK_QUEUE, regionTaskQueue } from '../src/runbook/ids';
import { workflowSource } from './bundle';

export interface RegionWorkerOptions {
  config: Config;
  /** The region whose activities this process runs; absent for a control-only worker. */
  region?: string;
  control: boolean;
  address: string;
  namespace: string;
}

let runtimeInstalled = false;

function installQuietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({
    logger: new DefaultLogger('WARN'),
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }) } },
  });
}

export async function createRegionWorkers(opts: RegionWorkerOptions): Promise<{ workers: Worker[]; connection: NativeConnection }> {
  installQuietRuntime();
  // Before connecting: a bad key is a configuration error, not a reason to open a connection.
  const dataConverter = dataConverterFromEnv();
  const connection = await NativeConnection.connect({ address: opts.address });
  const workers: Worker[] = [];
  if (opts.region) {
    workers.push(
      await Worker.create({
        connection,
        namespace: opts.namespace,
        dataConverter,
        taskQueue: regionTaskQueue(opts.region),
        activities: createRegionActivities(opts.config, opts.region),
      }),
    );
  }
  if (opts.control) {
    workers.push(
      await Worker.create({
        connection,
        namespace: opts.namespace,
        dataConverter,
        taskQueue: CONTROL_TASK_QUEUE,
        ...workflowSource(),
        // A long-lived workflow (the guardian) is cached on one control worker. When that worker's
        // region dies with it (SIGKILL, no goodbye), its next task would wait 10 s (the default)
        // on the dead worker's sticky queue before any other worker may take it: that wait would
        // be most of a detected failover's budget. 1 s, then another control worker replays it.
        stickyQueueScheduleToStartTimeout: '1s',
        // Runs verify decisions' signatures here, with this worker's own config and keys.
        activities: createDecisionActivities(opts.config),
      }),
    );
  }
  return { workers, connection };
}

/** Runs until every worker stops (SIGINT/SIGTERM shut them down gracefully). */
export async function runRegionWorkers(opts: RegionWorkerOptions, onReady: () => void): Promise<void> {
  const { workers, connection } = await createRegionWorkers(opts);
  try {
    const running = workers.map((w) => w.run());
    onReady();
    await Promise.all(running);
  } finally {
    await connection.close();
  }
}
