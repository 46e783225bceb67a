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
import { temporalCredentials } from '../src/lib/config/temporal-credentials';
import {
  installWorkerRuntime,
  startWorkerMetrics,
  workerMetricsPort,
  type PortChoice,
  type WorkerMetricsSetup,
} from '../src/lib/metrics/worker';
import { CONTROL_TASK_QUEUE, regionTaskQueue } from '../src/contract/runbook/ids';
import { clusterEndpoints } from '../src/lib/runs/control-plane';
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
  /** Where runRegionWorkers says what it does after start (renewing its pollers); default: nowhere. */
  log?: (line: string) => void;
}

/** One set of Workers on the connection they were registered with. */
export interface WorkerGeneration {
  workers: Worker[];
  connection: NativeConnection;
}

export interface RegionWorkers {
  /** The current generation's Workers and connection (renew replaces both). */
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
  /**
   * The same Workers again, new, on a new connection to the same address (the SDK refuses a second
   * Worker for the same task queue and version on one connection); they become `workers` and
   * `connection`, and the previous generation is returned for the caller to retire. Not started.
   */
  renew(): Promise<WorkerGeneration>;
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
    connection = await NativeConnection.connect({ address: opts.address, ...temporalCredentials(opts.config) });
  } catch (err) {
    await metrics.close();
    throw err;
  }
  // Application steps: http.call and every plugin step, on each region's queue and on control
  // (placement: control). A plugin that does not load stops the worker here, not a run later.
  let appSteps: Record<string, unknown>;
  try {
    appSteps = pluginActivities(await loadPlugins(opts.config.plugins));
  } catch (err) {
    await Promise.allSettled([connection.close(), metrics.close()]);
    throw err;
  }
  const regionActivities = opts.region
    ? {
        ...createRegionActivities(opts.config, opts.region),
        ...createHttpActivities(opts.region),
        ...appSteps,
      }
    : undefined;
  const bundle = opts.control ? await controlBundle(tracing !== undefined) : undefined;
  const buildId = bundle?.buildId;
  const controlActivities = bundle && {
    ...createDecisionActivities(opts.config),
    ...createGuardianNoticeActivities(),
    ...createHttpActivities('control'),
    ...appSteps,
  };
  const makeWorkers = async (on: NativeConnection): Promise<Worker[]> => {
    const made: Worker[] = [];
    if (regionActivities) {
      made.push(
        await Worker.create({
          connection: on,
          namespace: opts.namespace,
          dataConverter,
          taskQueue: regionTaskQueue(opts.region!),
          activities: regionActivities,
          interceptors: { activity },
        }),
      );
    }
    if (bundle && controlActivities) {
      made.push(
        await Worker.create({
          connection: on,
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
          activities: controlActivities,
          interceptors: { activity },
          // Runs report their end (metrics) and their spans through these (workflows/interceptors.ts).
          sinks: { ...metrics.sinks, ...workflowExporterSink(tracing) },
        }),
      );
    }
    return made;
  };
  let workers: Worker[];
  try {
    workers = await makeWorkers(connection);
  } catch (err) {
    await Promise.allSettled([connection.close(), metrics.close()]);
    throw err;
  }
  const rw: RegionWorkers = {
    workers,
    connection,
    metrics,
    tracing,
    buildId,
    async makeCurrent() {
      if (buildId) await makeCurrentVersion(rw.connection, opts.namespace, buildId);
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
        const client = new Client({ connection: rw.connection, namespace: opts.namespace, dataConverter });
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
    async renew() {
      const previous = { workers: rw.workers, connection: rw.connection };
      const fresh = await NativeConnection.connect({ address: opts.address, ...temporalCredentials(opts.config) });
      try {
        rw.workers = await makeWorkers(fresh);
      } catch (err) {
        await fresh.close().catch(() => undefined);
        throw err;
      }
      rw.connection = fresh;
      return previous;
    },
    async close() {
      await Promise.allSettled([rw.connection.close(), metrics.close(), tracing?.shutdown()]);
    },
  };
  return rw;
}

/** How often a worker of a replicated control plane asks its cluster where the namespace is active. */
export const NAMESPACE_WATCH_MS = 1_000;

/** Runs until every worker stops (SIGINT/SIGTERM shut them down gracefully). */
export async function runRegionWorkers(opts: RegionWorkerOptions, onReady: (w: RegionWorkers) => void): Promise<void> {
  const rw = await createRegionWorkers(opts);
  const log = opts.log ?? (() => undefined);
  // Every Worker run and every retirement under way; a failed run stays in the set, so that
  // waiting on it throws.
  const running = new Set<Promise<void>>();
  const track = (p: Promise<void>): Promise<void> => {
    running.add(p);
    p.then(
      () => running.delete(p),
      () => undefined,
    );
    return p;
  };
  const start = (ws: Worker[]): Map<Worker, Promise<void>> => new Map(ws.map((w) => [w, track(w.run())]));
  let runs = start(rw.workers);
  const untilStopped = async (): Promise<void> => {
    while (running.size) await Promise.all([...running]);
  };
  let stopWatch: (() => void) | undefined;
  try {
    if (opts.makeCurrent !== false) {
      try {
        await Promise.race([rw.makeCurrent(), untilStopped()]);
      } catch (err) {
        rw.workers.forEach((w) => w.shutdown());
        await Promise.allSettled([...running]);
        throw err;
      }
    }
    // Before saying it is ready: the first run then finds this worker warm.
    rw.warmedUp = await rw.warmUp();
    onReady(rw);
    if (clusterEndpoints(opts.config)) {
      stopWatch = watchActiveCluster(rw, opts.namespace, async (was, now) => {
        // Not while a signal is stopping the process: the shutdown has these Workers in hand.
        if (!rw.workers.every((w) => w.getState() === 'RUNNING')) return;
        const previous = await rw.renew();
        const previousRuns = runs;
        runs = start(rw.workers);
        log(
          `worker: namespace ${opts.namespace} now active in ${now} (was ${was}): polling afresh; the previous pollers stop once idle`,
        );
        // The previous Workers' end is the retirement's to report: a failure there no longer
        // stops the process, whose work the fresh Workers now do.
        for (const p of previousRuns.values()) running.delete(p);
        track(
          retireWhenIdle(previous, previousRuns).then(
            () => log(`worker: previous pollers stopped`),
            (err: Error) => log(`worker: previous pollers did not stop cleanly: ${err.message}`),
          ),
        );
      });
    }
    await untilStopped();
  } finally {
    stopWatch?.();
    await rw.close();
  }
}

/**
 * Calls `moved` when the worker's own cluster names another active cluster for the namespace.
 *
 * Why the Workers are renewed then: a passive cluster forwards the worker's polls to the active
 * one, and while that one is dead every poll fails at once; the SDK's core retries a failed task
 * poll after a backoff that doubles from 200 ms up to 10 s (±20 %, without end: task_poll_retry_policy
 * in sdk-core's crates/client/src/retry.rs). So when the namespace fails over, this worker's pollers
 * may be asleep for seconds more, with the guardian's alarm waiting in their queue (seen: the
 * survivor's polls failing from the kill on, the 6th retry 5.6 s later, the alarm stored 1.3 s
 * after that and taken 5.0 s later, by the 7th). New Workers poll at once; nothing else wakes a
 * sleeping retry. A move with the old cluster alive renews them too: no harm, the previous ones
 * finish what they hold first.
 */
function watchActiveCluster(
  rw: RegionWorkers,
  namespace: string,
  moved: (was: string, now: string) => Promise<void>,
): () => void {
  let last: string | undefined;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void (async () => {
      try {
        const d = await rw.connection.withDeadline(Date.now() + NAMESPACE_WATCH_MS, () =>
          rw.connection.workflowService.describeNamespace({ namespace }),
        );
        const active = d.replicationConfig?.activeClusterName;
        if (!active) return;
        if (last !== undefined && active !== last) await moved(last, active);
        last = active;
      } catch {
        // Its own cluster silent or the renewal failed: asked again at the next tick.
      } finally {
        busy = false;
      }
    })();
  }, NAMESPACE_WATCH_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Shuts a previous generation down once none of its Workers holds a task (a shutdown would cancel
 * activities in flight), then closes its connection. Until then its pollers still take tasks, as
 * any other worker's would: the server hands each task to one poll.
 */
async function retireWhenIdle(previous: WorkerGeneration, runs: Map<Worker, Promise<void>>): Promise<void> {
  const idle = (w: Worker): boolean => {
    if (w.getState() !== 'RUNNING') return true;
    const s = w.getStatus();
    return s.numInFlightActivities === 0 && s.numInFlightWorkflowActivations === 0;
  };
  while (!previous.workers.every(idle)) await new Promise((r) => setTimeout(r, NAMESPACE_WATCH_MS));
  for (const w of previous.workers) if (w.getState() === 'RUNNING') w.shutdown();
  await Promise.all(previous.workers.map((w) => runs.get(w)));
  await previous.connection.close();
}
