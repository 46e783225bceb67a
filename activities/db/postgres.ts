// The postgres-streaming provider: the db* activities for self-managed PostgreSQL with streaming
// replication. Each region's worker sits next to its own database node and acts on that node
// only (SQL through `pg` as the admin role; pg_rewind and restarts through src/lib/postgres/node.ts
// for the steps SQL cannot do). Inputs name a service; connection details and passwords come
// from this worker's config and environment (docs/safety.md, invariant 6).
//
// Every activity is idempotent (docs/safety.md, invariant 4): it first looks at what the node is, and a retry
// after a crash at any point converges and says what it found.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { heartbeat, pause } from '../context';
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { knownService, wrongProvider } from '../per-service';
import type { Client } from 'pg';
import type { Config, PostgresRegion } from '../../src/lib/config/schema';
import { withServer } from '../../src/lib/postgres/conninfo';
import { hasFenceBlock, setFenceBlock } from '../../src/lib/postgres/hba';
import { findPgBin, isInitialised, logFile, rejoinAsStandby, type PgNode } from '../../src/lib/postgres/node';
import type {
  DbNodeState,
  FenceResult,
  FollowInput,
  LagResult,
  PromoteResult,
  RegionActivities,
  RejoinInput,
  RejoinResult,
  ServiceRef,
  UnfenceResult,
  VerifyWritesResult,
  WaitForLagInput,
} from '../../src/contract/activities';
import {
  MissingRoleError,
  READ_ONLY_SQL_TRANSACTION,
  TERMINATE_DEADLINE_MS,
  WRITE_PROBE,
  attemptReadWriteLogin,
  close,
  connect,
  errorMessage,
  isConfigError,
  isConnectionError,
  isLsn,
  lsnToBigInt,
  quoteIdent,
  ensureProbeObjects as ensureSharedProbeObjects,
  sqlState,
  terminateRoleSessions,
  withClient,
  type ConnTarget,
  type ConnectOptions,
} from './sql';

export type PostgresActivities = Pick<
  RegionActivities,
  | 'dbDescribe'
  | 'dbFenceWrites'
  | 'dbUnfenceWrites'
  | 'dbWaitForLag'
  | 'dbPromote'
  | 'dbRejoinAsStandby'
  | 'dbFollowWriter'
  | 'dbVerifyWrites'
>;

/** ApplicationFailure types these activities throw, for the workflow to match on. */
export const DbFailure = {
  /** The input names a service (or a service/region pair) this worker's config does not have. */
  UnknownService: 'UnknownService',
  /** The server refused our role or database, a role is missing, or binaries/data are absent here. */
  Config: 'DbConfig',
  /** The node could not be reached (retryable). */
  Unreachable: 'DbUnreachable',
  LagTimeout: 'LagTimeout',
  /** The target is a primary whose timeline forked before the source's fenced position. */
  PromotedBehindSource: 'PromotedBehindSource',
  NotStandby: 'NotStandby',
  NotPrimary: 'NotPrimary',
  NotWritable: 'NotWritable',
  /** The fence is set but the application role could still write. */
  FenceNotVerified: 'FenceNotVerified',
  /** Undoing the fence would make a second writer. */
  OtherPrimary: 'OtherPrimary',
  /** A node did not reach the state it was driven to in time (retryable). */
  NotConverged: 'NotConverged',
} as const;

const POLL_MS = 100;
/** How long a reload may take to reach new sessions (it is asynchronous). */
const RELOAD_DEADLINE_MS = 10_000;
const PROMOTE_WAIT_S = 60;
const REJOIN_STREAMING_DEADLINE_MS = 30_000;
/** A reload takes effect in well under a second; past this the rewind path takes over. */
const FOLLOW_BY_RELOAD_DEADLINE_MS = 5_000;

/** One service's database node in one region, resolved from this worker's config. */
interface ResolvedNode {
  service: string;
  region: string;
  cfg: PostgresRegion;
  admin: ConnTarget;
  app: ConnTarget;
  node: PgNode;
  /** "ledger's database in us-west-2 (127.0.0.1:55432)", for messages. */
  where: string;
}

function resolveNode(config: Config, service: string, region: string): ResolvedNode {
  const svc = knownService(config, service, `the ${region} worker`, DbFailure.UnknownService);
  if (svc.database.provider !== 'postgres-streaming')
    throw wrongProvider(
      service,
      `uses database provider ${svc.database.provider}, not postgres-streaming`,
      DbFailure.Config,
    );
  const cfg = svc.database.regions[region];
  if (!cfg) {
    const known = Object.keys(svc.database.regions).join(', ');
    throw ApplicationFailure.nonRetryable(
      `service "${service}" has no database in region ${region} (it has: ${known}); this activity was routed to the wrong region's worker, or the config lacks services[${service}].database.regions.${region}`,
      DbFailure.UnknownService,
    );
  }
  const password = cfg.passwordEnv ? process.env[cfg.passwordEnv] : undefined;
  const admin: ConnTarget = {
    host: cfg.host,
    port: cfg.port,
    database: cfg.database,
    user: cfg.adminUser,
    ...(password !== undefined ? { password } : {}),
  };
  // No explicit password for the application role: pg falls back to PGPASSWORD or ~/.pgpass, and
  // withAppSession falls back to SET ROLE from the admin session when that login is refused.
  const app: ConnTarget = { host: cfg.host, port: cfg.port, database: cfg.database, user: cfg.appUser };
  return {
    service,
    region,
    cfg,
    admin,
    app,
    node: { region, dataDir: cfg.dataDir, port: cfg.port, host: cfg.host },
    where: `${service}'s database in ${region} (${cfg.host}:${cfg.port})`,
  };
}

// ---------------------------------------------------------------------------------------------
// Activity context: heartbeats and cancellable sleeps that also work when called directly (tests).

// ---------------------------------------------------------------------------------------------
// Connections

function connectFailure(n: ResolvedNode, user: string, err: unknown): ApplicationFailure {
  const detail = errorMessage(err);
  if (isConfigError(err)) {
    const hint =
      n.cfg.passwordEnv && user === n.cfg.adminUser
        ? `check adminUser/database in the config and that ${n.cfg.passwordEnv} is set in the ${n.region} worker's environment`
        : `check the role and database in the config (and passwordEnv, if the server asks for a password)`;
    return ApplicationFailure.nonRetryable(
      `${n.where}: the server refused ${user}: ${detail}; ${hint}`,
      DbFailure.Config,
    );
  }
  return ApplicationFailure.retryable(`${n.where} is unreachable as ${user}: ${detail}`, DbFailure.Unreachable);
}

async function openAdmin(n: ResolvedNode, options?: ConnectOptions): Promise<Client> {
  try {
    return await connect(n.admin, options);
  } catch (err) {
    throw connectFailure(n, n.admin.user, err);
  }
}

async function withAdmin<T>(n: ResolvedNode, fn: (admin: Client) => Promise<T>, options?: ConnectOptions): Promise<T> {
  const admin = await openAdmin(n, options);
  try {
    return await fn(admin);
  } catch (err) {
    // TemporalFailure: our own failures and a cancellation pass through as they are.
    if (!(err instanceof TemporalFailure) && isConnectionError(err)) {
      throw ApplicationFailure.retryable(
        `${n.where}: lost the connection: ${errorMessage(err)}`,
        DbFailure.Unreachable,
      );
    }
    throw err;
  } finally {
    await close(admin);
  }
}

type AppVia = 'login' | 'set-role';

/**
 * A session as the application role. Logging in as it is the real test (role and database
 * settings apply exactly as they do for the application); when that login is refused (we hold
 * no application password) the admin session takes the role with SET ROLE instead.
 */
async function withAppSession<T>(n: ResolvedNode, fn: (app: Client, via: AppVia) => Promise<T>): Promise<T> {
  let client: Client;
  let via: AppVia;
  try {
    client = await connect(n.app);
    via = 'login';
  } catch (err) {
    if (!isConfigError(err)) throw connectFailure(n, n.app.user, err);
    client = await openAdmin(n);
    via = 'set-role';
    try {
      await client.query(`SET ROLE ${quoteIdent(n.cfg.appUser)}`);
    } catch (setRoleErr) {
      await close(client);
      throw ApplicationFailure.nonRetryable(
        `${n.where}: cannot act as the application role ${n.cfg.appUser}: its login was refused (${errorMessage(err)}) and SET ROLE from ${n.cfg.adminUser} failed (${errorMessage(setRoleErr)}); give the worker the application password (PGPASSWORD or ~/.pgpass) or grant ${n.cfg.appUser} to ${n.cfg.adminUser}`,
        DbFailure.Config,
      );
    }
  }
  try {
    return await fn(client, via);
  } finally {
    await close(client);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading a node's state

interface Probe {
  inRecovery: boolean;
  /** default_transaction_read_only as loaded by the server (this session's view of the config). */
  readOnly: boolean;
  /** Where that value came from: postgresql.auto.conf is where ALTER SYSTEM (our fence) writes. */
  readOnlyFromAutoConf: boolean;
  readOnlySource: string;
  state: DbNodeState;
}

async function probe(client: Client, region: string): Promise<Probe> {
  const head = (
    await client.query<{ in_recovery: boolean; setting: string; source: string; sourcefile: string | null }>(
      `SELECT pg_is_in_recovery() AS in_recovery, setting, source, sourcefile
         FROM pg_settings WHERE name = 'default_transaction_read_only'`,
    )
  ).rows[0]!;
  const readOnly = head.setting === 'on';
  // sourcefile is only visible to superusers and pg_read_all_settings; the source alone is the
  // next best evidence that the value came from a file rather than a role or database setting.
  const readOnlyFromAutoConf =
    readOnly &&
    (head.sourcefile ? head.sourcefile.endsWith('postgresql.auto.conf') : head.source === 'configuration file');
  const base = {
    inRecovery: head.in_recovery,
    readOnly,
    readOnlyFromAutoConf,
    readOnlySource: head.sourcefile ?? head.source,
  };

  if (!head.in_recovery) {
    const row = (
      await client.query<{ lsn: string; walfile: string }>(
        `SELECT l::text AS lsn, pg_walfile_name(l) AS walfile FROM pg_current_wal_lsn() AS l`,
      )
    ).rows[0]!;
    // The timeline is read from the WAL file name: pg_control_checkpoint() still shows the old
    // timeline until the first checkpoint after a promotion.
    return {
      ...base,
      state: {
        region,
        reachable: true,
        role: 'primary',
        fenced: readOnlyFromAutoConf,
        timeline: parseInt(row.walfile.slice(0, 8), 16),
        lsn: row.lsn,
      },
    };
  }

  const row = (
    await client.query<{
      replayed: string | null;
      received: string | null;
      replayed_at: Date | null;
      checkpoint_tli: number | null;
      status: string | null;
      sender_host: string | null;
      sender_port: number | null;
      received_tli: number | null;
      last_msg_receipt_time: Date | null;
    }>(
      `SELECT pg_last_wal_replay_lsn()::text AS replayed,
              pg_last_wal_receive_lsn()::text AS received,
              pg_last_xact_replay_timestamp() AS replayed_at,
              (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
              r.status, r.sender_host, r.sender_port, r.received_tli, r.last_msg_receipt_time
         FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true`,
    )
  ).rows[0]!;
  const streaming = row.status === 'streaming' && row.sender_host !== null && row.sender_port !== null;
  const state: DbNodeState = { region, reachable: true, role: 'standby', fenced: false };
  const timeline = streaming && row.received_tli ? row.received_tli : row.checkpoint_tli;
  if (timeline) state.timeline = timeline;
  if (row.replayed) state.lsn = row.replayed;
  if (row.received) state.receivedLsn = row.received;
  if (streaming) state.streamingFrom = `${row.sender_host}:${row.sender_port}`;
  if (row.replayed_at) state.lastReplayedCommitAt = row.replayed_at.toISOString();
  if (row.last_msg_receipt_time) state.lastHeardFromPrimaryAt = row.last_msg_receipt_time.toISOString();
  return { ...base, state };
}

function unreachable(n: ResolvedNode, err: unknown): DbNodeState {
  return { region: n.region, reachable: false, error: `${n.cfg.host}:${n.cfg.port}: ${errorMessage(err)}` };
}

/** dbDescribe's logic: an unreachable node is a result, a misconfigured one an error. */
async function describeNode(n: ResolvedNode): Promise<DbNodeState> {
  let client: Client;
  try {
    client = await connect(n.admin);
  } catch (err) {
    if (isConfigError(err)) throw connectFailure(n, n.admin.user, err);
    return unreachable(n, err);
  }
  try {
    return (await probe(client, n.region)).state;
  } catch (err) {
    // A server shutting down or crashing under us is unreachable too.
    if (isConnectionError(err)) return unreachable(n, err);
    throw err;
  } finally {
    await close(client);
  }
}

/**
 * What postgresql.auto.conf says about default_transaction_read_only right now, loaded or not:
 * a fence written by ALTER SYSTEM whose reload never happened (a crash in between) still takes
 * effect at the next reload or restart. Undefined when unset, or when we may not read it.
 */
async function autoConfReadOnly(client: Client): Promise<string | undefined> {
  try {
    const { rows } = await client.query<{ setting: string }>(
      `SELECT setting FROM pg_file_settings
        WHERE name = 'default_transaction_read_only' AND sourcefile LIKE '%postgresql.auto.conf'
        ORDER BY seqno DESC LIMIT 1`,
    );
    return rows[0]?.setting;
  } catch (err) {
    if (sqlState(err) === '42501') return undefined; // pg_file_settings is for superusers by default
    throw err;
  }
}

/** pg_reload_conf() only signals; wait until a session started now sees the new value. */
async function waitForNewSessions(n: ResolvedNode, expected: 'on' | 'off'): Promise<void> {
  const deadline = Date.now() + RELOAD_DEADLINE_MS;
  let seen = '?';
  for (;;) {
    seen = await withClient(
      n.admin,
      async (c) =>
        (await c.query<{ default_transaction_read_only: string }>('SHOW default_transaction_read_only')).rows[0]!
          .default_transaction_read_only,
    ).catch((err: unknown) => {
      throw connectFailure(n, n.admin.user, err);
    });
    if (seen === expected) return;
    if (Date.now() > deadline) {
      throw ApplicationFailure.retryable(
        `${n.where}: ${RELOAD_DEADLINE_MS / 1000} s after pg_reload_conf() new sessions still see default_transaction_read_only=${seen}, expected ${expected}; a setting in postgresql.conf or ALTER DATABASE/ROLE ... SET may override ALTER SYSTEM (see pg_settings.source and pg_db_role_setting)`,
        DbFailure.NotConverged,
      );
    }
    await pause(50);
  }
}

async function setSystemReadOnly(admin: Client, n: ResolvedNode, on: boolean): Promise<void> {
  // Separate statements: ALTER SYSTEM refuses to run inside a multi-statement (implicit) transaction.
  await admin.query(
    on ? 'ALTER SYSTEM SET default_transaction_read_only = on' : 'ALTER SYSTEM RESET default_transaction_read_only',
  );
  await admin.query('SELECT pg_reload_conf()');
  await waitForNewSessions(n, on ? 'on' : 'off');
}

/** The schema, fence probe sequence and write probe table, usable by the application role (sql.ts). */
async function ensureProbeObjects(admin: Client, n: ResolvedNode): Promise<void> {
  try {
    await ensureSharedProbeObjects(admin, n.cfg.appUser);
  } catch (err) {
    if (err instanceof MissingRoleError) {
      throw ApplicationFailure.nonRetryable(
        `${n.where}: the application role ${n.cfg.appUser} (appUser) does not exist; create it or fix appUser in the config`,
        DbFailure.Config,
      );
    }
    throw err;
  }
}

/**
 * Ends every session of the application role, and waits until they are gone: a transaction
 * opened before the fence would otherwise still be able to commit (the setting only applies to
 * new transactions), as would a session that turned the setting off for itself.
 */
async function terminateAppSessions(admin: Client, n: ResolvedNode): Promise<number> {
  const { terminated, stillAlive } = await terminateRoleSessions(admin, n.cfg.appUser, {
    deadlineMs: TERMINATE_DEADLINE_MS,
    pause,
  });
  if (stillAlive.length > 0) {
    throw ApplicationFailure.retryable(
      `${n.where}: application sessions ${stillAlive.join(', ')} of ${n.cfg.appUser} were still alive ${TERMINATE_DEADLINE_MS / 1000} s after pg_terminate_backend; the fence is set but not proven (retrying will try again)`,
      DbFailure.NotConverged,
    );
  }
  return terminated;
}

// ---------------------------------------------------------------------------------------------
// The wall: pg_hba.conf rejects the application role (src/lib/postgres/hba.ts says why a read-only
// default is not enough). The worker edits the file of the node it sits next to.

async function hbaFileOf(admin: Client, n: ResolvedNode): Promise<string> {
  try {
    return (await admin.query<{ hba_file: string }>('SHOW hba_file')).rows[0]!.hba_file;
  } catch (err) {
    if (sqlState(err) === '42501') {
      throw ApplicationFailure.nonRetryable(
        `${n.where}: ${n.cfg.adminUser} may not read hba_file; the fence needs a superuser (or pg_read_all_settings) as adminUser`,
        DbFailure.Config,
      );
    }
    throw err;
  }
}

/** Adds or removes the wall and reloads; true when the file changed. */
async function setWall(admin: Client, n: ResolvedNode, up: boolean): Promise<{ file: string; changed: boolean }> {
  const file = await hbaFileOf(admin, n);
  let changed: boolean;
  try {
    changed = setFenceBlock(
      file,
      up ? { role: n.cfg.appUser, note: `service ${n.service}, ${n.region}, ${new Date().toISOString()}` } : undefined,
    );
  } catch (err) {
    throw ApplicationFailure.nonRetryable(
      `${n.where}: cannot ${up ? 'write the fence into' : 'remove the fence from'} ${file}: ${errorMessage(err)}; the ${n.region} worker must run on the database host as root or as the server's OS user`,
      DbFailure.Config,
    );
  }
  if (changed) await admin.query('SELECT pg_reload_conf()');
  if (changed && up) {
    // A file the server cannot parse is not loaded at all: say which line, rather than "not verified".
    const bad = (
      await admin.query<{ line_number: number; error: string }>(
        'SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL',
      )
    ).rows;
    if (bad.length > 0) {
      const lines = bad.map((b) => `line ${b.line_number}: ${b.error}`).join('; ');
      throw ApplicationFailure.nonRetryable(
        `${n.where}: ${file} does not parse (${lines}), so PostgreSQL kept its previous rules; fix the file and fence again`,
        DbFailure.Config,
      );
    }
  }
  return { file, changed };
}

/**
 * The proof of one writer: a login as the application role that asks for read-write must be
 * refused by the wall. Waits out the reload (asynchronous); a login that writes is an error.
 */
async function proveWall(n: ResolvedNode, file: string): Promise<void> {
  const deadline = Date.now() + RELOAD_DEADLINE_MS;
  for (;;) {
    let outcome: string;
    try {
      outcome = await attemptReadWriteLogin(n.app);
    } catch (err) {
      if (isConnectionError(err))
        throw ApplicationFailure.retryable(
          `${n.where}: lost the connection while proving the fence: ${errorMessage(err)}`,
          DbFailure.Unreachable,
        );
      // Admitted as far as authentication (a password asked for or refused): the wall is not in effect.
      outcome = `admitted to authentication (${errorMessage(err)})`;
    }
    if (outcome === 'login-refused') return;
    if (Date.now() > deadline) {
      const what =
        outcome === 'written'
          ? `a login as ${n.cfg.appUser} asking for read-write could still write`
          : `a login as ${n.cfg.appUser} was ${outcome === 'read-only' ? 'admitted (its writes were refused as read-only, but only by a default a client can change)' : outcome}`;
      throw fenceNotVerified(
        n,
        `${what} ${RELOAD_DEADLINE_MS / 1000} s after the reject lines went into ${file}; is hba_file the file this server loads, and does an earlier include override it?`,
      );
    }
    await pause(POLL_MS);
  }
}

function fenceNotVerified(n: ResolvedNode, why: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `${n.where}: the fence is set but not effective: ${why}. Do not promote another region on this fence; fix it and fence again, or stop the server`,
    DbFailure.FenceNotVerified,
  );
}

/**
 * The other regions' nodes of the service that are writable primaries right now. Nodes this
 * worker cannot reach are listed apart: their state is unknown, not safe.
 */
async function otherWritablePrimaries(
  config: Config,
  n: ResolvedNode,
): Promise<{ writable: DbNodeState[]; unknown: string[] }> {
  const svc = config.services.find((s) => s.name === n.service)!;
  const others = Object.keys(svc.database.regions).filter((r) => r !== n.region);
  const states = await Promise.all(
    others.map((r) =>
      describeNode(resolveNode(config, n.service, r)).catch((err: unknown): DbNodeState => ({
        region: r,
        reachable: false,
        error: errorMessage(err),
      })),
    ),
  );
  return {
    writable: states.filter((s) => s.reachable && s.role === 'primary' && !s.fenced),
    unknown: states.filter((s) => !s.reachable).map((s) => `${s.region} (${s.error ?? 'unreachable'})`),
  };
}

/** The one writable primary among the service's other regions; retryable until there is exactly one. */
async function soleWriter(config: Config, n: ResolvedNode): Promise<string> {
  const others = await otherWritablePrimaries(config, n);
  if (others.writable.length === 1) return others.writable[0]!.region;
  const seen =
    others.writable.length === 0
      ? 'no writable primary'
      : `${others.writable.length} writable primaries (${others.writable.map((s) => s.region).join(', ')})`;
  const unknown = others.unknown.length > 0 ? `; unreachable: ${others.unknown.join(', ')}` : '';
  throw ApplicationFailure.retryable(
    `${n.where} has nothing to follow yet: the other regions show ${seen}${unknown}`,
    DbFailure.NotPrimary,
  );
}

/**
 * Whether the standby can follow the leader's timeline as it is: it must not have received WAL
 * of its own timeline past the point where the leader's timeline forked from it (the history
 * file says where). Unknown (no history readable) counts as no: the rewind path is always safe.
 */
async function canFollowByReload(
  n: ResolvedNode,
  p: ResolvedNode,
  me: DbNodeState,
  leader: DbNodeState,
): Promise<boolean> {
  const mine = me.timeline ?? 0;
  const theirs = leader.timeline ?? 0;
  if (mine === 0 || theirs === 0 || mine > theirs) return false;
  if (mine === theirs) return true;
  const history = await withAdmin(
    p,
    async (admin) =>
      (await admin.query<{ text: string }>('SELECT pg_read_file($1) AS text', [primaryHistoryFile(theirs)])).rows[0]!
        .text,
  ).catch(() => undefined);
  const forkLine = history
    ?.split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => Number(f[0]) === mine);
  const forkAt = forkLine?.[1];
  const received = me.receivedLsn ?? me.lsn;
  if (!forkAt || !isLsn(forkAt) || !received || !isLsn(received)) return false;
  return lsnToBigInt(received) <= lsnToBigInt(forkAt);
}

/** Points a running standby at p by ALTER SYSTEM and a reload, and waits until it streams from p. */
async function followByReload(n: ResolvedNode, p: ResolvedNode, leader: DbNodeState): Promise<boolean> {
  const wanted = `${p.cfg.host}:${p.cfg.port}`;
  const started = await withAdmin(n, async (admin) => {
    const current = await admin.query<{ primary_conninfo: string }>('SHOW primary_conninfo').then(
      (r) => r.rows[0]!.primary_conninfo,
      () => '',
    );
    // Only the server changes; the user, password file and TLS settings an operator chose stay.
    const next = current.trim() ? withServer(current, p.cfg.host, p.cfg.port) : undefined;
    if (!next) return false;
    await admin.query(`ALTER SYSTEM SET primary_conninfo = ${admin.escapeLiteral(next)}`);
    await admin.query('SELECT pg_reload_conf()');
    return true;
  });
  if (!started) return false;
  const following = await waitUntil(FOLLOW_BY_RELOAD_DEADLINE_MS, async () => {
    const s = await describeNode(n);
    heartbeat({ following: p.region, state: s.streamingFrom ?? s.error ?? s.role });
    return s.reachable &&
      s.role === 'standby' &&
      s.streamingFrom === wanted &&
      (s.timeline ?? 0) >= (leader.timeline ?? 0)
      ? true
      : undefined;
  });
  return following === true;
}

function primaryHistoryFile(timeline: number): string {
  return `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

async function waitUntil<T>(deadlineMs: number, step: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const result = await step();
    if (result !== undefined) return result;
    if (Date.now() > deadline) return undefined;
    await pause(POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------

export function createPostgresActivities(config: Config, region: string): PostgresActivities {
  const nodeOf = (service: string): ResolvedNode => resolveNode(config, service, region);

  async function dbDescribe({ service }: ServiceRef): Promise<DbNodeState> {
    return describeNode(nodeOf(service));
  }

  /**
   * Makes the node refuse writes and proves it (docs/safety.md, "The fence"). The wall is
   * pg_hba.conf rejecting every login of the application role, so no client of it can ask for
   * read-write however it tries; then every application session is ended, and a login asking
   * for read-write is refused. ALTER SYSTEM default_transaction_read_only = on stays as well:
   * it keeps other roles' well-behaved sessions read-only, and it is what dbDescribe reports.
   */
  async function dbFenceWrites({ service }: ServiceRef): Promise<FenceResult> {
    const n = nodeOf(service);
    return withAdmin(n, async (admin) => {
      const before = await probe(admin, n.region);
      if (before.inRecovery) {
        // A standby refuses writes by construction: the fence holds trivially.
        return {
          region: n.region,
          alreadyFenced: true,
          verified: true,
          lsn: before.state.lsn ?? '0/0',
          terminatedSessions: 0,
        };
      }
      // This session must still write (the probe objects) whatever the fence already says.
      await admin.query('SET SESSION default_transaction_read_only = off');
      await ensureProbeObjects(admin, n);
      // Re-asserted on a retry too: cheap, and it covers a crash between ALTER SYSTEM and reload.
      await setSystemReadOnly(admin, n, true);
      const wall = await setWall(admin, n, true);
      // The wall first, proven, then the terminations: an ended client cannot come back.
      await proveWall(n, wall.file);
      const terminatedSessions = await terminateAppSessions(admin, n);
      // Read after the fence and the terminations: every commit acknowledged before is at or below.
      // (pg_current_wal_lsn is the write position; a synchronous commit is flushed, hence written.)
      const lsn = (await admin.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
      return {
        region: n.region,
        alreadyFenced: before.state.fenced === true && !wall.changed,
        verified: true,
        lsn,
        terminatedSessions,
        detail: `${wall.file} rejects ${n.cfg.appUser}; a login asking for read-write was refused`,
      };
    });
  }

  /**
   * Compensation for dbFenceWrites: takes out exactly the lines the fence put in pg_hba.conf and
   * resets the read-only default. Unreachable is an error (retryable), so compensation retries.
   */
  async function dbUnfenceWrites({ service }: ServiceRef): Promise<UnfenceResult> {
    const n = nodeOf(service);
    return withAdmin(n, async (admin) => {
      const now = await probe(admin, n.region);
      if (now.inRecovery) {
        // A wall left on a standby only keeps the application's reads away: take it down.
        const wall = await setWall(admin, n, false);
        return {
          region: n.region,
          unfenced: false,
          detail: `${n.region} is a standby (read-only because it is in recovery); there is no fence to undo${wall.changed ? `; removed a stale wall from ${wall.file}` : ''}`,
        };
      }
      const pending = await autoConfReadOnly(admin);
      const walled = hasFenceBlock(readFileSync(await hbaFileOf(admin, n), 'utf8'));
      if (!now.state.fenced && pending === undefined && !walled) {
        const detail = now.readOnly
          ? `${n.region} is read-only by a setting regionshift did not make (${now.readOnlySource}); left as it is`
          : `${n.region} is a writable primary; it was not fenced, nothing to undo`;
        return { region: n.region, unfenced: false, detail };
      }
      // Undoing the fence after another region was promoted would make two writers.
      const others = await otherWritablePrimaries(config, n);
      if (others.writable.length > 0) {
        const names = others.writable.map((s) => `${s.region} (timeline ${s.timeline})`).join(', ');
        throw ApplicationFailure.nonRetryable(
          `refusing to unfence ${n.where}: ${names} is already a writable primary, and two writers would diverge; rejoin ${n.region} as its standby (dbRejoinAsStandby) instead, or fence ${names} first`,
          DbFailure.OtherPrimary,
        );
      }
      const wall = await setWall(admin, n, false);
      await setSystemReadOnly(admin, n, false);
      const unknown =
        others.unknown.length > 0 ? `; could not check the other regions: ${others.unknown.join(', ')}` : '';
      return {
        region: n.region,
        unfenced: true,
        detail: `removed the fence from ${wall.file} and reset default_transaction_read_only on ${n.region}: ${n.cfg.appUser} can log in and write${unknown}`,
      };
    });
  }

  async function dbWaitForLag({ service, sourceLsn, timeoutMs }: WaitForLagInput): Promise<LagResult> {
    const n = nodeOf(service);
    if (!isLsn(sourceLsn)) {
      throw ApplicationFailure.nonRetryable(
        `dbWaitForLag for ${n.where}: sourceLsn "${sourceLsn}" is not an LSN like 0/3000060; pass the lsn of dbFenceWrites' result`,
        DbFailure.Config,
      );
    }
    const started = Date.now();
    return withAdmin(n, async (admin) => {
      let initialLagBytes: number | undefined;
      for (;;) {
        const { rows } = await admin.query<{
          in_recovery: boolean;
          replayed: string | null;
          received: string | null;
          missing: number | null;
        }>(
          `SELECT pg_is_in_recovery() AS in_recovery,
                  pg_last_wal_replay_lsn()::text AS replayed,
                  pg_last_wal_receive_lsn()::text AS received,
                  pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::float8 AS missing`,
          [sourceLsn],
        );
        const row = rows[0]!;
        if (!row.in_recovery) return caughtUpAsPrimary(admin, n, sourceLsn, started);
        // Null until the standby has replayed anything at all: still waiting.
        const missing = row.missing ?? Number.POSITIVE_INFINITY;
        initialLagBytes ??= Math.max(0, Number.isFinite(missing) ? missing : 0);
        if (missing <= 0) {
          return { region: n.region, replayedLsn: row.replayed!, initialLagBytes, waitedMs: Date.now() - started };
        }
        heartbeat({ replayedLsn: row.replayed, receivedLsn: row.received, missingBytes: missing });
        if (Date.now() - started >= timeoutMs) {
          const short = Number.isFinite(missing)
            ? `${missing} bytes`
            : 'an unknown number of bytes (nothing replayed yet)';
          throw ApplicationFailure.nonRetryable(
            `${n.where} did not catch up in ${timeoutMs} ms: replayed up to ${row.replayed ?? 'nothing'} (received ${row.received ?? 'nothing'}), still ${short} short of the source's ${sourceLsn}; check its WAL receiver with dbDescribe (streamingFrom, lastHeardFromPrimaryAt) before promoting`,
            DbFailure.LagTimeout,
          );
        }
        await pause(POLL_MS);
      }
    });
  }

  /**
   * A retry after the target was promoted finds a primary. It is done when its timeline forked
   * from the source's at or after sourceLsn (the history file says where); forked earlier means
   * it was promoted before replaying everything, which must not pass for caught up.
   */
  async function caughtUpAsPrimary(
    admin: Client,
    n: ResolvedNode,
    sourceLsn: string,
    started: number,
  ): Promise<LagResult> {
    const { state } = await probe(admin, n.region);
    const timeline = state.timeline ?? 1;
    if (timeline <= 1) {
      throw ApplicationFailure.nonRetryable(
        `${n.where} is a primary that was never promoted (timeline 1), so it is not a standby that could replay the source's WAL; dbWaitForLag runs on the target standby`,
        DbFailure.NotStandby,
      );
    }
    let history: string | undefined;
    try {
      history = (await admin.query<{ text: string }>('SELECT pg_read_file($1) AS text', [primaryHistoryFile(timeline)]))
        .rows[0]!.text;
    } catch (err) {
      // Without the right to read it (pg_read_server_files) or without the file, the promotion
      // is taken on trust: dbPromote is the step that records the replication state before it.
      if (isConnectionError(err)) throw err;
    }
    const forkLine = history
      ?.split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .pop();
    const forkedAt = forkLine?.split(/\s+/)[1];
    if (forkedAt && isLsn(forkedAt) && lsnToBigInt(forkedAt) < lsnToBigInt(sourceLsn)) {
      throw ApplicationFailure.nonRetryable(
        `${n.where} is already a primary, and its timeline ${timeline} forked at ${forkedAt}, before the source's ${sourceLsn}: it was promoted without the last ${Number(lsnToBigInt(sourceLsn) - lsnToBigInt(forkedAt))} bytes of WAL (or it is not the target of this run)`,
        DbFailure.PromotedBehindSource,
      );
    }
    return { region: n.region, replayedLsn: state.lsn!, initialLagBytes: 0, waitedMs: Date.now() - started };
  }

  async function dbPromote({ service }: ServiceRef): Promise<PromoteResult> {
    const n = nodeOf(service);
    const before = await describeNode(n);
    if (!before.reachable) {
      throw ApplicationFailure.retryable(
        `cannot promote ${n.where}: unreachable: ${before.error}`,
        DbFailure.Unreachable,
      );
    }
    if (before.role === 'primary') {
      // Deliberately leaves a fence in place: a fenced primary here is more likely the old
      // source named by mistake than our own promotion, and unfencing it would make two writers.
      // dbVerifyWrites will say NotWritable, and the workflow decides.
      return {
        region: n.region,
        promoted: false,
        alreadyPrimary: true,
        timeline: before.timeline!,
        lsn: before.lsn!,
        before,
      };
    }
    return withAdmin(
      n,
      async (admin) => {
        // A fence carried in the standby's own postgresql.auto.conf would make the new primary
        // read-only. Reset while still a standby, so the node is never a fenced primary of ours.
        const now = await probe(admin, n.region);
        if (now.readOnlyFromAutoConf || (await autoConfReadOnly(admin)) !== undefined) {
          await setSystemReadOnly(admin, n, false);
        }
        // Likewise a wall this node kept from a time it was a fenced primary (pg_rewind found
        // nothing to rewind, so its own pg_hba.conf stayed): it would lock the application out.
        await setWall(admin, n, false);
        try {
          await admin.query('SELECT pg_promote(true, $1)', [PROMOTE_WAIT_S]);
        } catch (err) {
          // 55000 "recovery is not in progress": promoted between our look and our call.
          if (sqlState(err) !== '55000') throw err;
        }
        const promoted = await waitUntil(PROMOTE_WAIT_S * 1000, async () => {
          heartbeat({ promoting: n.region });
          const { rows } = await admin.query<{ in_recovery: boolean }>('SELECT pg_is_in_recovery() AS in_recovery');
          return rows[0]!.in_recovery ? undefined : true;
        });
        if (!promoted) {
          throw ApplicationFailure.retryable(
            `${n.where} was asked to promote but is still in recovery after ${PROMOTE_WAIT_S} s; see its server log (${logFile(n.node)} on the local stack)`,
            DbFailure.NotConverged,
          );
        }
        // pg_promote does not wait for the end-of-recovery checkpoint, and until one completes the
        // control file still names the old timeline: pg_rewind reading it then finds "no rewind
        // required" and the old primary can never follow. Force it now.
        await admin.query('CHECKPOINT');
        const after = (await probe(admin, n.region)).state;
        return {
          region: n.region,
          promoted: true,
          alreadyPrimary: false,
          timeline: after.timeline!,
          lsn: after.lsn!,
          before,
        };
      },
      { statementTimeoutMs: (PROMOTE_WAIT_S + 30) * 1000 },
    );
  }

  /**
   * Turns this region's node (normally the old primary) into a standby of primaryRegion's node:
   * stop, pg_rewind onto the new timeline, start following. Writes this node made after the
   * timelines diverged are discarded; reconciliation must read them first.
   */
  async function dbRejoinAsStandby({ service, primaryRegion }: RejoinInput): Promise<RejoinResult> {
    const n = nodeOf(service);
    if (primaryRegion === n.region) {
      throw ApplicationFailure.nonRetryable(
        `dbRejoinAsStandby: ${n.where} cannot follow itself; primaryRegion must be another region`,
        DbFailure.Config,
      );
    }
    const p = resolveNode(config, service, primaryRegion);
    const wanted = `${p.cfg.host}:${p.cfg.port}`;
    const isFollowing = (s: DbNodeState): boolean => s.reachable && s.role === 'standby' && s.streamingFrom === wanted;

    // As a standby it serves the application's reads: the fence's wall comes down (pg_rewind
    // usually brings the new primary's pg_hba.conf, but not when it finds nothing to rewind).
    const lowerWall = (): Promise<unknown> => withAdmin(n, (admin) => setWall(admin, n, false));
    const current = await describeNode(n);
    if (isFollowing(current)) {
      await lowerWall();
      return { region: n.region, rejoined: false, rewound: false, how: 'already', streamingFrom: wanted };
    }

    // Stopping this node while the other is not yet a primary would leave the service without one.
    const leader = await describeNode(p);
    if (!leader.reachable) {
      throw ApplicationFailure.retryable(
        `cannot rejoin ${n.region} as a standby of ${p.where}: it is unreachable: ${leader.error}`,
        DbFailure.Unreachable,
      );
    }
    if (leader.role !== 'primary') {
      throw ApplicationFailure.nonRetryable(
        `cannot rejoin ${n.region} as a standby of ${p.where}: that node is a ${leader.role}, not a primary; promote it first (dbPromote)`,
        DbFailure.NotPrimary,
      );
    }
    // A standby that has not received WAL past the new timeline's fork follows with a reload:
    // no restart, its reads go on. Past the fork it needs pg_rewind like an old primary.
    if (current.reachable && current.role === 'standby' && (await canFollowByReload(n, p, current, leader))) {
      if (await followByReload(n, p, leader)) {
        await lowerWall();
        return { region: n.region, rejoined: true, rewound: false, how: 'reload', streamingFrom: wanted };
      }
    }
    let bin: string | undefined;
    try {
      bin = n.cfg.pgBin ?? findPgBin();
    } catch (err) {
      throw ApplicationFailure.nonRetryable(`${n.where}: ${errorMessage(err)}`, DbFailure.Config);
    }
    if (!bin) {
      throw ApplicationFailure.nonRetryable(
        `${n.where}: PostgreSQL's server binaries (pg_ctl, pg_rewind) are not on the ${n.region} worker's host; install them or set pgBin for this region in the config`,
        DbFailure.Config,
      );
    }
    if (!isInitialised(n.node)) {
      throw ApplicationFailure.nonRetryable(
        `${n.where}: no data directory at ${n.cfg.dataDir} on this host; dbRejoinAsStandby must run on the worker next to ${n.region}'s database (check dataDir in the config)`,
        DbFailure.Config,
      );
    }

    // pg_rewind learns the source's timeline from its control file, which only changes at a
    // checkpoint after promotion; a promotion made without dbPromote may not have had one yet.
    await withAdmin(p, (admin) => admin.query('CHECKPOINT'), { statementTimeoutMs: 300_000 });

    // pg_rewind and the restarts can take a while: keep heartbeating so the activity is not presumed dead.
    const beat = setInterval(() => heartbeat({ rejoining: n.region, following: primaryRegion }), 1_000);
    // `rewound` is node.ts's reading of pg_rewind's output (see the report on "no rewind required").
    let rewound: boolean;
    try {
      ({ rewound } = await rejoinAsStandby(bin, n.node, p.node));
    } catch (err) {
      throw ApplicationFailure.retryable(
        `rejoining ${n.where} as a standby of ${primaryRegion} failed: ${errorMessage(err)}; server log: ${logFile(n.node)}`,
        DbFailure.NotConverged,
      );
    } finally {
      clearInterval(beat);
    }

    let last: DbNodeState = current;
    const following = await waitUntil(REJOIN_STREAMING_DEADLINE_MS, async () => {
      last = await describeNode(n);
      heartbeat({ rejoining: n.region, state: last.streamingFrom ?? last.error ?? last.role });
      return isFollowing(last) ? last : undefined;
    });
    if (!following) {
      throw ApplicationFailure.retryable(
        `${n.where} was rewound and restarted as a standby of ${primaryRegion} but is not streaming from ${wanted} after ${REJOIN_STREAMING_DEADLINE_MS / 1000} s (now: ${last.reachable ? `${last.role}, streaming from ${last.streamingFrom ?? 'nowhere'}` : last.error}); see ${logFile(n.node)}`,
        DbFailure.NotConverged,
      );
    }
    await lowerWall();
    return { region: n.region, rejoined: true, rewound, how: 'rewind', streamingFrom: wanted };
  }

  /** See FollowInput. Never a primary: that would discard writes nobody has reconciled. */
  async function dbFollowWriter({ service, primaryRegion }: FollowInput): Promise<RejoinResult> {
    const n = nodeOf(service);
    const me = await describeNode(n);
    if (!me.reachable)
      throw ApplicationFailure.retryable(`${n.where} is unreachable: ${me.error}`, DbFailure.Unreachable);
    if (me.role === 'primary') {
      throw ApplicationFailure.nonRetryable(
        `${n.where} is a primary, not a standby: it does not simply follow another writer; rejoin it (dbRejoinAsStandby) once reconciliation has read its writes`,
        DbFailure.NotStandby,
      );
    }
    return dbRejoinAsStandby({ service, primaryRegion: primaryRegion ?? (await soleWriter(config, n)) });
  }

  async function dbVerifyWrites({ service }: ServiceRef): Promise<VerifyWritesResult> {
    const n = nodeOf(service);
    const notWritable = (why: string): ApplicationFailure =>
      ApplicationFailure.nonRetryable(
        `${n.where} is not writable: ${why}; dbVerifyWrites must run in the region that should now be primary (dbDescribe shows its role and fence)`,
        DbFailure.NotWritable,
      );
    await withAdmin(n, async (admin) => {
      const now = await probe(admin, n.region);
      if (now.inRecovery) throw notWritable('it is a standby (in recovery)');
      try {
        await ensureProbeObjects(admin, n);
      } catch (err) {
        if (sqlState(err) === READ_ONLY_SQL_TRANSACTION) {
          throw notWritable(
            now.state.fenced
              ? 'it is fenced (default_transaction_read_only = on by ALTER SYSTEM)'
              : `it is read-only (${now.readOnlySource})`,
          );
        }
        throw err;
      }
    });
    const id = randomUUID();
    return withAppSession(n, async (app) => {
      const t0 = performance.now();
      try {
        await app.query(`INSERT INTO ${WRITE_PROBE} (id, region) VALUES ($1, $2)`, [id, n.region]);
      } catch (err) {
        if (sqlState(err) === READ_ONLY_SQL_TRANSACTION)
          throw notWritable(`${n.cfg.appUser}'s insert was refused as read-only (${errorMessage(err)})`);
        throw err;
      }
      const { rows } = await app.query(`SELECT 1 FROM ${WRITE_PROBE} WHERE id = $1`, [id]);
      const latencyMs = Math.round((performance.now() - t0) * 10) / 10;
      return { region: n.region, ok: rows.length === 1, latencyMs };
    });
  }

  return {
    dbDescribe,
    dbFenceWrites,
    dbUnfenceWrites,
    dbWaitForLag,
    dbPromote,
    dbRejoinAsStandby,
    dbFollowWriter,
    dbVerifyWrites,
  };
}
