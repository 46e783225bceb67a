// One service's database node as this region's worker sees it: resolved from the config,
// connected to as the admin or the application role, and read (role, timeline, LSNs, fence).
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { pause } from '../../context';
import { knownService, wrongProvider } from '../../per-service';
import type { Config, PostgresRegion } from '../../../src/lib/config/schema';
import type { PgNode } from '../../../src/lib/postgres/node';
import type { DbNodeState } from '../../../src/contract/activities';
import {
  close,
  connect,
  errorMessage,
  isConfigError,
  isConnectionError,
  quoteIdent,
  type ConnTarget,
  type ConnectOptions,
} from '../sql';
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

export const POLL_MS = 100;

/** One service's database node in one region, resolved from this worker's config. */
export interface ResolvedNode {
  service: string;
  region: string;
  cfg: PostgresRegion;
  admin: ConnTarget;
  app: ConnTarget;
  node: PgNode;
  /** "ledger's database in us-west-2 (127.0.0.1:55432)", for messages. */
  where: string;
}

export function resolveNode(config: Config, service: string, region: string): ResolvedNode {
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
// Connections

export function connectFailure(n: ResolvedNode, user: string, err: unknown): ApplicationFailure {
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

export async function withAdmin<T>(
  n: ResolvedNode,
  fn: (admin: Client) => Promise<T>,
  options?: ConnectOptions,
): Promise<T> {
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
export async function withAppSession<T>(n: ResolvedNode, fn: (app: Client, via: AppVia) => Promise<T>): Promise<T> {
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

export async function probe(client: Client, region: string): Promise<Probe> {
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
export async function describeNode(n: ResolvedNode): Promise<DbNodeState> {
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
 * The other regions' nodes of the service that are writable primaries right now. Nodes this
 * worker cannot reach are listed apart: their state is unknown, not safe.
 */
export async function otherWritablePrimaries(
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
export async function soleWriter(config: Config, n: ResolvedNode): Promise<string> {
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

export async function waitUntil<T>(deadlineMs: number, step: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const result = await step();
    if (result !== undefined) return result;
    if (Date.now() > deadline) return undefined;
    await pause(POLL_MS);
  }
}
