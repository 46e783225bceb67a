// The fence (docs/safety.md, "The fence"): a wall in pg_hba.conf against the application role,
// proven by a refused login, with the read-only default beside it; its undo; and the write check
// on the node that should now be the writer.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { pause } from '../../context';
import type { Config } from '../../../src/lib/config/schema';
import { hasFenceBlock, setFenceBlock } from '../../../src/lib/postgres/hba';
import type { FenceResult, UnfenceResult, VerifyWritesResult } from '../../../src/contract/activities';
import {
  MissingRoleError,
  READ_ONLY_SQL_TRANSACTION,
  TERMINATE_DEADLINE_MS,
  WRITE_PROBE,
  attemptReadWriteLogin,
  errorMessage,
  isConnectionError,
  sqlState,
  terminateRoleSessions,
  withClient,
  ensureProbeObjects as ensureSharedProbeObjects,
} from '../sql';
import {
  DbFailure,
  POLL_MS,
  type ResolvedNode,
  connectFailure,
  withAdmin,
  withAppSession,
  probe,
  otherWritablePrimaries,
} from './node';

/** How long a reload may take to reach new sessions (it is asynchronous). */
const RELOAD_DEADLINE_MS = 10_000;

/**
 * What postgresql.auto.conf says about default_transaction_read_only right now, loaded or not:
 * a fence written by ALTER SYSTEM whose reload never happened (a crash in between) still takes
 * effect at the next reload or restart. Undefined when unset, or when we may not read it.
 */
export async function autoConfReadOnly(client: Client): Promise<string | undefined> {
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

export async function setSystemReadOnly(admin: Client, n: ResolvedNode, on: boolean): Promise<void> {
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
export async function setWall(
  admin: Client,
  n: ResolvedNode,
  up: boolean,
): Promise<{ file: string; changed: boolean }> {
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
 * Makes the node refuse writes and proves it (docs/safety.md, "The fence"). The wall is
 * pg_hba.conf rejecting every login of the application role, so no client of it can ask for
 * read-write however it tries; then every application session is ended, and a login asking
 * for read-write is refused. ALTER SYSTEM default_transaction_read_only = on stays as well:
 * it keeps other roles' well-behaved sessions read-only, and it is what dbDescribe reports.
 */
export async function dbFenceWrites(n: ResolvedNode): Promise<FenceResult> {
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
export async function dbUnfenceWrites(config: Config, n: ResolvedNode): Promise<UnfenceResult> {
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

export async function dbVerifyWrites(n: ResolvedNode): Promise<VerifyWritesResult> {
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
