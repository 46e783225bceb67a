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
export async function withClient<T>(target: ConnTarget, fn: (client: Client) => Promise<T>, options?: ConnectOptions): Promise<T> {
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
