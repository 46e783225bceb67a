// A real PostgreSQL primary and streaming standby on free loopback ports, for tests that need
// actual replication (fencing, lag, promotion, pg_rewind). Built with src/postgres/node.ts so
// tests exercise the same setup the local stack uses.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from './ports';
import { findPgBin, initPrimary, initStandby, logFile, stop, type PgNode } from '../../src/postgres/node';

export interface PgPair {
  bin: string;
  /** The temporary folder holding both data directories and their logs. */
  dir: string;
  primary: PgNode;
  standby: PgNode;
  /** The server log of a node, for failure messages. */
  logOf(node: PgNode): string;
  /** Stops both servers (immediately: nothing to keep) and removes the folder. Safe to call twice. */
  teardown(): Promise<void>;
}

export interface PgPairOptions {
  primaryRegion?: string;
  standbyRegion?: string;
}

export async function createPgPair(options: PgPairOptions = {}): Promise<PgPair> {
  const bin = findPgBin();
  if (!bin) throw new Error('PostgreSQL server binaries not found: install postgresql or set PG_BIN');
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-pg-'));
  // As root the servers run as `postgres`, which must be able to reach its data directory.
  chmodSync(dir, 0o755);
  const primaryRegion = options.primaryRegion ?? 'us-west-2';
  const standbyRegion = options.standbyRegion ?? 'us-east-1';
  const [primaryPort, standbyPort] = (await freePorts(2)) as [number, number];
  const primary: PgNode = { region: primaryRegion, dataDir: join(dir, primaryRegion), port: primaryPort, host: '127.0.0.1' };
  const standby: PgNode = { region: standbyRegion, dataDir: join(dir, standbyRegion), port: standbyPort, host: '127.0.0.1' };

  let tornDown = false;
  const teardown = async (): Promise<void> => {
    if (tornDown) return;
    tornDown = true;
    const errors: string[] = [];
    for (const node of [standby, primary]) {
      await stop(bin, node, 'immediate').catch((err: Error) => errors.push(`${node.region}: ${err.message}`));
    }
    // REGIONSHIFT_KEEP_PG=1 keeps the data directories and server logs for a post-mortem.
    if (process.env.REGIONSHIFT_KEEP_PG) console.error(`pg pair kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`pg pair teardown: could not stop ${errors.join('; ')}`);
  };

  try {
    await initPrimary(bin, primary);
    await initStandby(bin, standby, primary);
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
  return { bin, dir, primary, standby, logOf: logFile, teardown };
}
