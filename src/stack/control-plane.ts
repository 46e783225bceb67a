// A Temporal control plane per region, replicated: the full Temporal server (not the CLI's dev
// server, which cannot join another cluster), one cluster per region on SQLite, connected to each
// other, with a global namespace active in one of them. The pieces the replicated stack mode is to
// be built from; `npm run prove-replication` runs them end to end on two clusters.
//
// Config keys from Temporal's own multi-cluster samples (config/development-cluster-{a,b}.yaml):
// every cluster has enableGlobalNamespace, the same failoverVersionIncrement and a distinct
// initialFailoverVersion below it; it lists only itself, and learns the others from
// AddOrUpdateRemoteCluster (the CLI 1.5.1's `operator cluster upsert` cannot enable replication).
import { spawn, type ChildProcess } from 'node:child_process';
import { msToTs } from '@temporalio/common/lib/time';
import { accessSync, constants, createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TOOLS_DIR } from '../lib/paths';
import { PrerequisiteError } from '../lib/postgres/node';
import type { TemporalCredentials } from '../lib/config/temporal-credentials';
import { runStreaming, which } from './run';

export const TEMPORAL_SERVER_VERSION = 'v1.29.1';
const TEMPORAL_SERVER_MODULE = 'go.temporal.io/server/cmd/server';
/** Shared by every cluster: failover versions of cluster i are i+1, i+1+increment, … */
export const FAILOVER_VERSION_INCREMENT = 10;

export interface ClusterSpec {
  /** Cluster name: the region's. */
  name: string;
  /** 1-based, distinct per cluster, below FAILOVER_VERSION_INCREMENT. */
  initialFailoverVersion: number;
  /** The frontend's gRPC port; the cluster's other services take the next eight. */
  port: number;
  /** Its config, SQLite file and log. */
  dir: string;
  /** host:port other clusters reach its frontend at; default 127.0.0.1:port (and its HTTP API at port + 8). */
  address?: string;
  /** Its frontend's HTTP API, told to the other clusters when known. */
  httpAddress?: string;
}

/** The Temporal server binary, built once with `go install` into <tools>/server-bin when absent. */
export async function ensureTemporalServer(opts: { onProgress?(line: string): void } = {}): Promise<string> {
  const binDir = join(TOOLS_DIR, 'server-bin');
  const bin = join(binDir, 'server');
  try {
    accessSync(bin, constants.X_OK);
    return bin;
  } catch {
    // built below
  }
  const go = which('go') ?? '/usr/local/go/bin/go';
  try {
    accessSync(go, constants.X_OK);
  } catch {
    throw new PrerequisiteError(
      `the replicated control plane needs the Temporal server ${TEMPORAL_SERVER_VERSION}, built with Go: install Go, or put the server binary at ${bin}`,
    );
  }
  mkdirSync(binDir, { recursive: true });
  opts.onProgress?.(
    `building the Temporal server ${TEMPORAL_SERVER_VERSION} into ${binDir} (minutes; longer with a cold Go module cache)…`,
  );
  await runStreaming(go, ['install', `${TEMPORAL_SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}`], {
    env: { ...process.env, GOBIN: binDir },
    idleNoticeMs: 30_000,
    onLine: (line) => opts.onProgress?.(`  go: ${line}`),
  });
  return bin;
}

/** The server's config for one cluster (the file `--env config` loads from its dir). */
export function clusterConfigYaml(c: ClusterSpec): string {
  const sqlite = [
    '      sql:',
    '        pluginName: "sqlite"',
    `        databaseName: ${JSON.stringify(join(c.dir, 'temporal.db'))}`,
    '        connectAddr: "localhost"',
    '        connectProtocol: "tcp"',
    // setup: the server creates its schema; WAL and synchronous=NORMAL as the dev server runs.
    '        connectAttributes: { cache: "private", setup: true, journal_mode: wal, synchronous: 1 }',
    '        maxConns: 1',
    '        maxIdleConns: 1',
    '        maxConnLifetime: "1h"',
  ].join('\n');
  const rpc = (i: number) =>
    `{ grpcPort: ${c.port + 2 * i}, membershipPort: ${c.port + 2 * i + 1}, bindOnLocalHost: true }`;
  return `log:
  stdout: true
  level: warn
persistence:
  defaultStore: sqlite-default
  visibilityStore: sqlite-visibility
  numHistoryShards: 1
  datastores:
    sqlite-default:
${sqlite}
    sqlite-visibility:
${sqlite}
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "127.0.0.1"
services:
  frontend:
    rpc: ${rpc(0).replace(' }', `, httpPort: ${c.port + 8} }`)}
  history:
    rpc: ${rpc(1)}
  matching:
    rpc: ${rpc(2)}
  worker:
    rpc: ${rpc(3)}
clusterMetadata:
  enableGlobalNamespace: true
  failoverVersionIncrement: ${FAILOVER_VERSION_INCREMENT}
  masterClusterName: ${JSON.stringify(c.name)}
  currentClusterName: ${JSON.stringify(c.name)}
  clusterInformation:
    ${JSON.stringify(c.name)}:
      enabled: true
      initialFailoverVersion: ${c.initialFailoverVersion}
      rpcName: "frontend"
      rpcAddress: "127.0.0.1:${c.port}"
      httpAddress: "127.0.0.1:${c.port + 8}"
# A call that must run on the active cluster, sent to a standby, is forwarded there.
dcRedirectionPolicy:
  policy: "all-apis-forwarding"
dynamicConfigClient:
  filepath: ${JSON.stringify(join(c.dir, 'dynamic.yaml'))}
  pollInterval: "10s"
`;
}

/**
 * Dynamic config: a remote cluster added at run time is known to every service within seconds
 * (the default refresh is a minute, and a namespace naming an unknown cluster is refused).
 */
export const DYNAMIC_CONFIG_YAML = `system.clusterMetadataRefreshInterval:
  - value: 2s
system.namespaceCacheRefreshInterval:
  - value: 1s
history.ReplicationEnableUpdateWithNewTaskMerge:
  - value: true
`;

export function writeClusterFiles(c: ClusterSpec): void {
  mkdirSync(c.dir, { recursive: true });
  writeFileSync(join(c.dir, 'config.yaml'), clusterConfigYaml(c));
  writeFileSync(join(c.dir, 'dynamic.yaml'), DYNAMIC_CONFIG_YAML);
}

/** The server's command line for one cluster (its files written by writeClusterFiles). */
export function clusterArgv(bin: string, c: ClusterSpec): string[] {
  // v1.29.1 reads <root>/<config>/<env>.yaml (no --config-file yet).
  return [bin, '--root', c.dir, '--config', '.', '--env', 'config', '--allow-no-auth', 'start'];
}

export function startCluster(bin: string, c: ClusterSpec): ChildProcess {
  writeClusterFiles(c);
  const log = createWriteStream(join(c.dir, 'server.log'));
  const [file, ...args] = clusterArgv(bin, c);
  const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  return child;
}

type Connection = import('@temporalio/client').Connection;

async function retry<T>(what: string, fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > until) throw new Error(`${what}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** `credentials`: what a secured cluster asks for (regionshift control-plane init); the stack's own clusters ask none. */
export async function connectCluster(
  c: ClusterSpec,
  timeoutMs = 120_000,
  credentials: TemporalCredentials = {},
): Promise<Connection> {
  const { Connection } = await import('@temporalio/client');
  const address = c.address ?? `127.0.0.1:${c.port}`;
  return retry(
    `cluster ${c.name} on ${address} did not answer`,
    async () => {
      const conn = await Connection.connect({ address, connectTimeout: '2s', ...credentials });
      await conn.workflowService.getSystemInfo({});
      return conn;
    },
    timeoutMs,
  );
}

/** Every cluster told of every other, with replication on. */
export async function linkClusters(clusters: { spec: ClusterSpec; conn: Connection }[]): Promise<void> {
  for (const self of clusters) {
    for (const other of clusters) {
      if (other === self) continue;
      await self.conn.operatorService.addOrUpdateRemoteCluster({
        frontendAddress: other.spec.address ?? `127.0.0.1:${other.spec.port}`,
        ...(other.spec.httpAddress || !other.spec.address
          ? { frontendHttpAddress: other.spec.httpAddress ?? `127.0.0.1:${other.spec.port + 8}` }
          : {}),
        enableRemoteClusterConnection: true,
        enableReplication: true,
      });
    }
  }
}

/** A global namespace on every cluster, active in `active`; retried until the clusters know each other. */
export async function registerGlobalNamespace(
  conn: Connection,
  namespace: string,
  clusters: string[],
  active: string,
  timeoutMs = 30_000,
): Promise<void> {
  await retry(
    `registering global namespace ${namespace}`,
    async () => {
      try {
        await conn.workflowService.registerNamespace({
          namespace,
          isGlobalNamespace: true,
          activeClusterName: active,
          clusters: clusters.map((clusterName) => ({ clusterName })),
          workflowExecutionRetentionPeriod: msToTs('1 day'),
        });
      } catch (err) {
        if ((err as Error).message.includes('already exists')) return;
        throw err;
      }
    },
    timeoutMs,
  );
}

/** The cluster the namespace is active in, as `conn`'s cluster sees it. */
export async function activeCluster(
  conn: Connection,
  namespace: string,
): Promise<{ active: string; failoverVersion: number }> {
  const d = await conn.workflowService.describeNamespace({ namespace });
  return { active: d.replicationConfig?.activeClusterName ?? '', failoverVersion: Number(d.failoverVersion ?? 0) };
}

/**
 * Fails the namespace over to `target`, through any cluster that answers (after losing the active
 * one: a surviving cluster's own view, which is how an unplanned control-plane failover goes).
 */
export async function failoverNamespace(conn: Connection, namespace: string, target: string): Promise<void> {
  await conn.workflowService.updateNamespace({ namespace, replicationConfig: { activeClusterName: target } });
}
