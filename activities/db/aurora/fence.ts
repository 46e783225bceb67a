// The database-level fence of an aurora-global service, and the write check that shows a region
// writes again.
//
// The fence is ALTER ROLE <app> SET default_transaction_read_only = on plus ending the
// application's sessions. A role setting lives in the catalog, which Aurora replicates to every
// secondary: the promoted target inherits it, so promotion lifts it on the new writer. Like the
// postgres-streaming fence, a client that sets the parameter off in its own session escapes it;
// the edge fence (an ARC routing control switched Off) is the complement.
import { ApplicationFailure } from '@temporalio/common';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Client } from 'pg';
import type { FenceResult, UnfenceResult, VerifyWritesResult } from '../../../src/contract/activities';
import { errorText } from '../../aws/errors';
import { pause } from '../../context';
import { liftRoleFence } from '../role-fence';
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
  roleReadOnlySetting,
  sqlState,
  terminateRoleSessions,
  type ReadWriteAttempt,
} from '../sql';
import { AuroraFailure, iso, type AuroraService } from './service';

export async function ensureProbe(s: AuroraService, admin: Client, region: string): Promise<void> {
  try {
    await ensureProbeObjects(admin, s.db.regions[region]!.appUser);
  } catch (err) {
    if (err instanceof MissingRoleError) {
      throw ApplicationFailure.nonRetryable(
        `${s.sqlWhere(region)}: the application role ${err.role} (appUser) does not exist; create it or fix appUser`,
        AuroraFailure.Config,
      );
    }
    throw err;
  }
}

/** Whether the application role carries the database-level fence (the role-wide read-only default). */
export async function isFenced(s: AuroraService, region: string): Promise<boolean> {
  return s.withAdmin(
    region,
    async (admin) => (await roleReadOnlySetting(admin, s.db.regions[region]!.appUser)).roleWide === true,
  );
}

/**
 * The database-level fence of `region`'s writer (docs/safety.md, "The fence (aurora-global)"):
 * the application role made NOLOGIN, a wall no session can ask its way through, and its
 * read-only default kept on as well; its sessions ended; then a login as that role asking for
 * read-write refused (or, when the worker cannot log in as it, NOLOGIN read back from the
 * catalog).
 */
export async function sqlFence(
  s: AuroraService,
  region: string,
): Promise<{ alreadyFenced: boolean; verified: boolean; terminated: number; how: string }> {
  const appUser = s.db.regions[region]!.appUser;
  const app = quoteIdent(appUser);
  return s.withAdmin(region, async (admin) => {
    await admin.query('SET SESSION default_transaction_read_only = off');
    await ensureProbe(s, admin, region);
    const before = await roleReadOnlySetting(admin, appUser);
    if (before.inDatabase === false) {
      throw ApplicationFailure.nonRetryable(
        `${s.sqlWhere(region)}: ALTER ROLE ${appUser} IN DATABASE ${s.db.regions[region]!.database} SET default_transaction_read_only = off overrides the fence for this database; reset it (ALTER ROLE ${appUser} IN DATABASE … RESET default_transaction_read_only) and run again`,
        AuroraFailure.FenceNotVerified,
      );
    }
    // Re-asserted on a retry too: it is idempotent.
    await admin.query(`ALTER ROLE ${app} SET default_transaction_read_only = on`);
    const walled = await denyLogin(admin, appUser);
    const alreadyFenced = before.roleWide === true && !walled;
    const { terminated, stillAlive } = await terminateRoleSessions(admin, appUser, {
      deadlineMs: TERMINATE_DEADLINE_MS,
      pause,
    });
    if (stillAlive.length > 0) {
      throw ApplicationFailure.retryable(
        `${s.sqlWhere(region)}: sessions ${stillAlive.join(', ')} of ${appUser} were still alive ${TERMINATE_DEADLINE_MS / 1000} s after pg_terminate_backend; the fence is set but not proven (retrying)`,
        AuroraFailure.Unreachable,
      );
    }
    const proof = await proveFence(s, region, admin);
    return { alreadyFenced, verified: proof.verified, terminated, how: proof.how };
  });
}

async function proveFence(
  s: AuroraService,
  region: string,
  admin: Client,
): Promise<{ verified: boolean; how: string }> {
  const appUser = s.db.regions[region]!.appUser;
  let outcome: ReadWriteAttempt | undefined;
  try {
    outcome = await attemptReadWriteLogin(s.sqlTarget(region, appUser));
  } catch (err) {
    if (isConnectionError(err))
      throw ApplicationFailure.retryable(
        `${s.sqlWhere(region)}: lost the connection while proving the fence: ${errorMessage(err)}`,
        AuroraFailure.Unreachable,
      );
    if (!isConfigError(err))
      return { verified: false, how: `the proof login as ${appUser} failed otherwise: ${errorMessage(err)}` };
  }
  if (outcome === 'login-refused')
    return { verified: true, how: `a login as ${appUser} asking for read-write was refused (NOLOGIN)` };
  if (outcome !== undefined) {
    throw ApplicationFailure.nonRetryable(
      `${s.sqlWhere(region)}: ${appUser} could still log in after ALTER ROLE … NOLOGIN${outcome === 'written' ? ' and write' : ''}; do not promote another region on this fence`,
      AuroraFailure.FenceNotVerified,
    );
  }
  // No login as the application role from here (no password): the catalog says what a login would meet.
  const verified = !(await canLogin(admin, appUser));
  return {
    verified,
    how: verified
      ? `${appUser} is NOLOGIN in pg_roles (no login as ${appUser} from this worker)`
      : `${appUser} can still log in according to pg_roles`,
  };
}

/**
 * Lifts the replicated fence on `region`'s writer (role-fence.ts's lift, in this worker's admin
 * session there); false when there was none. Just promoted, the instance may take a moment to
 * accept writes: retryable until it does.
 */
export async function liftFence(s: AuroraService, region: string): Promise<boolean> {
  return s.withAdmin(region, (admin) => liftRoleFence(admin, s.db.regions[region]!.appUser, s.sqlWhere(region)));
}

export async function dbFenceWrites(s: AuroraService): Promise<FenceResult> {
  const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
  const member = s.memberOf(g, s.region);
  if (member && !member.IsWriter) {
    // A secondary cannot write: the fence holds by construction (after a switchover or failover
    // Aurora made it one).
    return {
      region: s.region,
      alreadyFenced: true,
      verified: true,
      lsn: iso(),
      terminatedSessions: 0,
      detail: `a secondary of global cluster ${s.globalId}: read-only by construction`,
    };
  }
  const what = member
    ? `the writer of global cluster ${s.globalId}`
    : `a standalone cluster (not a member of ${s.globalId})`;
  const notes: string[] = [];
  let result: FenceResult = { region: s.region, alreadyFenced: false, verified: false, lsn: '', terminatedSessions: 0 };
  const routing = s.edge();
  if (!s.hasSql() && !routing) {
    throw ApplicationFailure.nonRetryable(
      `cannot fence ${s.where()}, ${what}: the config gives no writerEndpoint (database-level fence) and no edgeFence; add one of them, or stop the application's writes by hand before promoting`,
      AuroraFailure.CannotFence,
    );
  }
  if (routing) {
    try {
      const shift = await routing.set({ [s.region]: 'Off' }, `fence ${s.region} at the edge`, { allowNoneOn: true });
      notes.push(`edge: routing control of ${s.region} ${shift.changed ? 'switched Off' : 'already Off'}`);
    } catch (err) {
      notes.push(`edge: routing control of ${s.region} not switched: ${errorText(err)}`);
    } finally {
      routing.destroy();
    }
  }
  if (s.hasSql()) {
    const db = await sqlFence(s, s.region);
    result = { ...result, alreadyFenced: db.alreadyFenced, verified: db.verified, terminatedSessions: db.terminated };
    notes.unshift(
      `database: ALTER ROLE ${s.me.appUser} NOLOGIN, and SET default_transaction_read_only = on; ${db.how}`,
    );
  } else {
    notes.push(
      'database: no writerEndpoint, so no database-level fence or proof; the edge alone does not stop clients that already resolved the region',
    );
  }
  // The fence's position is a time: everything acknowledged before it is older than this.
  result.lsn = iso();
  result.detail = notes.join('; ');
  return result;
}

export async function dbUnfenceWrites(s: AuroraService): Promise<UnfenceResult> {
  const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
  const member = s.memberOf(g, s.region);
  if (member && !member.IsWriter) {
    const writer = s.regionOfMember(s.writerOf(g));
    return {
      region: s.region,
      unfenced: false,
      detail: `${s.region} is a secondary (the writer is ${writer ?? 'unknown'}); there is no fence to undo`,
    };
  }
  const fs = g.FailoverState?.Status ? g.FailoverState : undefined;
  if (fs) {
    throw ApplicationFailure.retryable(
      `refusing to unfence ${s.where()} while a ${fs.IsDataLossAllowed ? 'failover' : 'switchover'} of ${s.globalId} is ${fs.Status}`,
      AuroraFailure.OtherOperation,
    );
  }
  if (!member) {
    // A detached cluster: the service's writer may be this one or another; undoing the fence
    // on a cluster outside the global database is a decision for a person.
    throw ApplicationFailure.nonRetryable(
      `refusing to unfence ${s.where()}: it is not a member of ${s.globalId} (detached), so regionshift cannot tell whether another region writes; lift it by hand (ALTER ROLE ${s.me.appUser} RESET default_transaction_read_only) once you are sure`,
      AuroraFailure.OtherPrimary,
    );
  }
  const notes: string[] = [];
  let unfenced = false;
  if (s.hasSql()) {
    const lifted = await liftFence(s, s.region);
    unfenced ||= lifted;
    notes.push(
      lifted
        ? `ALTER ROLE ${s.me.appUser} RESET default_transaction_read_only on ${s.region}: it can write again`
        : `${s.me.appUser} had no read-only default on ${s.region}`,
    );
  }
  const routing = s.edge();
  if (routing) {
    try {
      const shift = await routing.set({ [s.region]: 'On' }, `unfence ${s.region} at the edge`);
      unfenced ||= shift.changed;
      notes.push(`routing control of ${s.region} ${shift.changed ? 'switched On' : 'already On'}`);
    } finally {
      routing.destroy();
    }
  }
  return { region: s.region, unfenced, detail: notes.join('; ') || 'nothing to undo' };
}

export async function dbVerifyWrites(s: AuroraService): Promise<VerifyWritesResult> {
  const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
  const member = s.memberOf(g, s.region);
  if (member && !member.IsWriter) {
    throw ApplicationFailure.nonRetryable(
      `${s.where()} is not writable: it is a secondary of ${s.globalId}; dbVerifyWrites must run in the region that should now be the writer`,
      AuroraFailure.NotWritable,
    );
  }
  if (!s.hasSql()) {
    const cluster = await s.describeCluster();
    return {
      region: s.region,
      ok: cluster.Status === 'available',
      latencyMs: 0,
      detail: `API check only (no writerEndpoint): ${member ? 'the writer of' : 'detached from'} ${s.globalId}, cluster status ${cluster.Status}`,
    };
  }
  const appUser = s.me.appUser;
  await s.withAdmin(s.region, async (admin) => {
    try {
      await admin.query('SET SESSION default_transaction_read_only = off');
      await ensureProbe(s, admin, s.region);
    } catch (err) {
      if (sqlState(err) === READ_ONLY_SQL_TRANSACTION)
        throw ApplicationFailure.retryable(
          `${s.sqlWhere()} is not writable yet: ${errorMessage(err)}`,
          AuroraFailure.NotWritable,
        );
      throw err;
    }
    const own = await roleReadOnlySetting(admin, appUser);
    if (own.roleWide === true || own.inDatabase === true) {
      throw ApplicationFailure.nonRetryable(
        `${s.sqlWhere()} is not writable for ${appUser}: the role's default is read-only (a fence); lift it with dbUnfenceWrites or ALTER ROLE ${appUser} RESET default_transaction_read_only if this region should write`,
        AuroraFailure.NotWritable,
      );
    }
  });
  const id = randomUUID();
  return s.withAdmin(s.region, async (admin) => {
    // As the application role: a login when this worker can (its settings then apply), else SET ROLE.
    let session: Client = admin;
    let own: Client | undefined;
    try {
      own = await connect({ host: s.me.writerEndpoint!, port: s.me.port, database: s.me.database, user: appUser });
      session = own;
    } catch {
      await admin.query(`SET ROLE ${quoteIdent(appUser)}`);
    }
    try {
      const t0 = performance.now();
      try {
        await session.query(`INSERT INTO ${WRITE_PROBE} (id, region) VALUES ($1, $2)`, [id, s.region]);
      } catch (err) {
        if (sqlState(err) === READ_ONLY_SQL_TRANSACTION) {
          throw ApplicationFailure.nonRetryable(
            `${s.sqlWhere()} is not writable: ${appUser}'s insert was refused as read-only (${errorMessage(err)})`,
            AuroraFailure.NotWritable,
          );
        }
        throw err;
      }
      const { rows } = await session.query(`SELECT 1 FROM ${WRITE_PROBE} WHERE id = $1`, [id]);
      return { region: s.region, ok: rows.length === 1, latencyMs: Math.round((performance.now() - t0) * 10) / 10 };
    } finally {
      await close(own);
    }
  });
}
