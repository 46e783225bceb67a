// Control of one local PostgreSQL server (a "node"): create, start, stop, and turn it into a
// streaming-replication standby of another node. Used by the local stack to build the
// per-region servers and by the postgres-streaming provider on the region worker that sits
// next to its database (the way Patroni's agent does), for the steps SQL alone cannot do.
import { execFile, spawnSync } from 'node:child_process';
import {
  existsSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  writeFileSync,
  mkdirSync,
  chownSync,
  rmSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface PgNode {
  region: string;
  /** Absolute path of the data directory. */
  dataDir: string;
  port: number;
  /** Address the server listens on; loopback for the local stack. */
  host: string;
}

/** The superuser the tooling connects as. Trust auth on loopback only (local stack). */
export const PG_SUPERUSER = 'postgres';
/** The role applications write as; fencing is checked against it. */
export const PG_APP_ROLE = 'app';

export class PrerequisiteError extends Error {
  override name = 'PrerequisiteError';
}

/** Where the PostgreSQL server binaries are: PG_BIN, then pg_ctl on PATH, then Debian's layout. */
export function findPgBin(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env.PG_BIN;
  if (fromEnv) {
    if (!existsSync(join(fromEnv, 'pg_ctl'))) {
      throw new PrerequisiteError(`PG_BIN=${fromEnv} has no pg_ctl; point PG_BIN at PostgreSQL's bin directory`);
    }
    return fromEnv;
  }
  const which = spawnSync('sh', ['-c', 'command -v pg_ctl'], { encoding: 'utf8' });
  const onPath = which.stdout.trim();
  if (which.status === 0 && onPath) {
    const dir = dirname(realpathSync(onPath));
    if (existsSync(join(dir, 'pg_basebackup'))) return dir;
  }
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, 'bin', 'pg_ctl')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(debian, versions[0], 'bin');
  }
  return undefined;
}

/**
 * PostgreSQL refuses to run as root. When we are root, server processes run as the
 * `postgres` system user (created by Debian's package).
 */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync('id', ['-u', PG_SUPERUSER], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', PG_SUPERUSER], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) {
    throw new PrerequisiteError(
      'running as root, and PostgreSQL will not run as root: no "postgres" user to run it as (apt-get install postgresql creates one)',
    );
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function run(bin: string, tool: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const user = serverUser();
  try {
    const { stdout, stderr } = await execFileAsync(join(bin, tool), args, {
      timeout: timeoutMs,
      ...(user ?? {}),
      // pg tools look up HOME for .pgpass; the postgres user's own home may not be readable.
      env: { ...process.env, HOME: '/tmp', LC_ALL: 'C' },
    });
    // Some tools (pg_rewind) report their outcome on stderr.
    return stdout + stderr;
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: number | string };
    const detail = (e.stderr || e.message).trim().split('\n').slice(-3).join(' | ');
    throw new Error(`${tool} ${args.join(' ')} failed (exit ${e.code}): ${detail}`);
  }
}

function ownDir(dir: string): void {
  // Parents must be traversable by the server's user; the data directory itself is private.
  mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const user = serverUser();
  if (user) chownSync(dir, user.uid, user.gid);
}

function nodeConf(node: PgNode): string {
  // Kept in a file of its own because pg_basebackup copies postgresql.conf from the primary:
  // after a copy only this file is rewritten.
  return [
    `# written by regionshift for region ${node.region}`,
    `port = ${node.port}`,
    `listen_addresses = '${node.host}'`,
    // No unix socket: every tool connects over TCP, and a socket file inside the data directory
    // breaks pg_rewind (it tries to copy it).
    "unix_socket_directories = ''",
    `cluster_name = '${node.region}'`,
    '',
  ].join('\n');
}

const COMMON_CONF = [
  '',
  '# regionshift: streaming replication and safe role changes',
  'wal_level = replica',
  'max_wal_senders = 10',
  'max_replication_slots = 10',
  "wal_keep_size = '512MB'",
  'hot_standby = on',
  // pg_rewind needs this to bring a former primary back as a standby.
  'wal_log_hints = on',
  'shared_buffers = 32MB',
  'max_connections = 100',
  'wal_sender_timeout = 10s',
  'wal_receiver_status_interval = 1s',
  "include_if_exists = 'regionshift.node.conf'",
  '',
].join('\n');

const HBA = [
  '# regionshift local stack: loopback only',
  'local   all          all                  trust',
  'host    all          all    127.0.0.1/32  trust',
  'host    replication  all    127.0.0.1/32  trust',
  '',
].join('\n');

function writeAsServer(path: string, content: string): void {
  writeFileSync(path, content, { mode: 0o600 });
  const user = serverUser();
  if (user) chownSync(path, user.uid, user.gid);
}

export function isInitialised(node: PgNode): boolean {
  return existsSync(join(node.dataDir, 'PG_VERSION'));
}

/** A fresh primary: initdb, replication-ready settings, and the application role. */
export async function initPrimary(bin: string, node: PgNode): Promise<void> {
  ownDir(node.dataDir);
  await run(bin, 'initdb', ['-D', node.dataDir, '-U', PG_SUPERUSER, '--auth=trust', '--encoding=UTF8', '--no-sync']);
  const conf = join(node.dataDir, 'postgresql.conf');
  writeAsServer(conf, readFileSync(conf, 'utf8') + COMMON_CONF);
  writeAsServer(join(node.dataDir, 'pg_hba.conf'), HBA);
  writeAsServer(join(node.dataDir, 'regionshift.node.conf'), nodeConf(node));
  await start(bin, node);
  await psql(bin, node, `CREATE ROLE ${PG_APP_ROLE} LOGIN; GRANT ALL ON SCHEMA public TO ${PG_APP_ROLE};`);
}

/** A standby of `primary`, copied with pg_basebackup and kept by streaming replication. */
export async function initStandby(bin: string, node: PgNode, primary: PgNode): Promise<void> {
  if (existsSync(node.dataDir)) rmSync(node.dataDir, { recursive: true, force: true });
  ownDir(node.dataDir);
  await run(bin, 'pg_basebackup', [
    '-h',
    primary.host,
    '-p',
    String(primary.port),
    '-U',
    PG_SUPERUSER,
    '-D',
    node.dataDir,
    '-X',
    'stream',
    '-c',
    'fast',
    '--write-recovery-conf',
    '--no-sync',
  ]);
  writeAsServer(join(node.dataDir, 'regionshift.node.conf'), nodeConf(node));
  setPrimaryConninfo(node, primary);
  await start(bin, node);
}

function conninfo(primary: PgNode, standbyName: string): string {
  return `host=${primary.host} port=${primary.port} user=${PG_SUPERUSER} application_name=${standbyName}`;
}

/** Point a stopped node at a primary: standby.signal plus primary_conninfo in postgresql.auto.conf. */
function setPrimaryConninfo(node: PgNode, primary: PgNode): void {
  const auto = join(node.dataDir, 'postgresql.auto.conf');
  const kept = existsSync(auto)
    ? readFileSync(auto, 'utf8')
        .split('\n')
        .filter((l) => !/^\s*(primary_conninfo|default_transaction_read_only)\s*=/.test(l))
    : ['# Do not edit this file manually!'];
  const lines = [...kept.filter((l) => l.trim() !== ''), `primary_conninfo = '${conninfo(primary, node.region)}'`, ''];
  writeAsServer(auto, lines.join('\n'));
  writeAsServer(join(node.dataDir, 'standby.signal'), '');
}

export async function isRunning(bin: string, node: PgNode): Promise<boolean> {
  if (!isInitialised(node)) return false;
  try {
    await run(bin, 'pg_ctl', ['status', '-D', node.dataDir], 10_000);
    return true;
  } catch {
    return false; // pg_ctl status exits 3 when the server is not running
  }
}

/** The postmaster's pid, from postmaster.pid, when the server is running. */
export function postmasterPid(node: PgNode): number | undefined {
  const file = join(node.dataDir, 'postmaster.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export function logFile(node: PgNode): string {
  return `${node.dataDir}.log`;
}

/** Start the server and wait until it accepts connections. Starting a running server is a no-op. */
export async function start(bin: string, node: PgNode): Promise<void> {
  if (await isRunning(bin, node)) return;
  const log = logFile(node);
  writeAsServer(log, existsSync(log) ? readFileSync(log, 'utf8') : '');
  await run(bin, 'pg_ctl', ['start', '-D', node.dataDir, '-l', log, '-w', '-t', '60'], 90_000);
}

/**
 * Stop the server. `fast` is a clean shutdown (sessions ended, shutdown checkpoint written and
 * streamed to standbys); `immediate` simulates a crash. Stopping a stopped server is a no-op.
 */
export async function stop(bin: string, node: PgNode, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
  if (!(await isRunning(bin, node))) return;
  await run(bin, 'pg_ctl', ['stop', '-D', node.dataDir, '-m', mode, '-w', '-t', '60'], 90_000);
}

/**
 * Make a former primary (or a lagging standby) a standby of `primary`. pg_rewind first brings
 * its data directory onto the new primary's timeline; it discards any write the node made
 * after the divergence point, so callers that need those writes (reconciliation) must read them
 * before calling this.
 */
export async function rejoinAsStandby(
  bin: string,
  node: PgNode,
  primary: PgNode,
): Promise<{ rewound: boolean; recloned: boolean; keptAside?: string }> {
  await stop(bin, node, 'fast').catch(() => stop(bin, node, 'immediate'));
  // The fence may have left the node read-only; as a standby it is read-only anyway, and it
  // must not carry the fence into a later promotion.
  setPrimaryConninfo(node, primary);
  // Right after promotion the new primary's control file may still name the old timeline, and
  // pg_rewind would wrongly conclude that no rewind is needed; a checkpoint records the new one.
  await psql(bin, primary, 'CHECKPOINT');
  let out: string;
  try {
    out = await run(
      bin,
      'pg_rewind',
      [
        '--target-pgdata',
        node.dataDir,
        '--source-server',
        `host=${primary.host} port=${primary.port} user=${PG_SUPERUSER} dbname=postgres`,
      ],
      300_000,
    );
  } catch (err) {
    // A pg_rewind that was interrupted (its host died mid-way) leaves a data directory that
    // PostgreSQL's documentation says cannot be trusted; a fresh copy always converges. Only
    // when the new primary answers (else the copy would fail too), and the old directory is
    // kept aside rather than deleted: it may hold writes nobody has reconciled yet.
    await psql(bin, primary, 'SELECT 1').catch(() => {
      throw err;
    });
    const aside = `${node.dataDir}.before-reclone-${Date.now()}`;
    renameSync(node.dataDir, aside);
    await initStandby(bin, node, primary);
    return { rewound: false, recloned: true, keptAside: aside };
  }
  // pg_rewind may copy the source's postgresql.auto.conf; re-assert who we follow.
  setPrimaryConninfo(node, primary);
  writeAsServer(join(node.dataDir, 'regionshift.node.conf'), nodeConf(node));
  await start(bin, node);
  return { rewound: !/no rewind required/i.test(out), recloned: false };
}

/** Run SQL as the superuser through psql (setup only; the provider uses a pg client). */
export async function psql(bin: string, node: PgNode, sql: string, db = 'postgres'): Promise<string> {
  return run(bin, 'psql', [
    '-X',
    '-q',
    '-A',
    '-t',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    node.host,
    '-p',
    String(node.port),
    '-U',
    PG_SUPERUSER,
    '-d',
    db,
    '-c',
    sql,
  ]);
}

/** A libpq connection string for a role on this node. */
export function dsn(node: PgNode, user: string = PG_SUPERUSER, database = 'postgres'): string {
  return `postgresql://${user}@${node.host}:${node.port}/${database}`;
}

/**
 * Start a stopped former primary read-only on its own timeline (reconciliation must read its
 * writes before anything rewinds them): default_transaction_read_only in postgresql.auto.conf,
 * where the fence (ALTER SYSTEM) puts it, so it is fenced from its first connection.
 */
export async function startReadOnly(bin: string, node: PgNode): Promise<void> {
  if (existsSync(join(node.dataDir, 'standby.signal'))) {
    throw new Error(
      `${node.dataDir} has a standby.signal: it was being made a standby, so it may no longer hold its own timeline's writes`,
    );
  }
  const auto = join(node.dataDir, 'postgresql.auto.conf');
  const kept = existsSync(auto)
    ? readFileSync(auto, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '' && !/^\s*default_transaction_read_only\s*=/.test(l))
    : ['# Do not edit this file manually!'];
  writeAsServer(auto, [...kept, "default_transaction_read_only = 'on'", ''].join('\n'));
  await start(bin, node);
}
