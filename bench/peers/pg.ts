// What the bench asks of every pair, whoever runs it: does this node accept a write, is that
// one a streaming standby, and which acknowledged writes does a node have.
import { Client } from 'pg';
import { sleep } from '../../src/stack/wait';

export interface Endpoint {
  host: string;
  port: number;
  /** postgres unless named. */
  database?: string;
}

/** Superuser over TCP: every pair the bench builds trusts loopback (temporary, 127.0.0.1 only). */
function client(ep: Endpoint, timeoutMs = 1_000, queryTimeoutMs = 2_000): Client {
  const c = new Client({
    host: ep.host,
    port: ep.port,
    user: 'postgres',
    database: ep.database ?? 'postgres',
    connectionTimeoutMillis: timeoutMs,
    query_timeout: queryTimeoutMs,
  });
  c.on('error', () => undefined);
  return c;
}

/** Probes answer within 2 s or count as "not yet"; slow statements (a CHECKPOINT under load) pass a longer `queryTimeoutMs`. */
export async function query(
  ep: Endpoint,
  sql: string,
  params: unknown[] = [],
  queryTimeoutMs = 2_000,
): Promise<Array<Record<string, unknown>>> {
  const c = client(ep, 1_000, queryTimeoutMs);
  try {
    await c.connect();
    return (await c.query(sql, params)).rows as Array<Record<string, unknown>>;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The tables the probes and the writer use; created on the primary, replicated to the standby. */
export async function createBenchTables(primary: Endpoint): Promise<void> {
  await query(
    primary,
    'CREATE TABLE IF NOT EXISTS bench_probe (at timestamptz NOT NULL DEFAULT now()); CREATE TABLE IF NOT EXISTS bench_writes (id text PRIMARY KEY)',
  );
}

/** One real write (an INSERT that commits): a standby, a fenced or a stopped server refuses it. */
/** Which of a two-node peer's nodes takes writes now; `tool` names the peer in the error. */
export async function writableNode(nodes: Endpoint[], tool: string): Promise<number> {
  for (const [i, node] of nodes.entries()) if (await acceptsWrite(node)) return i;
  throw new Error(`${tool}: neither node accepts writes`);
}

export async function acceptsWrite(ep: Endpoint): Promise<boolean> {
  try {
    await query(ep, 'INSERT INTO bench_probe DEFAULT VALUES');
    return true;
  } catch {
    return false;
  }
}

export async function isStreamingStandby(ep: Endpoint): Promise<boolean> {
  try {
    const rows = await query(
      ep,
      'SELECT pg_is_in_recovery() AS standby, (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS status',
    );
    return rows[0]?.standby === true && rows[0]?.status === 'streaming';
  } catch {
    return false;
  }
}

/** Polls `probe` every `intervalMs` until it holds (a throw counts as not yet); the time it first held, or undefined at the deadline. */
export async function firstTime(
  probe: () => Promise<boolean>,
  deadline: number,
  intervalMs = 25,
): Promise<number | undefined> {
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return Date.now();
    await sleep(intervalMs);
  }
  return undefined;
}

/** Which of `ids` are in bench_writes on `ep`. */
export async function presentWrites(ep: Endpoint, ids: string[]): Promise<Set<string>> {
  const rows = await query(ep, 'SELECT id FROM bench_writes WHERE id = ANY($1)', [ids]);
  return new Set(rows.map((r) => String(r.id)));
}
