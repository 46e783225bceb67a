// The catalog fence for a managed PostgreSQL a worker cannot edit pg_hba.conf on (RDS instances):
// the application role made NOLOGIN and read-only by default, its sessions ended, proven by a
// refused read-write login (docs/safety.md, "The fence (aurora-global)"; the same SQL from sql.ts).
// The role's catalog rows replicate to every read replica, so the promoted replica inherits the
// fence and lift() takes it down on the new writer.
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { pause } from '../context';
import {
  MissingRoleError,
  READ_ONLY_SQL_TRANSACTION,
  TERMINATE_DEADLINE_MS,
  WRITE_PROBE,
  attemptReadWriteLogin,
  canLogin,
  close,
  connect,
  denyLogin,
  ensureProbeObjects,
  errorMessage,
  isConfigError,
  isConnectionError,
  quoteIdent,
  restoreLogin,
  roleReadOnlySetting,
  sqlState,
  terminateRoleSessions,
  type ConnTarget,
} from './sql';

export interface SqlEndpoint {
  host: string;
  port: number;
  database: string;
  appUser: string;
  adminUser: string;
  password?: string;
  /** How a message names the endpoint ("ledger's RDS instance ledger-west in us-west-2 (host:5432)"). */
  where: string;
}

export const SqlFailure = {
  Unreachable: 'DbUnreachable',
  Config: 'DbConfig',
  NotWritable: 'NotWritable',
  FenceNotVerified: 'FenceNotVerified',
} as const;

export class RoleFence {
  constructor(readonly ep: SqlEndpoint) {}

  private target(user?: string): ConnTarget {
    const asUser = user ?? this.ep.adminUser;
    return {
      host: this.ep.host,
      port: this.ep.port,
      database: this.ep.database,
      user: asUser,
      ...(this.ep.password !== undefined && asUser === this.ep.adminUser ? { password: this.ep.password } : {}),
    };
  }

  /** A session as the admin role; connection trouble is retryable, refusals are not. */
  async withAdmin<T>(fn: (admin: Client) => Promise<T>): Promise<T> {
    let admin: Client;
    try {
      admin = await connect(this.target());
    } catch (err) {
      if (isConfigError(err)) {
        throw ApplicationFailure.nonRetryable(
          `${this.ep.where}: the server refused ${this.ep.adminUser}: ${errorMessage(err)}; check adminUser, database and passwordEnv for this region`,
          SqlFailure.Config,
        );
      }
      throw ApplicationFailure.retryable(
        `${this.ep.where} is unreachable: ${errorMessage(err)}`,
        SqlFailure.Unreachable,
      );
    }
    try {
      return await fn(admin);
    } catch (err) {
      if (!(err instanceof TemporalFailure) && isConnectionError(err))
        throw ApplicationFailure.retryable(
          `${this.ep.where}: lost the connection: ${errorMessage(err)}`,
          SqlFailure.Unreachable,
        );
      throw err;
    } finally {
      await close(admin);
    }
  }

  private async ensureProbe(admin: Client): Promise<void> {
    try {
      await ensureProbeObjects(admin, this.ep.appUser);
    } catch (err) {
      if (err instanceof MissingRoleError)
        throw ApplicationFailure.nonRetryable(
          `${this.ep.where}: the application role ${err.role} (appUser) does not exist; create it or fix appUser`,
          SqlFailure.Config,
        );
      throw err;
    }
  }

  async isFenced(): Promise<boolean> {
    return this.withAdmin(async (admin) => (await roleReadOnlySetting(admin, this.ep.appUser)).roleWide === true);
  }

  async inRecovery(): Promise<boolean> {
    return this.withAdmin(
      async (admin) => (await admin.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r,
    );
  }

  /** Fences and proves it; `lsn` is pg_current_wal_lsn() after the sessions are gone. */
  async fence(): Promise<{ alreadyFenced: boolean; verified: boolean; terminated: number; how: string; lsn: string }> {
    const appUser = this.ep.appUser;
    return this.withAdmin(async (admin) => {
      await admin.query('SET SESSION default_transaction_read_only = off');
      await this.ensureProbe(admin);
      const before = await roleReadOnlySetting(admin, appUser);
      if (before.inDatabase === false) {
        throw ApplicationFailure.nonRetryable(
          `${this.ep.where}: ALTER ROLE ${appUser} IN DATABASE ${this.ep.database} SET default_transaction_read_only = off overrides the fence; reset it and run again`,
          SqlFailure.FenceNotVerified,
        );
      }
      await admin.query(`ALTER ROLE ${quoteIdent(appUser)} SET default_transaction_read_only = on`);
      const walled = await denyLogin(admin, appUser);
      const { terminated, stillAlive } = await terminateRoleSessions(admin, appUser, {
        deadlineMs: TERMINATE_DEADLINE_MS,
        pause,
      });
      if (stillAlive.length > 0) {
        throw ApplicationFailure.retryable(
          `${this.ep.where}: sessions ${stillAlive.join(', ')} of ${appUser} outlived pg_terminate_backend; the fence is set but not proven (retrying)`,
          SqlFailure.Unreachable,
        );
      }
      const proof = await this.prove(admin);
      const lsn = (await admin.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
      return {
        alreadyFenced: before.roleWide === true && !walled,
        verified: proof.verified,
        terminated,
        how: proof.how,
        lsn,
      };
    });
  }

  private async prove(admin: Client): Promise<{ verified: boolean; how: string }> {
    const appUser = this.ep.appUser;
    try {
      const outcome = await attemptReadWriteLogin(this.target(appUser));
      if (outcome === 'login-refused')
        return { verified: true, how: `a login as ${appUser} asking for read-write was refused (NOLOGIN)` };
      throw ApplicationFailure.nonRetryable(
        `${this.ep.where}: ${appUser} could still log in after NOLOGIN${outcome === 'written' ? ' and write' : ''}; do not promote another region on this fence`,
        SqlFailure.FenceNotVerified,
      );
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      if (isConnectionError(err))
        throw ApplicationFailure.retryable(
          `${this.ep.where}: lost the connection while proving the fence: ${errorMessage(err)}`,
          SqlFailure.Unreachable,
        );
      if (!isConfigError(err))
        return { verified: false, how: `the proof login as ${appUser} failed otherwise: ${errorMessage(err)}` };
    }
    // No login as the application role from here (a password): the catalog says what a login would meet.
    const verified = !(await canLogin(admin, appUser));
    return {
      verified,
      how: verified
        ? `${appUser} is NOLOGIN in pg_roles (no login as ${appUser} from this worker)`
        : `${appUser} can still log in according to pg_roles`,
    };
  }

  /** Lifts the fence (replicated here, or set here); false when there was none. Retryable while the node still recovers. */
  async lift(): Promise<boolean> {
    return this.withAdmin((admin) => liftRoleFence(admin, this.ep.appUser, this.ep.where));
  }

  /** A row written as the application role (SET ROLE from the admin session) and read back. */
  async verifyWrite(id: string, region: string): Promise<number> {
    return this.withAdmin(async (admin) => {
      try {
        await admin.query('SET SESSION default_transaction_read_only = off');
        await this.ensureProbe(admin);
      } catch (err) {
        if (sqlState(err) === READ_ONLY_SQL_TRANSACTION)
          throw ApplicationFailure.retryable(
            `${this.ep.where} is not writable yet: ${errorMessage(err)}`,
            SqlFailure.NotWritable,
          );
        throw err;
      }
      const own = await roleReadOnlySetting(admin, this.ep.appUser);
      if (own.roleWide === true || own.inDatabase === true) {
        throw ApplicationFailure.nonRetryable(
          `${this.ep.where} is not writable for ${this.ep.appUser}: the role is read-only (a fence); lift it with dbUnfenceWrites if this region should write`,
          SqlFailure.NotWritable,
        );
      }
      await admin.query(`SET ROLE ${quoteIdent(this.ep.appUser)}`);
      const t0 = performance.now();
      try {
        await admin.query(`INSERT INTO ${WRITE_PROBE} (id, region) VALUES ($1, $2)`, [id, region]);
      } catch (err) {
        if (sqlState(err) === READ_ONLY_SQL_TRANSACTION)
          throw ApplicationFailure.nonRetryable(
            `${this.ep.where} is not writable: ${errorMessage(err)}`,
            SqlFailure.NotWritable,
          );
        throw err;
      }
      const { rows } = await admin.query(`SELECT 1 FROM ${WRITE_PROBE} WHERE id = $1`, [id]);
      if (rows.length !== 1)
        throw ApplicationFailure.nonRetryable(
          `${this.ep.where}: the probe row ${id} was not read back`,
          SqlFailure.NotWritable,
        );
      return Math.round((performance.now() - t0) * 10) / 10;
    });
  }

  /** On a replica: what it has replayed, and the commit time of the last replayed transaction. */
  async replay(): Promise<{ inRecovery: boolean; lsn: string; lastCommitAt?: string; receivedFrom?: string }> {
    return this.withAdmin(async (admin) => {
      const { rows } = await admin.query<{
        r: boolean;
        lsn: string | null;
        cur: string;
        at: Date | null;
        conn: string | null;
      }>(
        `SELECT pg_is_in_recovery() AS r, pg_last_wal_replay_lsn()::text AS lsn,
                CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
                pg_last_xact_replay_timestamp() AS at,
                (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver LIMIT 1) AS conn`,
      );
      const row = rows[0]!;
      return {
        inRecovery: row.r,
        lsn: row.lsn ?? row.cur,
        ...(row.at ? { lastCommitAt: row.at.toISOString() } : {}),
        ...(row.conn ? { receivedFrom: row.conn } : {}),
      };
    });
  }

  /** On the primary: each replica's replay position and lag as pg_stat_replication reports it. */
  async replicas(): Promise<{ client: string; replayLsn: string | null; replayLagMs: number | null }[]> {
    return this.withAdmin(async (admin) => {
      const { rows } = await admin.query<{ client: string; lsn: string | null; lag: number | null }>(
        `SELECT coalesce(client_addr::text, 'local') || '/' || application_name AS client, replay_lsn::text AS lsn,
                (extract(epoch FROM replay_lag) * 1000)::float8 AS lag FROM pg_stat_replication`,
      );
      return rows.map((r) => ({ client: r.client, replayLsn: r.lsn, replayLagMs: r.lag }));
    });
  }
}

/**
 * Takes the role fence down in an admin session: LOGIN back and the role-wide read-only default
 * reset; false when there was none. A node that still recovers (just promoted) refuses the
 * writes: retryable NotWritable, `where` naming it.
 */
export async function liftRoleFence(admin: Client, appUser: string, where: string): Promise<boolean> {
  const own = await roleReadOnlySetting(admin, appUser);
  let lifted: boolean;
  try {
    lifted = await restoreLogin(admin, appUser);
    if (own.roleWide !== true && !lifted) return false;
    if (own.roleWide === true)
      await admin.query(`ALTER ROLE ${quoteIdent(appUser)} RESET default_transaction_read_only`);
  } catch (err) {
    if (sqlState(err) === READ_ONLY_SQL_TRANSACTION)
      throw ApplicationFailure.retryable(`${where} is not writable yet: ${errorMessage(err)}`, SqlFailure.NotWritable);
    throw err;
  }
  // Sessions opened while the role was read-only keep that default: end them so the application
  // reconnects writable.
  await terminateRoleSessions(admin, appUser, { deadlineMs: TERMINATE_DEADLINE_MS, pause });
  return true;
}
