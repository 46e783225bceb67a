// The local stack's replicated control plane (stack.controlPlane: replicated): one full Temporal
// server per region on SQLite in the state directory, each told of the others, the namespace
// global and active in the first service's writer region. A restart keeps every cluster's history
// and leaves the namespace where it was failed over to.
import { join } from 'node:path';
import type { Config } from '../lib/config/schema';
import { clusterEndpoints, namespaceViewAt, type ClusterEndpoint } from '../lib/runs/control-plane';
import {
  clusterArgv,
  connectCluster,
  ensureTemporalServer,
  linkClusters,
  registerGlobalNamespace,
  writeClusterFiles,
  type ClusterSpec,
} from './control-plane';
import { isPortFree, tcpOpen } from '../lib/net';
import { isAlive, logTail, spawnDetached, type ProcessRecord } from './process';
import { writeState, type RecordedProcess, type StackState } from './state';
import { missingSearchAttributes, registerSearchAttributes } from './temporal';
import { waitUntil } from './wait';
import type { ComponentStatus } from './status';

const READY_MS = 120_000;

export function clusterComponentName(region: string): string {
  return `temporal:${region}`;
}

export interface StackCluster extends ClusterSpec {
  address: string;
  host: string;
}

/** The stack's clusters, in region order (the first is where the namespace starts active). */
export function stackClusters(config: Config, home: string): StackCluster[] {
  const endpoints = clusterEndpoints(config) as ClusterEndpoint[];
  return endpoints.map((e, i) => {
    const [host, port] = e.address.split(':') as [string, string];
    return {
      name: e.region,
      initialFailoverVersion: i + 1,
      port: Number(port),
      host,
      address: e.address,
      httpAddress: `${host}:${Number(port) + 8}`,
      dir: join(home, 'temporal', e.region),
    };
  });
}

export function isReplicated(config: Config): boolean {
  return config.stack.controlPlane === 'replicated';
}

/** Each cluster's frontend port and the eight after it (its other services), for clusters not running. */
export function replicatedPorts(
  config: Config,
  home: string,
  live: (name: string) => RecordedProcess | undefined,
): Array<{ host: string; port: number; component: string; setting: string }> {
  return stackClusters(config, home)
    .filter((c) => !live(clusterComponentName(c.name)))
    .flatMap((c) =>
      Array.from({ length: 9 }, (_, k) => ({
        host: c.host,
        port: c.port + k,
        component: clusterComponentName(c.name),
        setting: config.temporal.clusters
          ? `temporal.clusters.${c.name}`
          : 'stack.temporalPort (region i uses temporalPort + 10·i … +8)',
      })),
    );
}

function exited(rec: ProcessRecord): () => string | undefined {
  return () =>
    isAlive(rec.pid)
      ? undefined
      : `exited during start: ${logTail(rec.log, rec.logOffset) || '(no output)'} (log: ${rec.log})`;
}

export interface ClusterOutcome {
  action?: string;
  error?: string;
}

/** Starts the clusters not running, links them, and makes the namespace global with the search attributes. */
export async function upReplicated(
  config: Config,
  state: StackState,
  home: string,
  live: (name: string) => RecordedProcess | undefined,
  say: (line: string) => void,
): Promise<Map<string, ClusterOutcome>> {
  const clusters = stackClusters(config, home);
  const out = new Map<string, ClusterOutcome>();
  const needStart = clusters.filter((c) => !live(clusterComponentName(c.name)));
  const bin = needStart.length ? await ensureTemporalServer({ onProgress: say }) : undefined;
  const recs = new Map<string, RecordedProcess>();
  for (const c of clusters) {
    const name = clusterComponentName(c.name);
    let rec = live(name);
    if (rec) {
      out.set(name, { action: 'already running' });
    } else {
      say(`starting Temporal cluster ${c.name} on ${c.address}…`);
      writeClusterFiles(c);
      rec = {
        ...(await spawnDetached(clusterArgv(bin!, c), { log: join(home, 'logs', `temporal-${c.name}.log`) })),
        address: c.address,
      };
      state.processes[name] = rec;
      writeState(state, home);
      out.set(name, { action: 'started' });
    }
    recs.set(c.name, rec);
  }
  const fail = (error: string): Map<string, ClusterOutcome> => {
    for (const c of clusters)
      out.set(clusterComponentName(c.name), { ...out.get(clusterComponentName(c.name)), error });
    return out;
  };
  let conns;
  try {
    conns = await Promise.all(
      clusters.map(async (c) => {
        await waitUntil(() => tcpOpen(c.host, c.port), {
          what: `Temporal cluster ${c.name} on ${c.address}`,
          timeoutMs: READY_MS,
          intervalMs: 250,
          abort: exited(recs.get(c.name)!),
        });
        return { spec: c, conn: await connectCluster(c, READY_MS) };
      }),
    );
  } catch (err) {
    return fail((err as Error).message);
  }
  try {
    const namespace = config.temporal.namespace;
    await linkClusters(conns);
    await registerGlobalNamespace(
      conns[0]!.conn,
      namespace,
      clusters.map((c) => c.name),
      clusters[0]!.name,
    );
    // Search attributes are namespace settings: the active cluster takes them, the others replicate them.
    const active = (await namespaceViewAt(config, clusters[0]!.address)).active;
    const activeCluster = clusters.find((c) => c.name === active) ?? clusters[0]!;
    const missing = await waitUntil(
      async () => missingSearchAttributes(activeCluster.host, activeCluster.port, namespace),
      { what: `namespace ${namespace} on ${activeCluster.name}`, timeoutMs: 30_000, intervalMs: 250 },
    );
    await registerSearchAttributes(activeCluster.host, activeCluster.port, namespace, missing);
    for (const c of clusters) {
      await waitUntil(
        async () =>
          (await namespaceViewAt(config, c.address)).active !== '' &&
          (await missingSearchAttributes(c.host, c.port, namespace)).length === 0,
        {
          what: `namespace ${namespace} with its search attributes on ${c.name}`,
          timeoutMs: 30_000,
          intervalMs: 250,
        },
      );
    }
  } catch (err) {
    return fail((err as Error).message);
  } finally {
    await Promise.allSettled(conns.map((c) => c.conn.close()));
  }
  return out;
}

/** One line per cluster: up or not, and whether the namespace is active there or it is a standby. */
export async function replicatedStatus(
  config: Config,
  home: string,
  state: StackState,
  live: (name: string) => RecordedProcess | undefined,
): Promise<ComponentStatus[]> {
  const clusters = stackClusters(config, home);
  const namespace = config.temporal.namespace;
  return Promise.all(
    clusters.map(async (c): Promise<ComponentStatus> => {
      const name = clusterComponentName(c.name);
      const rec = live(name);
      const log = state.processes[name]?.log;
      const s: ComponentStatus = {
        name,
        kind: 'temporal',
        address: c.address,
        pid: rec?.pid ?? null,
        health: 'down',
        region: c.name,
        ...(log ? { log } : {}),
      };
      if (!rec) {
        s.detail = (await isPortFree(c.host, c.port))
          ? 'not running'
          : `not running (port ${c.port} is used by another process)`;
        return s;
      }
      try {
        const view = await namespaceViewAt(config, c.address);
        s.health = 'up';
        s.controlPlane = view.active === c.name ? 'active' : 'standby';
        s.detail =
          view.active === c.name
            ? `namespace ${namespace} active here`
            : `standby of namespace ${namespace} (active: ${view.active})`;
      } catch (err) {
        s.detail = `pid ${rec.pid} runs but does not answer: ${(err as Error).message}`;
      }
      return s;
    }),
  );
}
