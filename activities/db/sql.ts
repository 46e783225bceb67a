// Small helpers around the `pg` client for the postgres-streaming provider: short-lived
// connections that fail fast, always close, and never crash the worker on a dropped socket;
// and the classification of errors into "cannot reach it", "misconfigured" and "SQL said no".
import { Client, DatabaseError } from 'pg';

/** Where and as whom to connect. The password is read from the worker's environment, never from input. */
export interface ConnTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
}

export interface ConnectOptions {
  /** Server-side statement_timeout; the client gives up a little later in case the network is gone. */
  statementTimeoutMs?: number;
}

/** Short, so an unreachable region is reported in seconds rather than after a TCP timeout. */
export const CONNECT_TIMEOUT_MS = 3_000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 15_000;
/** Marks our sessions in pg_stat_activity, so an operator can tell them from the application's. */
export const APPLICATION_NAME = 'regionshift';

export async function connect(target: ConnTarget, options: ConnectOptions = {}): Promise<Client> {
  const statementTimeout = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const client = new Client({
    host: target.host,
    port: target.port,
    database: target.database,
    user: target.user,
    ...(target.password !== undefined ? { password: target.password } : {}),
    application_name: APPLICATION_NAME,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: statementTimeout,
    query_timeout: statementTimeout + 5_000,
  });
  // A server that terminates or dies under an idle client emits 'error' on the client; without a
  // listener Node treats it as an uncaught exception and the whole region worker exits. The
  // failure still reaches the caller through the pending or next query.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

export async function close(client: Client | undefined): Promise<void> {
  await client?.end().catch(() => undefined);
}

/** Runs `fn` on a fresh connection and always closes it. */
export async function withClient<T>(
  target: ConnTarget,
  fn: (client: Client) => Promise<T>,
  options?: ConnectOptions,
): Promise<T> {
  const client = await connect(target, options);
  try {
    return await fn(client);
  } finally {
    await close(client);
  }
}

/** The SQLSTATE of an error the server sent, if it was one. */
export function sqlState(err: unknown): string | undefined {
  return err instanceof DatabaseError ? err.code : undefined;
}

export function errorMessage(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    // Node reports "connect ECONNREFUSED" for each address it tried as an AggregateError with an empty message.
    return err.errors.map((e: unknown) => errorMessage(e)).join('; ');
  }
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * The server refused who we are or where we asked to go: retrying will not help, the config or
 * the worker's environment must change.
 */
export function isConfigError(err: unknown): boolean {
  const code = sqlState(err);
  if (code === '28P01' || code === '28000' || code === '3D000') return true;
  // pg raises a plain Error client-side when the server asks for a password and none was given.
  return code === undefined && err instanceof Error && /password/i.test(err.message);
}

/**
 * The server could not be reached or went away: a network error, a connect timeout, a server
 * shutting down, starting up or in crash recovery (class 57), or a broken connection (class 08).
 */
export function isConnectionError(err: unknown): boolean {
  const code = sqlState(err);
  if (code !== undefined) return code.startsWith('08') || code.startsWith('57');
  if (err instanceof AggregateError) return err.errors.some((e: unknown) => isConnectionError(e));
  if (!(err instanceof Error) || isConfigError(err)) return false;
  // Node system errors (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENOTFOUND, ECONNRESET, EPIPE) and
  // pg's own "Connection terminated ..." / "timeout exceeded when trying to connect".
  const sysCode = (err as NodeJS.ErrnoException).code;
  if (typeof sysCode === 'string' && /^E[A-Z]+$/.test(sysCode)) return true;
  return /connection terminated|timeout|connect/i.test(err.message);
}

/** A write refused because the session or the server is read-only (a fence, or a standby). */
export const READ_ONLY_SQL_TRANSACTION = '25006';

const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;

export function isLsn(text: string): boolean {
  return LSN.test(text);
}

/** Byte position of an LSN ("16/B374D848"), for arithmetic the server need not be asked about. */
export function lsnToBigInt(lsn: string): bigint {
  if (!isLsn(lsn)) throw new Error(`not a PostgreSQL LSN: "${lsn}" (expected two hex numbers like 0/3000060)`);
  const [hi, lo] = lsn.split('/') as [string, string];
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

// ---------------------------------------------------------------------------------------------
// The fence's SQL, shared by the providers whose databases speak PostgreSQL (postgres-streaming,
// and aurora-global on aurora-postgresql): the probe objects, ending the application's sessions,
// the proof write, and the role settings that could undo a read-only default.

/** Our objects live in a schema of their own so they never collide with the application's. */
export const PROBE_SCHEMA = 'regionshift';
/** nextval() on it is a write that leaves no row behind: the fence's proof probe. */
export const FENCE_PROBE = `${PROBE_SCHEMA}.fence_probe`;
/** One row per verify-writes: written as the application role and read back. */
export const WRITE_PROBE = `${PROBE_SCHEMA}.probe`;

/** The application role named in the config does not exist on the server. */
export class MissingRoleError extends Error {
  override name = 'MissingRoleError';
  constructor(readonly role: string) {
    super(`role ${role} does not exist`);
  }
}

/**
 * Roles the fence made NOLOGIN (aurora-global): the marker that lets the lift give LOGIN back
 * only to a role that had it. A table, so it replicates with the role to the new writer.
 */
export const FENCE_LOGINS = `${PROBE_SCHEMA}.fence_logins`;

/** The schema, fence probe sequence and write probe table, usable by the application role. */
export async function ensureProbeObjects(admin: Client, appUser: string): Promise<void> {
  const app = quoteIdent(appUser);
  // IF NOT EXISTS writes nothing when the objects exist; the grants are only issued when missing.
  await admin.query(`CREATE SCHEMA IF NOT EXISTS ${PROBE_SCHEMA}`);
  await admin.query(`CREATE SEQUENCE IF NOT EXISTS ${FENCE_PROBE}`);
  await admin.query(
    `CREATE TABLE IF NOT EXISTS ${WRITE_PROBE} (id uuid PRIMARY KEY, region text NOT NULL, at timestamptz NOT NULL DEFAULT now())`,
  );
  await admin.query(
    `CREATE TABLE IF NOT EXISTS ${FENCE_LOGINS} (role name PRIMARY KEY, fenced_at timestamptz NOT NULL DEFAULT now())`,
  );
  let privileges: { schema: boolean; seq: boolean; ins: boolean; sel: boolean };
  try {
    privileges = (
      await admin.query<{ schema: boolean; seq: boolean; ins: boolean; sel: boolean }>(
        `SELECT has_schema_privilege($1, '${PROBE_SCHEMA}', 'USAGE') AS schema,
                has_sequence_privilege($1, '${FENCE_PROBE}', 'USAGE') AS seq,
                has_table_privilege($1, '${WRITE_PROBE}', 'INSERT') AS ins,
                has_table_privilege($1, '${WRITE_PROBE}', 'SELECT') AS sel`,
        [appUser],
      )
    ).rows[0]!;
  } catch (err) {
    if (sqlState(err) === '42704') throw new MissingRoleError(appUser);
    throw err;
  }
  if (!privileges.schema) await admin.query(`GRANT USAGE ON SCHEMA ${PROBE_SCHEMA} TO ${app}`);
  if (!privileges.seq) await admin.query(`GRANT USAGE ON SEQUENCE ${FENCE_PROBE} TO ${app}`);
  if (!privileges.ins || !privileges.sel) await admin.query(`GRANT SELECT, INSERT ON ${WRITE_PROBE} TO ${app}`);
}

/** How long a fence waits for pg_terminate_backend to end a role's sessions before it calls the fence unproven. */
export const TERMINATE_DEADLINE_MS = 10_000;

/**
 * Ends every session of `role` and waits until they are gone: a transaction opened before the
 * fence could otherwise still commit (a read-only default only applies to new transactions).
 * Returns how many were ended, and the pids still alive when the deadline passed.
 */
export async function terminateRoleSessions(
  admin: Client,
  role: string,
  opts: { deadlineMs: number; pause: (ms: number) => Promise<void> },
): Promise<{ terminated: number; stillAlive: number[] }> {
  // pg_terminate_backend sits in the select list, so it only runs on rows the WHERE kept.
  const { rows } = await admin.query<{ pid: number; signalled: boolean }>(
    `SELECT pid, pg_terminate_backend(pid) AS signalled FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`,
    [role],
  );
  const pids = rows.filter((r) => r.signalled).map((r) => r.pid);
  const deadline = Date.now() + opts.deadlineMs;
  for (;;) {
    const left = (
      await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])', [pids])
    ).rows;
    if (left.length === 0) return { terminated: pids.length, stillAlive: [] };
    if (Date.now() > deadline) return { terminated: pids.length - left.length, stillAlive: left.map((r) => r.pid) };
    await opts.pause(50);
  }
}

/**
 * SQLSTATE 28000 with one of these texts: pg_hba.conf matched a `reject` line for the login, or
 * the role may not log in (NOLOGIN). Both are a wall, not a default a client can change.
 */
const LOGIN_WALL = /pg_hba\.conf rejects connection|is not permitted to log in/;

export type ReadWriteAttempt = 'login-refused' | 'read-only' | 'written';

/**
 * The probe a misbehaving client would be: log in as the role and ask for read-write in every way
 * a session can (the startup option, SET SESSION CHARACTERISTICS, BEGIN READ WRITE), then write.
 * 'login-refused' only when the login met a wall (pg_hba.conf rejects before any password is
 * asked for; NOLOGIN is checked after authentication). Other login failures throw.
 */
export async function attemptReadWriteLogin(target: ConnTarget): Promise<ReadWriteAttempt> {
  let session: Client;
  try {
    session = await connect(target);
  } catch (err) {
    if (sqlState(err) === '28000' && LOGIN_WALL.test(errorMessage(err))) return 'login-refused';
    throw err;
  }
  try {
    await session.query('SET default_transaction_read_only = off');
    await session.query('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE');
    await session.query('BEGIN READ WRITE');
    const outcome = await attemptProbeWrite(session);
    await session.query(outcome === 'written' ? 'COMMIT' : 'ROLLBACK');
    return outcome === 'written' ? 'written' : 'read-only';
  } catch (err) {
    // A standby refuses BEGIN READ WRITE itself ("cannot set transaction read-write mode during recovery").
    if (sqlState(err) === READ_ONLY_SQL_TRANSACTION) return 'read-only';
    throw err;
  } finally {
    await close(session);
  }
}

/**
 * The login wall for providers without a pg_hba.conf of their own (aurora-global): the role
 * becomes NOLOGIN, with a marker row so that restoreLogin gives LOGIN back exactly when we took
 * it. True when this call took it; false when the role already could not log in.
 */
export async function denyLogin(admin: Client, role: string): Promise<boolean> {
  return inTransaction(admin, async () => {
    const { rows } = await admin.query<{ can: boolean }>('SELECT rolcanlogin AS can FROM pg_roles WHERE rolname = $1', [
      role,
    ]);
    if (rows.length === 0) throw new MissingRoleError(role);
    if (!rows[0]!.can) return false;
    await admin.query(`INSERT INTO ${FENCE_LOGINS} (role) VALUES ($1) ON CONFLICT DO NOTHING`, [role]);
    await admin.query(`ALTER ROLE ${quoteIdent(role)} NOLOGIN`);
    return true;
  });
}

/** Undoes denyLogin: LOGIN again only for a role the marker says the fence took it from. */
export async function restoreLogin(admin: Client, role: string): Promise<boolean> {
  const marked = await admin.query(`SELECT 1 FROM ${FENCE_LOGINS} WHERE role = $1`, [role]).catch((err: unknown) => {
    if (sqlState(err) === '42P01') return { rowCount: 0 }; // never fenced here: no table yet
    throw err;
  });
  if (!marked.rowCount) return false;
  return inTransaction(admin, async () => {
    await admin.query(`ALTER ROLE ${quoteIdent(role)} LOGIN`);
    await admin.query(`DELETE FROM ${FENCE_LOGINS} WHERE role = $1`, [role]);
    return true;
  });
}

/** The role change and its marker row commit together or not at all. */
async function inTransaction<T>(admin: Client, fn: () => Promise<T>): Promise<T> {
  await admin.query('BEGIN');
  try {
    const result = await fn();
    await admin.query('COMMIT');
    return result;
  } catch (err) {
    await admin.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Whether the role may log in, from the catalog (for a worker that cannot log in as it). */
export async function canLogin(admin: Client, role: string): Promise<boolean> {
  const { rows } = await admin.query<{ can: boolean }>('SELECT rolcanlogin AS can FROM pg_roles WHERE rolname = $1', [
    role,
  ]);
  return rows[0]?.can === true;
}

/** The proof write: 'refused' when the server said read-only (25006), 'written' when it went through. */
export async function attemptProbeWrite(session: Client): Promise<'refused' | 'written'> {
  try {
    await session.query(`SELECT nextval('${FENCE_PROBE}')`);
    return 'written';
  } catch (err) {
    if (sqlState(err) === READ_ONLY_SQL_TRANSACTION) return 'refused';
    throw err;
  }
}

/**
 * default_transaction_read_only as the role's own settings give it for the current database:
 * `on`/`off` from ALTER ROLE … [IN DATABASE …] SET (the database-specific one wins), or undefined
 * when the role has none. A login as the role applies it; SET ROLE does not.
 */
export async function roleReadOnlySetting(
  session: Client,
  role: string,
): Promise<{ roleWide?: boolean; inDatabase?: boolean }> {
  const { rows } = await session.query<{ db: boolean; value: string }>(
    `SELECT s.setdatabase <> 0 AS db, lower(split_part(c, '=', 2)) AS value
       FROM pg_db_role_setting AS s, unnest(s.setconfig) AS c
      WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = $1)
        AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
        AND c ILIKE 'default_transaction_read_only=%'`,
    [role],
  );
  const on = (v: string): boolean => ['on', 'true', 'yes', '1'].includes(v);
  const wide = rows.find((r) => !r.db);
  const inDb = rows.find((r) => r.db);
  return { ...(wide ? { roleWide: on(wide.value) } : {}), ...(inDb ? { inDatabase: on(inDb.value) } : {}) };
}

/**
 * default_transaction_read_only as a new login of `role` into the current database gets it from
 * the catalog: the role-in-database setting wins over the role's own, which wins over the
 * database's, which wins over ALTER ROLE ALL's. Undefined when none of them sets it (the server's
 * configuration decides). For when the worker cannot log in as the role to prove it by a write.
 */
export async function readOnlyDefaultFor(session: Client, role: string): Promise<boolean | undefined> {
  const { rows } = await session.query<{ rank: number; value: string }>(
    `SELECT (CASE WHEN s.setrole <> 0 THEN 2 ELSE 0 END) + (CASE WHEN s.setdatabase <> 0 THEN 1 ELSE 0 END) AS rank,
            lower(split_part(c, '=', 2)) AS value
       FROM pg_db_role_setting AS s, unnest(s.setconfig) AS c
      WHERE s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = $1))
        AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
        AND c ILIKE 'default_transaction_read_only=%'
      ORDER BY rank DESC LIMIT 1`,
    [role],
  );
  const top = rows[0];
  return top ? ['on', 'true', 'yes', '1'].includes(top.value) : undefined;
}
