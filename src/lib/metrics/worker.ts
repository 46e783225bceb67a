// A region worker's metrics: the /metrics endpoint, the sink runs report through when they end,
// the activity interceptor that reads replication lag off the worker's own dbDescribe calls, and
// the Temporal SDK's metrics (Runtime.install, once per process) served on the same endpoint.
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  DefaultLogger,
  Runtime,
  makeTelemetryFilterString,
  type ActivityInterceptorsFactory,
  type InjectedSinks,
} from '@temporalio/worker';
import type { Context as ActivityContext } from '@temporalio/activity';
import type { DbNodeState } from '../../contract/activities';
import type { Config } from '../config/schema';
import { newRegistry, WorkerMetrics } from './registry';
import { fetchExposition, MetricsSettingError, parsePort, startMetricsServer, type MetricsServer } from './server';
import type { RegionshiftSinks } from '../../../workflows/interceptors';

export const METRICS_PORT_ENV = 'REGIONSHIFT_METRICS_PORT';

export interface PortChoice {
  port: number;
  /** Where it came from, named in errors and in the ready line. */
  setting: string;
}

/**
 * The worker's metrics port: --metrics-port, else REGIONSHIFT_METRICS_PORT, else the config's
 * metrics.workers.<region> (metrics.workers.control for a control-only worker), else any free port.
 * The local stack gives each worker its own port through the config or the environment.
 */
export function workerMetricsPort(
  config: Config,
  region: string | undefined,
  flag?: string,
  env: NodeJS.ProcessEnv = process.env,
): PortChoice {
  if (flag !== undefined) return { port: parsePort(flag, '--metrics-port'), setting: '--metrics-port' };
  const fromEnv = env[METRICS_PORT_ENV];
  if (fromEnv !== undefined && fromEnv !== '')
    return { port: parsePort(fromEnv, METRICS_PORT_ENV), setting: METRICS_PORT_ENV };
  const key = region ?? 'control';
  const configured = config.metrics?.workers[key];
  if (configured !== undefined) return { port: configured, setting: `metrics.workers.${key}` };
  return { port: 0, setting: `any free port (set metrics.workers.${key} or ${METRICS_PORT_ENV} for a fixed one)` };
}

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

let runtime: { sdkMetricsUrl?: string } | undefined;

/**
 * Installs the Temporal runtime with its Prometheus exporter on a loopback port (scraped through
 * our /metrics, not directly). Runtime.install works once per process: a process that already
 * has a runtime (a test that made its own) gets none of the SDK's metrics, and is told so.
 */
export async function installWorkerRuntime(): Promise<{ sdkMetricsUrl?: string }> {
  if (runtime) return runtime;
  if (Runtime._instance) return (runtime = {});
  const port = await freeLoopbackPort();
  try {
    Runtime.install({
      logger: new DefaultLogger('WARN'),
      telemetryOptions: {
        logging: { filter: makeTelemetryFilterString({ core: 'WARN' }) },
        metrics: {
          prometheus: {
            bindAddress: `127.0.0.1:${port}`,
            countersTotalSuffix: true,
            unitSuffix: true,
            useSecondsForDurations: true,
          },
        },
      },
    });
    runtime = { sdkMetricsUrl: `http://127.0.0.1:${port}/metrics` };
  } catch {
    runtime = {};
  }
  return runtime;
}

export interface WorkerMetricsSetup {
  metrics: WorkerMetrics;
  server: MetricsServer;
  sdkMetrics: boolean;
  sinks: InjectedSinks<RegionshiftSinks>;
  activityInterceptors: ActivityInterceptorsFactory[];
  close(): Promise<void>;
}

export async function startWorkerMetrics(
  config: Config,
  choice: PortChoice,
  sdkMetricsUrl?: string,
): Promise<WorkerMetricsSetup> {
  const registry = newRegistry();
  const metrics = new WorkerMetrics(registry);
  const host = config.metrics?.host ?? '127.0.0.1';
  const server = await startMetricsServer({
    registry,
    host,
    port: choice.port,
    setting: choice.setting,
    ...(sdkMetricsUrl ? { extra: () => fetchExposition(sdkMetricsUrl) } : {}),
  });
  const lag: ActivityInterceptorsFactory = (ctx: ActivityContext) => ({
    inbound: {
      async execute(input, next) {
        const result = await next(input);
        // The node as this worker saw it: described, or as its rejoin left it (RejoinResult.state).
        const service = (input.args[0] as { service?: string } | undefined)?.service;
        const node =
          ctx.info.activityType === 'dbDescribe'
            ? (result as DbNodeState)
            : ctx.info.activityType === 'dbRejoinAsStandby'
              ? (result as { state?: DbNodeState } | undefined)?.state
              : undefined;
        if (service && node) metrics.recordNode(service, node);
        return result;
      },
    },
  });
  return {
    metrics,
    server,
    sdkMetrics: sdkMetricsUrl !== undefined,
    sinks: {
      regionshiftMetrics: { runEnded: { fn: (_info, summary) => metrics.recordRun(summary), callDuringReplay: false } },
    },
    activityInterceptors: [lag],
    close: () => server.close(),
  };
}

export { MetricsSettingError };
