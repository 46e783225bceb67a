// The demo's banking ledger: an append-only journal of transfers with client-generated ids.
// The data model is the one reconciliation relies on: a transfer is one journal row (which
// region committed it, when, which accounts it touched, a hash of what it said) and two entries
// whose idempotency keys derive from the journal id, all in one transaction.
import { createHash } from 'node:crypto';
import { Client, type ClientBase } from 'pg';
import { postgresDatabase, type Service } from '../lib/config/schema';
import { dsn, PG_SUPERUSER, type PgNode } from '../lib/postgres/node';
import { uuidFromName } from './uuidv7';

export const ACCOUNTS = Array.from({ length: 20 }, (_, i) => `acct-${String(i + 1).padStart(3, '0')}`);

/** The opening balance of every demo account, booked once from an external funding account. */
export const OPENING_BALANCE = 1_000_000_000;
export const FUNDING_ACCOUNT = 'ext:funding';
/** Demo loans: mutable state moving along a declared order (docs/data-model.md). */
export const LOAN_STATES = ['PENDING', 'APPROVED', 'DISBURSED', 'COMPLETED'] as const;
export const LOANS = Array.from({ length: 1000 }, (_, i) => `L-${String(i + 1).padStart(4, '0')}`);

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
CREATE INDEX IF NOT EXISTS ledger_entries_account ON ledger_entries (account);
CREATE INDEX IF NOT EXISTS ledger_entries_txn ON ledger_entries (txn_id);
-- The balance is derived: the sum of the account's entries, cached here in the same transaction
-- as the entries (never copied between regions). Added to ledgers made before it existed.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'accounts' AND column_name = 'balance') THEN
    ALTER TABLE accounts ADD COLUMN balance bigint NOT NULL DEFAULT 0;
    UPDATE accounts a SET balance = coalesce((SELECT sum(e.amount) FROM ledger_entries e WHERE e.account = a.id), 0);
  END IF;
END $$;
-- Mutable state with a version and a declared order (PENDING < APPROVED < DISBURSED < COMPLETED).
CREATE TABLE IF NOT EXISTS loans (
  id text PRIMARY KEY,
  status text NOT NULL,
  version int NOT NULL DEFAULT 1,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO accounts (id) SELECT unnest($ACCOUNTS$) ON CONFLICT DO NOTHING;
INSERT INTO loans (id, status) SELECT unnest($LOANS$), 'PENDING' ON CONFLICT DO NOTHING;
-- Append-only for the application: it may add and read entries, never change or remove them;
-- it keeps the cached balance and moves loans forward.
GRANT SELECT, INSERT ON journal, ledger_entries, accounts, loans TO ${role};
GRANT UPDATE (balance) ON accounts TO ${role};
GRANT UPDATE (status, version, updated_at) ON loans TO ${role};
GRANT USAGE ON SEQUENCE ledger_entries_id_seq TO ${role};
`
    .replace('$ACCOUNTS$', `ARRAY[${ACCOUNTS.map((a) => `'${a}'`).join(', ')}]`)
    .replace('$LOANS$', `ARRAY[${LOANS.map((l) => `'${l}'`).join(', ')}]`);
}

/**
 * Opening balances: one funding transaction per account (its id derived from the account, so
 * booking it again books nothing), crediting the account and debiting the external funding account.
 */
const FUNDING_SQL = `
WITH j AS (
  INSERT INTO journal (id, origin_region, keys, payload_hash)
  SELECT md5('funding:' || a)::uuid, current_setting('cluster_name'), ARRAY[a, '${FUNDING_ACCOUNT}'], md5('funding:' || a || ':' || $2::text)
    FROM unnest($1::text[]) AS a
  ON CONFLICT (id) DO NOTHING RETURNING id, keys[1] AS account),
e AS (
  INSERT INTO ledger_entries (idempotency_key, account, amount, txn_id)
  SELECT md5(j.id::text || ':credit')::uuid, j.account, $2::bigint, j.id FROM j
  UNION ALL SELECT md5(j.id::text || ':debit')::uuid, '${FUNDING_ACCOUNT}', -$2::bigint, j.id FROM j
  RETURNING account, amount)
UPDATE accounts a SET balance = a.balance + e.amount FROM e WHERE a.id = e.account`;

/** A superuser session on a node (setup and checks, never the application's writes). */
export async function adminClient(node: PgNode): Promise<Client> {
  const client = new Client({
    connectionString: dsn(node, PG_SUPERUSER),
    connectionTimeoutMillis: 3_000,
    query_timeout: 15_000,
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Creates the ledger on the primary (it replicates to the standbys). Idempotent. */
export async function ensureLedger(primary: PgNode, appRole: string): Promise<void> {
  const client = await adminClient(primary);
  try {
    await client.query(schemaSql(appRole));
    await client.query(FUNDING_SQL, [ACCOUNTS, OPENING_BALANCE]);
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

export function transferHash(t: Transfer): string {
  return createHash('sha256')
    .update(JSON.stringify([t.id, t.from, t.to, t.amount]))
    .digest('hex');
}

/** Raised when a transfer would take its debited account below zero: the application refuses it. */
export class InsufficientFunds extends Error {
  override name = 'InsufficientFunds';
}

/**
 * Books a transfer in one transaction and returns the region that committed it (the server's
 * cluster_name, which the local stack sets to the region): when this resolves, COMMIT returned.
 * One journal row, two entries whose idempotency keys derive from the journal id, and the two
 * cached balances moved (in account order, so concurrent transfers never deadlock); a transfer
 * that would overdraw its debited account is refused.
 */
export async function bookTransfer(client: ClientBase, t: Transfer): Promise<string> {
  await client.query('BEGIN');
  try {
    const row = await client.query<{ origin_region: string }>(
      `INSERT INTO journal (id, origin_region, keys, payload_hash) VALUES ($1, current_setting('cluster_name'), $2, $3) RETURNING origin_region`,
      [t.id, [t.from, t.to], transferHash(t)],
    );
    await client.query(
      'INSERT INTO ledger_entries (idempotency_key, account, amount, txn_id) VALUES ($1, $2, $3, $5), ($4, $6, $7, $5)',
      [uuidFromName(`${t.id}:debit`), t.from, -t.amount, uuidFromName(`${t.id}:credit`), t.id, t.to, t.amount],
    );
    for (const [account, delta] of [
      [t.from, -t.amount],
      [t.to, t.amount],
    ].sort((a, b) => (a[0]! < b[0]! ? -1 : 1)) as [string, number][]) {
      const res = await client.query<{ balance: string }>(
        'UPDATE accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance',
        [account, delta],
      );
      if (delta < 0 && res.rows[0] && Number(res.rows[0].balance) < 0)
        throw new InsufficientFunds(`insufficient funds in ${account}`);
    }
    await client.query('COMMIT');
    return row.rows[0]!.origin_region;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Moves a loan one state forward (journal row keyed loan:<id>, version + 1); undefined when it is already COMPLETED. */
export async function advanceLoan(client: ClientBase, id: string, loan: string): Promise<string | undefined> {
  await client.query('BEGIN');
  try {
    const cur = (await client.query<{ status: string }>('SELECT status FROM loans WHERE id = $1 FOR UPDATE', [loan]))
      .rows[0];
    const next = cur ? LOAN_STATES[LOAN_STATES.indexOf(cur.status as (typeof LOAN_STATES)[number]) + 1] : undefined;
    if (!next) {
      await client.query('ROLLBACK');
      return undefined;
    }
    const row = await client.query<{ origin_region: string }>(
      `INSERT INTO journal (id, origin_region, keys, payload_hash) VALUES ($1, current_setting('cluster_name'), $2, $3) RETURNING origin_region`,
      [
        id,
        [`loan:${loan}`],
        createHash('sha256')
          .update(JSON.stringify([id, loan, next]))
          .digest('hex'),
      ],
    );
    await client.query('UPDATE loans SET status = $2, version = version + 1, updated_at = now() WHERE id = $1', [
      loan,
      next,
    ]);
    await client.query('COMMIT');
    return row.rows[0]!.origin_region;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The demo ledger's reconcile block (src/lib/config/reconcile.ts): the defaults plus its loans. */
export const DEMO_RECONCILE = {
  mutable: [
    {
      table: 'loans',
      key: 'id',
      status: 'status',
      version: 'version',
      updatedAt: 'updated_at',
      keyPrefix: 'loan:',
      states: [...LOAN_STATES],
    },
  ],
};

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
