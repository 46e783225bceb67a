// A region's worker process: the region's activities on task queue `region.<name>`, and, unless
// told otherwise, a control worker for runbook workflows. Control runs in every region so that
// losing a region never loses the ability to run the failover away from it.
import { randomUUID } from 'node:crypto';
import { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createRegionActivities } from '../activities';
import { createDecisionActivities } from '../activities/approvals';
import { createGuardianNoticeActivities } from '../activities/guardian';
import { createHttpActivities } from '../activities/http';
import { loadPlugins, pluginActivities } from '../src/lib/plugins';
import { dataConverterFromEnv } from '../src/lib/codec/env';
import type { Config } from '../src/lib/config/schema';
import {
  installWorkerRuntime,
  startWorkerMetrics,
  workerMetricsPort,
  type PortChoice,
  type WorkerMetricsSetup,
} from '../src/lib/metrics/worker';
import { CONTROL_TASK_QUEUE, regionTaskQueue } from '../src/contract/runbook/ids';
import { activityInterceptors, startTracing, workflowExporterSink, type Tracing } from '../src/lib/tracing';
import { CONTROL_DEPLOYMENT, controlBundle, controlDeploymentOptions, makeCurrentVersion } from './versioning';

export interface RegionWorkerOptions {
  config: Config;
  /** The region whose activities this process runs; absent for a control-only worker. */
  region?: string;
  control: boolean;
  address: string;
  namespace: string;
  /** Where /metrics listens; default: workerMetricsPort (the environment, then the config). */
  metricsPort?: PortChoice;
  /** Another span processor besides OTLP (tests: an in-memory exporter). */
  spanProcessor?: SpanProcessor;
  /**
   * runRegionWorkers makes the control worker's version current once it polls (default true): new
   * runs then start on this code, while runs pinned to another version stay on theirs. False for
   * a deploy that promotes versions itself (`temporal worker deployment set-current-version`).
   */
  makeCurrent?: boolean;
}

export interface RegionWorkers {
  workers: Worker[];
  connection: NativeConnection;
  metrics: WorkerMetricsSetup;
  tracing?: Tracing;
  /** The control worker's Worker Deployment version (the bundle's hash); absent without control. */
  buildId?: string;
  /** How the warm-up at start went (runRegionWorkers). */
  warmedUp?: string;
  /** Makes buildId the deployment's current version (after the workers poll). */
  makeCurrent(): Promise<void>;
  /**
   * Runs one warm-up workflow (workflows/warm-up.ts) on the control worker, started eagerly so
   * that this worker, not another region's, takes it; says how it went. Never throws: a worker
   * that could not warm up still works, its first run is only slower.
   */
  warmUp(timeoutMs?: number): Promise<string>;
  /** Closes the connection, /metrics and flushes spans; after the workers have stopped. */
  close(): Promise<void>;
}

export async function createRegionWorkers(opts: RegionWorkerOptions): Promise<RegionWorkers> {
  // Before anything listens or connects: bad keys and bad ports are configuration errors.
  const dataConverter = dataConverterFromEnv();
  const port = opts.metricsPort ?? workerMetricsPort(opts.config, opts.region);
  const { sdkMetricsUrl } = await installWorkerRuntime();
  const metrics = await startWorkerMetrics(opts.config, port, sdkMetricsUrl);
  const tracing = startTracing(`regionshift-worker${opts.region ? `-${opts.region}` : '-control'}`, opts.spanProcessor);
  const activity = [...activityInterceptors(tracing), ...metrics.activityInterceptors];
  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect({ address: opts.address });
  } catch (err) {
    await metrics.close();
    throw err;
  }
  const workers: Worker[] = [];
  // Application steps: http.call and every plugin step, on each region's queue and on control
  // (placement: control). A plugin that does not load stops the worker here, not a run later.
  let appSteps: Record<string, unknown>;
  try {
    appSteps = pluginActivities(await loadPlugins(opts.config.plugins));
  } catch (err) {
    await Promise.allSettled([connection.close(), metrics.close()]);
    throw err;
  }
  if (opts.region) {
    workers.push(
      await Worker.create({
        connection,
        namespace: opts.namespace,
        dataConverter,
        taskQueue: regionTaskQueue(opts.region),
        activities: {
          ...createRegionActivities(opts.config, opts.region),
          ...createHttpActivities(opts.region),
          ...appSteps,
        },
        interceptors: { activity },
      }),
    );
  }
  let buildId: string | undefined;
  if (opts.control) {
    const bundle = await controlBundle(tracing !== undefined);
    buildId = bundle.buildId;
    workers.push(
      await Worker.create({
        connection,
        namespace: opts.namespace,
        dataConverter,
        taskQueue: CONTROL_TASK_QUEUE,
        // The bundle has the workflow interceptors baked in (workers/bundle.ts).
        workflowBundle: bundle.workflowBundle,
        workerDeploymentOptions: controlDeploymentOptions(bundle.buildId),
        // A long-lived workflow (the guardian) is cached on one control worker. When that worker's
        // region dies with it (SIGKILL, no goodbye), its next task would wait 10 s (the default)
        // on the dead worker's sticky queue before any other worker may take it: that wait would
        // be most of a detected failover's budget. 1 s, then another control worker replays it.
        stickyQueueScheduleToStartTimeout: '1s',
        // Runs verify decisions' signatures here, with this worker's own config and keys, and tell
        // their guardian they ended from here.
        activities: {
          ...createDecisionActivities(opts.config),
          ...createGuardianNoticeActivities(),
          ...createHttpActivities('control'),
          ...appSteps,
        },
        interceptors: { activity },
        // Runs report their end (metrics) and their spans through these (workflows/interceptors.ts).
        sinks: { ...metrics.sinks, ...workflowExporterSink(tracing) },
      }),
    );
  }
  return {
    workers,
    connection,
    metrics,
    tracing,
    buildId,
    async makeCurrent() {
      if (buildId) await makeCurrentVersion(connection, opts.namespace, buildId);
    },
    async warmUp(timeoutMs = 5_000) {
      if (!buildId) return 'no control worker';
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<string>((resolve) => {
        timer = setTimeout(
          () => resolve(`warm-up not done after ${timeoutMs} ms; the first run may be slower`),
          timeoutMs,
        );
      });
      const warm = (async () => {
        // Eager start needs the client on the worker's own connection; pinned to this worker's
        // version, whichever version is current (a deploy may promote versions itself).
        const client = new Client({ connection, namespace: opts.namespace, dataConverter });
        const handle = await client.workflow.start('warmUp', {
          taskQueue: CONTROL_TASK_QUEUE,
          workflowId: `regionshift-warm-up-${buildId}-${randomUUID()}`,
          requestEagerStart: true,
          versioningOverride: { pinnedTo: { deploymentName: CONTROL_DEPLOYMENT, buildId } },
          workflowExecutionTimeout: '1m',
          staticSummary: 'A control worker warming up as it starts (not a run)',
        });
        await handle.result();
        const where = handle.eagerlyStarted ? '' : ' (not eagerly: perhaps by another control worker)';
        return `warmed up in ${Date.now() - started} ms${where}`;
      })().catch((err: Error) => `warm-up failed (${err.message}); the first run may be slower`);
      try {
        return await Promise.race([warm, late]);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      await Promise.allSettled([connection.close(), metrics.close(), tracing?.shutdown()]);
    },
  };
}

/** Runs until every worker stops (SIGINT/SIGTERM shut them down gracefully). */
export async function runRegionWorkers(opts: RegionWorkerOptions, onReady: (w: RegionWorkers) => void): Promise<void> {
  const rw = await createRegionWorkers(opts);
  try {
    const running = rw.workers.map((w) => w.run());
    if (opts.makeCurrent !== false) {
      try {
        await Promise.race([rw.makeCurrent(), Promise.all(running)]);
      } catch (err) {
        rw.workers.forEach((w) => w.shutdown());
        await Promise.allSettled(running);
        throw err;
      }
    }
    // Before saying it is ready: the first run then finds this worker warm.
    rw.warmedUp = await rw.warmUp();
    onReady(rw);
    await Promise.all(running);
  } finally {
    await rw.close();
  }
}
