// A real PostgreSQL primary and streaming standbys on free loopback ports, for tests that need
// actual replication (fencing, lag, promotion, pg_rewind). Built with src/lib/postgres/node.ts so
// tests exercise the same setup the local stack uses.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from './ports';
import { findPgBin, initPrimary, initStandby, logFile, stop, type PgNode } from '../../src/lib/postgres/node';

export interface PgCluster {
  bin: string;
  /** The temporary folder holding every data directory and its log. */
  dir: string;
  /** The first is the primary, the others stream from it, in the order the regions were given. */
  nodes: PgNode[];
  /** The server log of a node, for failure messages. */
  logOf(node: PgNode): string;
  /** Stops every server (immediately: nothing to keep) and removes the folder. Safe to call twice. */
  teardown(): Promise<void>;
}

export interface PgPair extends PgCluster {
  primary: PgNode;
  standby: PgNode;
}

export interface PgPairOptions {
  primaryRegion?: string;
  standbyRegion?: string;
}

/** A primary in regions[0] and a streaming standby of it in every other region. */
export async function createPgCluster(regions: string[]): Promise<PgCluster> {
  const bin = findPgBin();
  if (!bin) throw new Error('PostgreSQL server binaries not found: install postgresql or set PG_BIN');
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-pg-'));
  // As root the servers run as `postgres`, which must be able to reach its data directory.
  chmodSync(dir, 0o755);
  const ports = await freePorts(regions.length);
  const nodes: PgNode[] = regions.map((region, i) => ({
    region,
    dataDir: join(dir, region),
    port: ports[i]!,
    host: '127.0.0.1',
  }));

  let tornDown = false;
  const teardown = async (): Promise<void> => {
    if (tornDown) return;
    tornDown = true;
    const errors: string[] = [];
    for (const node of [...nodes].reverse()) {
      await stop(bin, node, 'immediate').catch((err: Error) => errors.push(`${node.region}: ${err.message}`));
    }
    // REGIONSHIFT_KEEP_PG=1 keeps the data directories and server logs for a post-mortem.
    if (process.env.REGIONSHIFT_KEEP_PG) console.error(`pg cluster kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`pg cluster teardown: could not stop ${errors.join('; ')}`);
  };

  try {
    await initPrimary(bin, nodes[0]!);
    for (const standby of nodes.slice(1)) await initStandby(bin, standby, nodes[0]!);
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
  return { bin, dir, nodes, logOf: logFile, teardown };
}

export async function createPgPair(options: PgPairOptions = {}): Promise<PgPair> {
  const cluster = await createPgCluster([options.primaryRegion ?? 'us-west-2', options.standbyRegion ?? 'us-east-1']);
  return { ...cluster, primary: cluster.nodes[0]!, standby: cluster.nodes[1]! };
}
