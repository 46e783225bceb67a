// The demo's banking ledger: an append-only journal of transfers with client-generated ids.
// The data model is the one reconciliation relies on: a transfer is one journal row (which
// region committed it, when, which accounts it touched, a hash of what it said) and two entries
// whose idempotency keys derive from the journal id, all in one transaction.
import { createHash } from 'node:crypto';
import { Client, type ClientBase } from 'pg';
import { postgresDatabase, type Service } from '../config/schema';
import { dsn, PG_SUPERUSER, type PgNode } from '../postgres/node';
import { uuidFromName } from './uuidv7';

export const ACCOUNTS = Array.from({ length: 20 }, (_, i) => `acct-${String(i + 1).padStart(3, '0')}`);

function schemaSql(appRole: string): string {
  const role = `"${appRole.replace(/"/g, '""')}"`;
  return `
CREATE TABLE IF NOT EXISTS journal (
  id uuid PRIMARY KEY,                        -- client-generated UUIDv7
  origin_region text NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT now(),
  keys text[] NOT NULL,
  payload_hash text NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_committed_at ON journal (committed_at);
CREATE TABLE IF NOT EXISTS accounts (id text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ledger_entries (
  id bigserial PRIMARY KEY,
  idempotency_key uuid UNIQUE NOT NULL,
  account text NOT NULL,
  amount bigint NOT NULL,
  txn_id uuid NOT NULL REFERENCES journal (id),
  created_at timestamptz DEFAULT now()
);
INSERT INTO accounts (id) SELECT unnest($ACCOUNTS$) ON CONFLICT DO NOTHING;
-- Append-only for the application: it may add and read, never change or remove.
GRANT SELECT, INSERT ON journal, ledger_entries, accounts TO ${role};
GRANT USAGE ON SEQUENCE ledger_entries_id_seq TO ${role};
`.replace('$ACCOUNTS$', `ARRAY[${ACCOUNTS.map((a) => `'${a}'`).join(', ')}]`);
}

/** A superuser session on a node (setup and checks, never the application's writes). */
export async function adminClient(node: PgNode): Promise<Client> {
  const client = new Client({ connectionString: dsn(node, PG_SUPERUSER), connectionTimeoutMillis: 3_000, query_timeout: 15_000 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Creates the ledger on the primary (it replicates to the standbys). Idempotent. */
export async function ensureLedger(primary: PgNode, appRole: string): Promise<void> {
  const client = await adminClient(primary);
  try {
    await client.query(schemaSql(appRole));
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface Transfer {
  id: string;
  from: string;
  to: string;
  amount: number;
}

export function randomTransfer(id: string): Transfer {
  const from = ACCOUNTS[Math.floor(Math.random() * ACCOUNTS.length)]!;
  let to = from;
  while (to === from) to = ACCOUNTS[Math.floor(Math.random() * ACCOUNTS.length)]!;
  return { id, from, to, amount: 1 + Math.floor(Math.random() * 10_000) };
}

/**
 * Books a transfer in one transaction and returns the region that committed it (the server's
 * cluster_name, which the local stack sets to the region): when this resolves, COMMIT returned.
 */
export async function bookTransfer(client: ClientBase, t: Transfer): Promise<string> {
  const hash = createHash('sha256').update(JSON.stringify([t.id, t.from, t.to, t.amount])).digest('hex');
  await client.query('BEGIN');
  try {
    const row = await client.query<{ origin_region: string }>(
      `INSERT INTO journal (id, origin_region, keys, payload_hash) VALUES ($1, current_setting('cluster_name'), $2, $3) RETURNING origin_region`,
      [t.id, [t.from, t.to], hash],
    );
    await client.query(
      'INSERT INTO ledger_entries (idempotency_key, account, amount, txn_id) VALUES ($1, $2, $3, $5), ($4, $6, $7, $5)',
      [uuidFromName(`${t.id}:debit`), t.from, -t.amount, uuidFromName(`${t.id}:credit`), t.id, t.to, t.amount],
    );
    await client.query('COMMIT');
    return row.rows[0]!.origin_region;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Which of `ids` the node's journal holds. */
export async function presentIds(node: PgNode, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const client = await adminClient(node);
  try {
    const res = await client.query<{ id: string }>('SELECT id::text FROM journal WHERE id = ANY($1::uuid[])', [ids]);
    return new Set(res.rows.map((r) => r.id));
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The node of a region of a service, as the provider would address it. */
export function nodeOf(service: Service, region: string): PgNode {
  const db = postgresDatabase(service).regions[region];
  if (!db) throw new Error(`service ${service.name} has no database in region ${region}`);
  return { region, host: db.host, port: db.port, dataDir: db.dataDir };
}
