// A real divergence for the reconciliation and failback tests: the demo ledger under a write load
// in us-west-2, replication to us-east-1 cut (so the primary keeps acknowledging writes the
// standby never gets), the primary killed mid-load, an unplanned failover to us-east-1 where the
// load carries on, and a set of engineered conflicts on both sides: an overdraft (both regions
// spend the same money), a same-id different-payload pair, an exact duplicate, a high-value and an
// external-payment transaction, an idempotency-key collision, and loans moved on both sides.
import { randomUUID } from 'node:crypto';
import { Client as PgClient, type ClientBase } from 'pg';
import { expect } from 'vitest';
import { ReconcileConfig } from '../../src/lib/config/reconcile';
import { advanceLoan, bookTransfer, DEMO_RECONCILE, ensureLedger, type Transfer } from '../../src/demo/ledger';
import { startWriteLoad, type WriteLoad } from '../../src/demo/load';
import { uuidFromName, uuidv7 } from '../../src/demo/uuidv7';
import { dsn, psql, stop, PG_APP_ROLE, PG_SUPERUSER } from '../../src/lib/postgres/node';
import type { ReconcileCase } from '../../src/contract/reconcile';
import type { RunRecord } from '../../src/contract/runbook/types';
import { awaitRecord, startRun } from '../../src/lib/runs/client';
import { partitionStandby, SERVICE, type FailoverEnv } from './failover-env';
import { waitFor } from './wait';

export const WEST = 'us-west-2';
export const EAST = 'us-east-1';

export interface Engineered {
  /** us-west-2's spend of acct-low (100): us-east-1 spends 80 too, so the union overdraws. */
  overdraft: string;
  /** Same id in both regions, amounts 500 and 700. */
  sameId: string;
  /** Same id and payload in both regions (a client's retry). */
  duplicate: string;
  highValue: string;
  external: string;
  /** Lost in us-west-2; us-east-1 has another transaction holding one of its idempotency keys. */
  collision: string;
  /** us-east-1's transaction holding that key. */
  collider: string;
  /** Began five minutes before the divergence and committed after it: outside the first window, found by verify. */
  longRunning: string;
  /** Loan transactions in us-west-2: moved forward (X1), moved twice while us-east-1 moved it once (X2), cancelled (X3), advanced while us-east-1 deleted it (X4). */
  loans: Record<'X1' | 'X2a' | 'X2b' | 'X3' | 'X4', string>;
}

/** Each engineered conflict became the case a person must decide; the client's retry none. */
export function expectEngineeredCases(e: Engineered, cases: ReconcileCase[]): void {
  const kindOf = (txn: string) => cases.find((c) => c.txnIds.includes(txn))?.kind;
  expect({
    overdraft: kindOf(e.overdraft),
    sameId: kindOf(e.sameId),
    highValue: kindOf(e.highValue),
    external: kindOf(e.external),
    collision: kindOf(e.collision),
    X3: kindOf(e.loans.X3),
    X4: kindOf(e.loans.X4),
    duplicate: kindOf(e.duplicate),
  }).toStrictEqual({
    overdraft: 'overdraft',
    sameId: 'same-id-different-payload',
    highValue: 'high-value',
    external: 'external-effect',
    collision: 'unique-key-collision',
    X3: 'conflicting-state',
    X4: 'update-delete',
    duplicate: undefined,
  });
}

export interface DivergenceRun {
  load: WriteLoad;
  failover: RunRecord;
  engineered?: Engineered;
  /** Every transaction a client got a COMMIT for, in either region, and where. */
  acked(): { id: string; region: string }[];
  /** When replication was cut (the last moment the standby had everything) and when the primary died. */
  cutAt: number;
  killedAt: number;
}

/** What the SQL helpers below need of an env: the PostgreSQL node of each region. */
type Nodes = Pick<FailoverEnv, 'nodes'>;

export function pgClient(fe: Nodes, region: string, user = PG_SUPERUSER): PgClient {
  const c = new PgClient({ connectionString: dsn(fe.nodes[region]!, user) });
  c.on('error', () => undefined);
  return c;
}

export async function sql<T extends Record<string, unknown>>(
  fe: Nodes,
  region: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = pgClient(fe, region);
  await c.connect();
  try {
    return (await c.query<T>(text, params)).rows;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The ledger's reconcile block (with its loans) for this env's service. */
export function useDemoReconcileConfig(fe: FailoverEnv): void {
  // The workers were built on this very config object and read the block when they run.
  // A short margin: these transactions last milliseconds, and the window then leaves most of the table out.
  (fe.config.services[0] as { reconcile?: ReconcileConfig }).reconcile = ReconcileConfig.parse({
    ...DEMO_RECONCILE,
    windowMarginSeconds: 1,
  });
}

async function caughtUp(fe: FailoverEnv): Promise<void> {
  const lsn = (await sql<{ l: string }>(fe, WEST, 'SELECT pg_current_wal_lsn()::text AS l'))[0]!.l;
  await waitFor(
    'us-east-1 to replay us-west-2',
    async () =>
      (await sql<{ ok: boolean }>(fe, EAST, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]))[0]!.ok,
  );
}

async function withApp<T>(fe: FailoverEnv, region: string, fn: (c: ClientBase) => Promise<T>): Promise<T> {
  const c = pgClient(fe, region, PG_APP_ROLE);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

const transfer = (from: string, to: string, amount: number, id = uuidv7()): Transfer => ({ id, from, to, amount });

export interface DivergenceOptions {
  engineered: boolean;
  clients?: number;
  lostMs?: number;
  /** More writes of the test's own in us-west-2 once replication is cut, before the region dies (acknowledged ids returned). */
  whilePartitioned?: () => Promise<{ id: string; region: string }[]>;
}

export async function makeDivergence(fe: FailoverEnv, opts: DivergenceOptions): Promise<DivergenceRun> {
  useDemoReconcileConfig(fe);
  const service = fe.config.services[0]!;
  await ensureLedger(fe.nodes[WEST]!, PG_APP_ROLE);
  await psql(
    fe.pg.bin,
    fe.nodes[WEST]!,
    `INSERT INTO accounts (id) VALUES ('acct-low') ON CONFLICT DO NOTHING;
    INSERT INTO loans (id, status) VALUES ('L-X1', 'PENDING'), ('L-X2', 'PENDING'), ('L-X3', 'PENDING'), ('L-X4', 'PENDING') ON CONFLICT DO NOTHING;
    GRANT DELETE ON loans TO ${PG_APP_ROLE};`,
  );
  const extra: { id: string; region: string }[] = [];
  const book = async (region: string, t: Transfer) => {
    const at = await withApp(fe, region, (c) => bookTransfer(c, t));
    extra.push({ id: t.id, region: at });
    return t.id;
  };
  await book(WEST, transfer('ext:funding', 'acct-low', 100));
  await caughtUp(fe);

  const load = startWriteLoad(fe.config, service, { clients: opts.clients ?? 3, loanMoves: 0.1, retryPauseMs: 20 });
  expect(await load.waitForAck(WEST, 0, 15_000), 'the load commits in us-west-2').toBeTruthy();
  await new Promise((r) => setTimeout(r, 3_000));

  // Replication falls behind: from here us-west-2 acknowledges writes us-east-1 never gets.
  const cutAt = Date.now();
  await partitionStandby(fe, EAST);
  let engineered: Engineered | undefined;
  if (opts.engineered) {
    const loan = async (id: string, l: string) => {
      const at = await withApp(fe, WEST, (c) => advanceLoan(c, id, l));
      extra.push({ id, region: at! });
      return id;
    };
    const sameId = uuidv7();
    const duplicate = uuidv7();
    const collision = uuidv7();
    const cancel = uuidv7();
    const longRunning = uuidv7(Date.now() - 300_000);
    await withApp(fe, WEST, async (c) => {
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO journal (id, origin_region, committed_at, keys, payload_hash) VALUES ($1, current_setting('cluster_name'), now() - interval '5 minutes', ARRAY['acct-014', 'acct-015'], 'long-running')`,
        [longRunning],
      );
      await c.query(
        `INSERT INTO ledger_entries (idempotency_key, account, amount, txn_id, created_at) VALUES ($1, 'acct-014', -9, $3, now() - interval '5 minutes'), ($2, 'acct-015', 9, $3, now() - interval '5 minutes')`,
        [uuidFromName(`${longRunning}:debit`), uuidFromName(`${longRunning}:credit`), longRunning],
      );
      await c.query(`UPDATE accounts SET balance = balance - 9 WHERE id = 'acct-014'`);
      await c.query(`UPDATE accounts SET balance = balance + 9 WHERE id = 'acct-015'`);
      await c.query('COMMIT');
    });
    extra.push({ id: longRunning, region: WEST });
    engineered = {
      longRunning,
      overdraft: await book(WEST, transfer('acct-low', 'acct-001', 80)),
      sameId: await book(WEST, transfer('acct-003', 'acct-004', 500, sameId)),
      duplicate: await book(WEST, transfer('acct-005', 'acct-006', 42, duplicate)),
      highValue: await book(WEST, transfer('acct-007', 'acct-008', 50_000)),
      external: await book(WEST, transfer('acct-009', 'ext:payouts', 300)),
      collision: await book(WEST, transfer('acct-010', 'acct-011', 77, collision)),
      collider: randomUUID(),
      loans: {
        X1: await loan(uuidv7(), 'L-X1'),
        X2a: await loan(uuidv7(), 'L-X2'),
        X2b: await loan(uuidv7(), 'L-X2'),
        X3: await withApp(fe, WEST, async (c) => {
          await c.query('BEGIN');
          await c.query(
            `INSERT INTO journal (id, origin_region, keys, payload_hash) VALUES ($1, current_setting('cluster_name'), ARRAY['loan:L-X3'], 'cancel')`,
            [cancel],
          );
          await c.query(`UPDATE loans SET status = 'CANCELLED', version = version + 1 WHERE id = 'L-X3'`);
          await c.query('COMMIT');
          extra.push({ id: cancel, region: WEST });
          return cancel;
        }),
        X4: await loan(uuidv7(), 'L-X4'),
      },
    };
  }
  if (opts.whilePartitioned) extra.push(...(await opts.whilePartitioned()));
  await new Promise((r) => setTimeout(r, opts.lostMs ?? 800));

  // The region fails mid-load: its worker first (regionshift cannot fence it), while its database,
  // cut off from the standby, keeps acknowledging the clients that still resolve to it until
  // traffic moves; then the database dies too, without a shutdown checkpoint. Both regions
  // accept writes around the failover.
  const killedAt = Date.now();
  await fe.stopRegion(WEST);
  const started = await startRun(fe.client, fe.input({ target: EAST, mode: 'unplanned', triggeredAt: killedAt }));
  const failover = await awaitRecord(fe.client, started.workflowId, started.runId);
  expect(failover.status, failover.error).toBe('succeeded');
  expect(
    await load.waitForAck(EAST, killedAt, 20_000),
    'the load commits in us-east-1 after the failover',
  ).toBeTruthy();
  await stop(fe.pg.bin, fe.nodes[WEST]!, 'immediate');

  if (engineered) {
    const e = engineered;
    await book(EAST, transfer('acct-low', 'acct-002', 80));
    await book(EAST, transfer('acct-003', 'acct-004', 700, e.sameId));
    await book(EAST, transfer('acct-005', 'acct-006', 42, e.duplicate));
    await withApp(fe, EAST, async (c) => {
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO journal (id, origin_region, keys, payload_hash) VALUES ($1, current_setting('cluster_name'), ARRAY['acct-012', 'acct-013'], 'collider')`,
        [e.collider],
      );
      await c.query(
        'INSERT INTO ledger_entries (idempotency_key, account, amount, txn_id) VALUES ($1, $2, -5, $4), ($3, $5, 5, $4)',
        [
          uuidFromName(`${e.collision}:debit`),
          'acct-012',
          uuidFromName(`${e.collider}:credit`),
          e.collider,
          'acct-013',
        ],
      );
      await c.query(`UPDATE accounts SET balance = balance - 5 WHERE id = 'acct-012'`);
      await c.query(`UPDATE accounts SET balance = balance + 5 WHERE id = 'acct-013'`);
      await c.query('COMMIT');
    });
    extra.push({ id: e.collider, region: EAST });
    for (const l of ['L-X2', 'L-X3']) {
      const id = uuidv7();
      await withApp(fe, EAST, (c) => advanceLoan(c, id, l));
      extra.push({ id, region: EAST });
    }
    await sql(fe, EAST, `DELETE FROM loans WHERE id = 'L-X4'`);
  }
  await new Promise((r) => setTimeout(r, 800));
  // The old region's worker comes back; its database stays down until reconciliation starts it read-only.
  await fe.startRegion(WEST);
  return {
    load,
    failover,
    engineered,
    cutAt,
    killedAt,
    acked: () => [...load.acks.map((a) => ({ id: a.id, region: a.region })), ...extra],
  };
}

/** The ids among `ids` that the region's journal holds, with how many entries each has. */
export async function journalHas(fe: Nodes, region: string, ids: string[]): Promise<Map<string, number>> {
  const rows = await sql<{ id: string; n: string }>(
    fe,
    region,
    `SELECT j.id::text AS id, count(e.txn_id)::text AS n FROM journal j LEFT JOIN ledger_entries e ON e.txn_id = j.id WHERE j.id = ANY($1::uuid[]) GROUP BY j.id`,
    [ids],
  );
  return new Map(rows.map((r) => [r.id, Number(r.n)]));
}

/** Accounts whose cached balance is not the sum of their entries. */
export async function badBalances(fe: Nodes, region: string): Promise<string[]> {
  return (
    await sql<{ id: string }>(
      fe,
      region,
      `SELECT a.id FROM accounts a WHERE a.balance <> coalesce((SELECT sum(e.amount) FROM ledger_entries e WHERE e.account = a.id), 0)`,
    )
  ).map((r) => r.id);
}

export { SERVICE };
