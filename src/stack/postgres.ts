// The local stack's PostgreSQL servers: one per region per postgres-streaming service. The
// service's first region starts as primary; the others are pg_basebackup copies kept by
// streaming replication. An existing data directory is only ever started, never re-created:
// after a failover its role is whatever the runbooks made it.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { Client } from 'pg';
import type { Config } from '../lib/config/schema';
import {
  PrerequisiteError,
  dsn,
  findPgBin,
  initPrimary,
  initStandby,
  isInitialised,
  isRunning,
  logFile,
  start,
  type PgNode,
} from '../lib/postgres/node';
import { runStreaming } from './run';
import { waitUntil } from './wait';

export interface PgMember {
  /** Component name: postgres:<service>:<region>. */
  name: string;
  service: string;
  region: string;
  node: PgNode;
  /** bin directory from the config, when it names one. */
  pgBin?: string;
}

export function pgComponentName(service: string, region: string): string {
  return `postgres:${service}:${region}`;
}

/** Every PostgreSQL node of the config, grouped per service in the service's region order. */
export function pgMembers(config: Config): PgMember[] {
  const members: PgMember[] = [];
  for (const service of config.services) {
    if (service.database.provider !== 'postgres-streaming') continue;
    for (const region of service.regions) {
      const db = service.database.regions[region];
      if (!db) continue; // the schema rejects this; kept for the type checker
      members.push({
        name: pgComponentName(service.name, region),
        service: service.name,
        region,
        node: { region, dataDir: db.dataDir, port: db.port, host: db.host },
        ...(db.pgBin ? { pgBin: db.pgBin } : {}),
      });
    }
  }
  return members;
}

const MISSING_PG =
  'PostgreSQL server binaries not found (looked at PG_BIN, pg_ctl on PATH, /usr/lib/postgresql/*/bin): ' +
  'install the postgresql package (apt-get install postgresql) or set PG_BIN to its bin directory';

/** PostgreSQL's bin directory; installs Debian's postgresql package when missing and we are root. */
export async function ensurePgBin(opts: { onProgress?(line: string): void } = {}): Promise<string> {
  const found = findPgBin();
  if (found) return found;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) throw new PrerequisiteError(MISSING_PG);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const idleNoticeMs = 15_000;
  const onLine = (line: string) => opts.onProgress?.(`  apt: ${line}`);
  opts.onProgress?.('PostgreSQL not found; installing it with apt-get (a minute or two)…');
  try {
    await runStreaming('apt-get', ['update'], { env, onLine, idleNoticeMs });
    await runStreaming('apt-get', ['install', '-y', '--no-install-recommends', 'postgresql'], {
      env,
      onLine,
      idleNoticeMs,
    });
  } catch (err) {
    throw new PrerequisiteError(`${MISSING_PG} (apt-get failed: ${(err as Error).message})`);
  }
  const installed = findPgBin();
  if (!installed) throw new PrerequisiteError(MISSING_PG);
  return installed;
}

function postgresIds(): { uid: number; gid: number } | undefined {
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Creates the data directory's missing ancestors (mode 755) and, when we are root (the server
 * then runs as `postgres`), checks that user can reach the directory: a 700 home directory on
 * the way is the usual reason initdb fails with "permission denied".
 */
export function prepareDataDirParent(dataDir: string): void {
  const missing: string[] = [];
  for (let dir = dirname(dataDir); !existsSync(dir); dir = dirname(dir)) missing.unshift(dir);
  for (const dir of missing) {
    mkdirSync(dir);
    chmodSync(dir, 0o755);
  }
  if (process.getuid?.() !== 0) return;
  const pg = postgresIds();
  if (!pg) return; // node.ts reports the missing user with its own message
  for (let dir = dirname(dataDir); ; dir = dirname(dir)) {
    const st = statSync(dir);
    const reachable =
      (st.mode & 0o001) !== 0 ||
      (st.uid === pg.uid && (st.mode & 0o100) !== 0) ||
      (st.gid === pg.gid && (st.mode & 0o010) !== 0);
    if (!reachable) {
      throw new PrerequisiteError(
        `the postgres user cannot reach ${dataDir}: ${dir} is mode ${(st.mode & 0o777).toString(8)}; ` +
          `run \`chmod o+x ${dir}\` or set the dataDir in the config to a folder outside it`,
      );
    }
    if (dir === dirname(dir)) break;
  }
}

export interface PgProbe {
  role: 'primary' | 'standby';
  /** Standbys: the WAL receiver is streaming from its upstream. */
  streaming?: boolean;
  /** Standbys: host:port the WAL receiver connects to. */
  upstream?: string;
  /** Primaries: application_name of standbys streaming from it. */
  replicas?: string[];
}

/** Asks the live server for its role and replication state. Throws when it does not answer. */
export async function probePg(node: PgNode): Promise<PgProbe> {
  const client = new Client({ connectionString: dsn(node), connectionTimeoutMillis: 2_000, query_timeout: 3_000 });
  // Without a listener, a server-side termination after connect crashes the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    const recovery = await client.query<{ r: boolean }>('select pg_is_in_recovery() as r');
    if (!recovery.rows[0]?.r) {
      const reps = await client.query<{ name: string }>(
        "select application_name as name from pg_stat_replication where state = 'streaming' order by 1",
      );
      return { role: 'primary', replicas: reps.rows.map((r) => r.name) };
    }
    const wal = await client.query<{ status: string; host: string | null; port: number | null }>(
      'select status, sender_host as host, sender_port as port from pg_stat_wal_receiver',
    );
    const row = wal.rows[0];
    return {
      role: 'standby',
      streaming: row?.status === 'streaming',
      ...(row?.host ? { upstream: `${row.host}:${row.port ?? ''}` } : {}),
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface PgBringUp {
  member: PgMember;
  /** What up did: 'already running', 'started', 'initialised as primary', 'initialised as standby of us-west-2'. */
  action?: string;
  /** The node is now one this stack started or created (down will stop it). */
  touched: boolean;
  error?: string;
}

function failure(m: PgMember, err: unknown): string {
  return `${(err as Error).message} (log: ${logFile(m.node)})`;
}

/**
 * Brings one service's nodes up: starts initialised ones as they are, then creates the missing
 * ones: the first region as primary when the service has no node at all, otherwise as standbys
 * of the live primary. Every node ends up with an action or an error; none throws.
 */
export async function bringUpService(
  members: PgMember[],
  binOf: (m: PgMember) => string,
  onProgress: (line: string) => void = () => undefined,
): Promise<PgBringUp[]> {
  const results = new Map<PgMember, PgBringUp>(members.map((m) => [m, { member: m, touched: false }]));
  const res = (m: PgMember): PgBringUp => results.get(m) as PgBringUp;

  const existing = members.filter((m) => isInitialised(m.node));
  for (const m of existing) {
    try {
      if (await isRunning(binOf(m), m.node)) {
        res(m).action = 'already running';
      } else {
        onProgress(`starting ${m.name} on ${m.node.host}:${m.node.port}…`);
        await start(binOf(m), m.node);
        res(m).action = 'started';
        res(m).touched = true;
      }
    } catch (err) {
      res(m).error = `could not start: ${failure(m, err)}`;
    }
  }

  const primaries: PgMember[] = [];
  for (const m of existing) {
    if (res(m).error) continue;
    const probe = await probePg(m.node).catch(() => undefined);
    if (probe?.role === 'primary') primaries.push(m);
  }

  let missing = members.filter((m) => !isInitialised(m.node));
  let primary = primaries[0];
  const first = members[0];
  if (existing.length === 0 && first) {
    onProgress(`initialising ${first.name} as primary (initdb)…`);
    try {
      prepareDataDirParent(first.node.dataDir);
      await initPrimary(binOf(first), first.node);
      res(first).action = 'initialised as primary';
      primary = first;
    } catch (err) {
      res(first).error = `could not initialise as primary: ${failure(first, err)}`;
    }
    res(first).touched = true;
    missing = missing.filter((m) => m !== first);
  }
  for (const m of missing) {
    res(m).touched = true;
    if (!primary) {
      res(m).error = `not initialised, and service ${m.service} has no running primary to copy it from`;
      continue;
    }
    onProgress(`initialising ${m.name} as standby of ${primary.region} (pg_basebackup)…`);
    try {
      prepareDataDirParent(m.node.dataDir);
      await initStandby(binOf(m), m.node, primary.node);
      res(m).action = `initialised as standby of ${primary.region}`;
    } catch (err) {
      res(m).error = `could not initialise as standby of ${primary.region}: ${failure(m, err)}`;
    }
  }
  return members.map(res);
}

/** Waits until a standby's WAL receiver streams; resolves immediately for a primary. */
export async function waitUntilStreaming(node: PgNode, timeoutMs = 30_000): Promise<PgProbe> {
  return waitUntil(
    async () => {
      const p = await probePg(node);
      return p.role === 'primary' || p.streaming ? p : undefined;
    },
    { what: `standby ${node.host}:${node.port} streaming`, timeoutMs, intervalMs: 250 },
  );
}
