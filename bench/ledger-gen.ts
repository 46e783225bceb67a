// Big demo ledgers made in SQL (generate_series), for the reconciliation bench: `txns` business
// transactions of two entries each, committed over the past day, across `accounts` accounts that
// are funded first (so no transfer overdraws). Bulk loading runs with session_replication_role =
// replica (the entries' foreign key is not checked row by row: the rows are consistent by
// construction) and the cached balances are set once at the end. A history load runs without the
// entries' secondary indexes and builds them afterwards (withoutEntryIndexes): two of them are on
// random keys (idempotency key, account), and inserting millions of rows into them one by one
// through the stack's small buffer cache is what made a 10,000,000-entry ledger take most of an hour.
import type { Client } from 'pg';

/** A UUIDv7 from a timestamp and a counter, in SQL: 48 bits of milliseconds, version 7, variant 8. */
function uuid7(ts: string, i: string): string {
  return `(lpad(to_hex((extract(epoch FROM ${ts}) * 1000)::bigint), 12, '0') || '7' || substr(md5(${i}::text), 1, 3) || '8' || substr(md5(${i}::text), 4, 15))::uuid`;
}

export interface GenOptions {
  /** Transactions (journal rows); entries are twice as many. */
  txns: number;
  accounts: number;
  /** Label for ids and accounts, so two batches never collide. */
  batch: string;
  /** Commit times: spread over the past day (history), or packed after now (a burst). */
  times: 'history' | 'burst';
  /** Rows per statement: keeps each transaction's WAL and memory bounded. */
  chunk?: number;
}

export async function fundAccounts(c: Client, accounts: number): Promise<void> {
  await c.query('SET session_replication_role = replica');
  await c.query(
    `WITH s AS (SELECT a, md5('bench-funding:' || a)::uuid AS id FROM generate_series(0, $1::int - 1) a),
          acc AS (INSERT INTO accounts (id, balance) SELECT 'b-' || a, 1000000000000 FROM s ON CONFLICT DO NOTHING RETURNING id),
          j AS (INSERT INTO journal (id, origin_region, committed_at, keys, payload_hash)
                SELECT id, current_setting('cluster_name'), now() - interval '2 days', ARRAY['b-' || a, 'ext:funding'], 'funding' FROM s ON CONFLICT DO NOTHING RETURNING 1)
     INSERT INTO ledger_entries (idempotency_key, account, amount, txn_id, created_at)
     SELECT md5(id::text || ':c')::uuid, 'b-' || a, 1000000000000, id, now() - interval '2 days' FROM s
     UNION ALL SELECT md5(id::text || ':d')::uuid, 'ext:funding', -1000000000000, id, now() - interval '2 days' FROM s
     ON CONFLICT DO NOTHING`,
    [accounts],
  );
  await c.query('SET session_replication_role = origin');
}

/** Inserts the transactions; returns how long it took. Balances are moved by what was inserted. */
export async function generateTransactions(
  c: Client,
  o: GenOptions,
  onProgress?: (done: number) => void,
): Promise<number> {
  const t0 = Date.now();
  const chunk = o.chunk ?? 250_000;
  await c.query('SET session_replication_role = replica');
  try {
    for (let from = 0; from < o.txns; from += chunk) {
      const to = Math.min(o.txns, from + chunk);
      const ts =
        o.times === 'history'
          ? `now() - interval '1 day' + (i * (80000.0 / $3::int)) * interval '1 second'`
          : `clock_timestamp() + (i - $1::bigint + 0 * $3::int) * interval '1 microsecond'`;
      await c.query(
        `WITH s AS MATERIALIZED (
           SELECT i, ts, ${uuid7('ts', `($4::text || i)`)} AS id,
                  'b-' || ((i * 7919) % $5::int) AS src, 'b-' || ((i * 104729 + 1) % $5::int) AS dst, 1 + (i % 997) AS amt
             FROM (SELECT i, ${ts} AS ts FROM generate_series($1::bigint, $2::bigint - 1) AS i) g),
         j AS (INSERT INTO journal (id, origin_region, committed_at, keys, payload_hash)
               SELECT id, current_setting('cluster_name'), ts, ARRAY[src, dst], md5($4::text || i) FROM s RETURNING 1),
         e AS (INSERT INTO ledger_entries (idempotency_key, account, amount, txn_id, created_at)
               SELECT md5(id::text || ':d')::uuid, src, -amt, id, ts FROM s
               UNION ALL SELECT md5(id::text || ':c')::uuid, dst, amt, id, ts FROM s
               RETURNING account, amount)
         UPDATE accounts a SET balance = a.balance + d.delta
           FROM (SELECT account, sum(amount) AS delta FROM e GROUP BY account) d WHERE a.id = d.account`,
        [from, to, o.txns, o.batch, o.accounts],
      );
      onProgress?.(to);
    }
  } finally {
    await c.query('SET session_replication_role = origin');
  }
  return Date.now() - t0;
}

/**
 * Runs `load` with the entries' secondary indexes and unique constraints dropped, then builds them
 * again under the same names and definitions (the unique constraint checks its keys as it is
 * built). All inside the session's ordinary, logged statements: the standby replays the builds.
 */
export async function withoutEntryIndexes<T>(c: Client, load: () => Promise<T>): Promise<T> {
  const { rows } = await c.query<{ name: string; con: string | null; def: string }>(
    `SELECT i.relname AS name, con.conname AS con,
            CASE WHEN con.conname IS NULL THEN pg_get_indexdef(i.oid)
                 ELSE format('ALTER TABLE ledger_entries ADD CONSTRAINT %I %s', con.conname, pg_get_constraintdef(con.oid)) END AS def
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
       LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
      WHERE x.indrelid = 'ledger_entries'::regclass AND NOT x.indisprimary`,
  );
  for (const r of rows)
    await c.query(r.con ? `ALTER TABLE ledger_entries DROP CONSTRAINT ${quote(r.con)}` : `DROP INDEX ${quote(r.name)}`);
  const out = await load();
  await c.query("SET maintenance_work_mem = '512MB'");
  for (const r of rows) await c.query(r.def);
  await c.query('RESET maintenance_work_mem');
  return out;
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;
