// Verify's comparison of the mutable tables (the demo ledger's loans) outside the window, on real
// parts: the same divergence as test/reconcile.test.ts, plus loans of the test's own. Outside the
// window means rows whose key no journal row in the window names on either side; those must be
// identical, and a row changed behind the journal's back is found, shown with both versions and
// escalated. Rows the window names may rightly differ and are left to classify and apply. A
// second mutable table, with a bigint key and 100,000 rows, makes the bisection go a level deeper.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReconcileConfig } from '../src/lib/config/reconcile';
import { DEMO_RECONCILE, ensureLedger } from '../src/demo/ledger';
import { uuidv7 } from '../src/demo/uuidv7';
import { PG_APP_ROLE } from '../src/lib/postgres/node';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import type { RunRecord } from '../src/contract/runbook/types';
import type { ReconcileCase, VerifyMismatch } from '../src/contract/reconcile';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { buildFollowUpInput, listCases } from '../src/lib/runs/reconcile';
import { createFailoverEnv, type FailoverEnv } from './support/failover-env';
import { EAST, makeDivergence, pgClient, sql, WEST, type DivergenceRun } from './support/divergence';

let fe: FailoverEnv;
let d: DivergenceRun;
let first: RunRecord;
/** A loan move in us-west-2 that began five minutes before the divergence and committed after it. */
let longRunningLoanMove: string;
const LIMITS = 100_000;

async function reconcile(): Promise<RunRecord> {
  const input = await buildFollowUpInput(fe.client, fe.config, loadRunbook(builtinRunbookPath('reconcile')), {
    service: 'ledger',
    requestedBy: 'alice',
    trigger: 'test',
  });
  const started = await startRun(fe.client, input);
  return awaitRecord(fe.client, started.workflowId, started.runId);
}

/** The loan ids named by the region's journal rows committed from `from` on. */
async function namedLoans(region: string, from: string): Promise<Set<string>> {
  const rows = await sql<{ k: string }>(
    fe,
    region,
    `SELECT DISTINCT substr(k, 6) AS k FROM journal, unnest(keys) AS k WHERE committed_at >= $1::timestamptz AND k LIKE 'loan:%'`,
    [from],
  );
  return new Set(rows.map((r) => r.k));
}

async function loan(region: string, id: string): Promise<Record<string, unknown> | null> {
  return (
    (
      await sql<{ row: Record<string, unknown> }>(fe, region, 'SELECT to_jsonb(l) AS row FROM loans l WHERE id = $1', [
        id,
      ])
    )[0]?.row ?? null
  );
}

beforeAll(async () => {
  fe = await createFailoverEnv({
    approval: { planned: 'none', unplanned: 'none' },
    allowDataLoss: true,
    rpoBudgetSeconds: 600,
  });
  // Loans no load touches (it moves L-0001…L-1000): L-V1 is moved by the long-running
  // transaction below, L-V2 is changed behind the journal's back after reconciliation.
  await ensureLedger(fe.nodes[WEST]!, PG_APP_ROLE);
  await sql(
    fe,
    WEST,
    `INSERT INTO loans (id, status) VALUES ('L-V1', 'PENDING'), ('L-V2', 'PENDING') ON CONFLICT DO NOTHING`,
  );
  await sql(
    fe,
    WEST,
    `CREATE TABLE limits (id bigint PRIMARY KEY, status text NOT NULL, version int NOT NULL DEFAULT 1);
    INSERT INTO limits (id, status) SELECT g, 'OPEN' FROM generate_series(1, ${LIMITS}) AS g`,
  );
  d = await makeDivergence(fe, {
    engineered: true,
    whilePartitioned: async () => {
      longRunningLoanMove = uuidv7(Date.now() - 300_000);
      const c = pgClient(fe, WEST, PG_APP_ROLE);
      await c.connect();
      try {
        await c.query('BEGIN');
        await c.query(
          `INSERT INTO journal (id, origin_region, committed_at, keys, payload_hash) VALUES ($1, current_setting('cluster_name'), now() - interval '5 minutes', ARRAY['loan:L-V1'], 'long-running-loan')`,
          [longRunningLoanMove],
        );
        await c.query(
          `UPDATE loans SET status = 'APPROVED', version = version + 1, updated_at = now() WHERE id = 'L-V1'`,
        );
        await c.query('COMMIT');
      } finally {
        await c.end().catch(() => undefined);
      }
      return [{ id: longRunningLoanMove, region: WEST }];
    },
  });
  // makeDivergence set the demo ledger's block; the workers read the config object when they run.
  (fe.config.services[0] as { reconcile?: ReconcileConfig }).reconcile = ReconcileConfig.parse({
    ...DEMO_RECONCILE,
    windowMarginSeconds: 1,
    mutable: [
      ...DEMO_RECONCILE.mutable,
      { table: 'limits', key: 'id', keyPrefix: 'limit:', states: ['OPEN', 'FROZEN', 'CLOSED'] },
    ],
  });
  // Reconciliation runs while the new region keeps moving loans: verify must read its window keys
  // and its rows in one snapshot, or a loan moved in between looks like a difference.
  first = await reconcile();
  await d.load.stop();
}, 240_000);

afterAll(async () => {
  await d?.load.stop();
  await fe?.teardown();
});

describe('verify compares the mutable tables outside the window', () => {
  it('finds them identical after reconciliation, and says how many rows, ranges and window keys', async () => {
    expect(first.status, first.error).toBe('succeeded');
    const v = first.reconciliation!.verify!;
    expect(v.ok, JSON.stringify(v.mismatches)).toBe(true);
    expect(v.mismatches).toEqual([]);
    expect(v.tables.map((t) => t.table)).toEqual(['journal', 'ledger_entries', 'loans', 'limits']);
    // Nothing in the window names a limit: all of them compared, in one level of 16 buckets.
    expect(v.tables.find((t) => t.table === 'limits')).toMatchObject({
      rows: LIMITS,
      excluded: 0,
      ranges: 16,
      rowsFetched: 0,
      differences: 0,
    });
    const loans = v.tables.find((t) => t.table === 'loans')!;

    // The window's keys are left out: at least every loan the old side moved in the window, at
    // most those plus every loan the new side has moved since the window's start (up to now).
    const oldNamed = await namedLoans(WEST, v.windowFrom);
    const newNamedNow = await namedLoans(EAST, v.windowFrom);
    const union = new Set([...oldNamed, ...newNamedNow]);
    expect(oldNamed.has('L-V1'), 'the widened window takes in the long-running move').toBe(true);
    expect(loans.excluded).toBeGreaterThanOrEqual(oldNamed.size);
    expect(loans.excluded).toBeLessThanOrEqual(union.size);
    const westLoans = (await sql<{ id: string }>(fe, WEST, 'SELECT id FROM loans')).map((r) => r.id);
    expect(loans.rows).toBeLessThanOrEqual(westLoans.filter((id) => !oldNamed.has(id)).length);
    expect(loans.rows).toBeGreaterThanOrEqual(westLoans.filter((id) => !union.has(id)).length);
    // Equal: one level of 16 bucket checksums per side, no row fetched.
    expect(loans).toMatchObject({ ranges: 16, rowsFetched: 0, differences: 0 });

    const detail = first.steps.find((s) => s.id === 'verify')!.detail!;
    expect(detail).toMatch(
      new RegExp(`loans ${loans.rows} rows \\(${loans.excluded} keys in the window left out\\), 16 ranges, 0 fetched`),
    );
  });

  it('widens the window for a loan moved by a transaction that began before it, instead of escalating', async () => {
    const rep = first.reconciliation!.report!;
    // Pass 1's verify saw the long-running move's journal row just before the window and L-V1
    // differing; the journal row names loan:L-V1, so widening explains both.
    expect(rep.passes).toBe(2);
    expect(first.steps.find((s) => s.id === 'verify')!.detail).toMatch(
      /widened to .*pass 2: 2 more re-applied.*no difference outside the window/,
    );
    expect(
      rep.audit.some((a) => /verify found 5 difference\(s\) just before the window: widening/.test(a.what)),
      JSON.stringify(rep.audit),
    ).toBe(true);
    expect(await loan(EAST, 'L-V1')).toMatchObject({ status: 'APPROVED', version: 2 });
    const present = await sql<{ n: string }>(fe, EAST, 'SELECT count(*) AS n FROM journal WHERE id = $1', [
      longRunningLoanMove,
    ]);
    expect(present[0]!.n).toBe('1');
    const cases = await listCases(fe.client, fe.config, { service: 'ledger', status: 'all' });
    expect(cases.filter((c) => c.kind === 'verify-mismatch')).toEqual([]);
  });

  it('does not report loans the window touched that rightly differ', async () => {
    // L-X3: cancelled in us-west-2, moved forward in us-east-1 (a conflicting-state case);
    // L-X4: moved in us-west-2, deleted in us-east-1 (an update-delete case).
    const x3 = [await loan(WEST, 'L-X3'), await loan(EAST, 'L-X3')];
    expect(x3[0]).toMatchObject({ status: 'CANCELLED' });
    expect(x3[1]).toMatchObject({ status: 'APPROVED' });
    expect(await loan(WEST, 'L-X4')).toMatchObject({ status: 'APPROVED' });
    expect(await loan(EAST, 'L-X4')).toBeNull();
    const v = first.reconciliation!.verify!;
    expect(v.ok).toBe(true);
    const named = await namedLoans(WEST, v.windowFrom);
    expect(named.has('L-X3') && named.has('L-X4')).toBe(true);
  });

  it('finds a loan changed outside the window on one side, shows both versions, and escalates it as a case', async () => {
    // Nothing in either journal names L-V2: the change below is behind the journal's back.
    for (const region of [WEST, EAST]) {
      expect(await sql(fe, region, `SELECT id FROM journal WHERE 'loan:L-V2' = ANY(keys)`), region).toEqual([]);
    }
    const before = await loan(EAST, 'L-V2');
    expect(before).toMatchObject({ status: 'PENDING', version: 1 });
    await sql(fe, EAST, `UPDATE loans SET status = 'DISBURSED', version = version + 2 WHERE id = 'L-V2'`);
    await sql(fe, EAST, `INSERT INTO loans (id, status) VALUES ('L-V9', 'APPROVED')`);
    await sql(fe, EAST, `UPDATE limits SET status = 'FROZEN', version = 2 WHERE id = 77777`);

    const again = await reconcile();
    expect(again.status, again.error).toBe('succeeded');
    const v = again.reconciliation!.verify!;
    expect(v.ok).toBe(false);
    // A mutable row has no commit time and nothing in the journal explains it: no widening.
    expect(v.widenTo).toBeUndefined();
    expect(again.reconciliation!.report!.passes).toBe(2);
    const byKey = Object.fromEntries(v.mismatches.map((m) => [m.key, m])) as Record<string, VerifyMismatch>;
    expect(Object.keys(byKey).sort()).toEqual(['77777', 'L-V2', 'L-V9']);
    expect(byKey['L-V2']).toMatchObject({
      table: 'loans',
      side: 'different',
      oldRow: { id: 'L-V2', status: 'PENDING', version: 1 },
      newRow: { id: 'L-V2', status: 'DISBURSED', version: 3 },
    });
    expect(byKey['L-V9']).toMatchObject({
      table: 'loans',
      side: 'only-new',
      oldRow: null,
      newRow: { id: 'L-V9', status: 'APPROVED', version: 1 },
    });
    expect(byKey['77777']).toMatchObject({
      table: 'limits',
      side: 'different',
      oldRow: { id: 77777, status: 'OPEN', version: 1 },
      newRow: { id: 77777, status: 'FROZEN', version: 2 },
    });
    expect(v.tables.map((t) => [t.table, t.differences])).toEqual([
      ['journal', 0],
      ['ledger_entries', 0],
      ['loans', 2],
      ['limits', 1],
    ]);
    // 100,000 limits: 16 buckets of ~6,250, too many to fetch; the differing one split into 16
    // of ~390, and only that one fetched from each side.
    const limits = v.tables.find((t) => t.table === 'limits')!;
    expect(limits.ranges).toBe(32);
    expect(limits.rowsFetched).toBeGreaterThan(0);
    expect(limits.rowsFetched).toBeLessThan((2 * 2 * LIMITS) / 256);
    expect(again.steps.find((s) => s.id === 'verify')!.detail).toContain(
      `DIFFERENCES outside the window: 3 row(s) (loans 2, limits 1), 0 balance(s); escalated as case ${v.escalatedCase}`,
    );
    expect(again.reconciliation!.report!.verify).toMatchObject({
      ok: false,
      differences: 3,
      escalatedCase: v.escalatedCase,
    });

    const cases: ReconcileCase[] = await listCases(fe.client, fe.config, { service: 'ledger', status: 'open' });
    const c = cases.find((x) => x.id === v.escalatedCase);
    expect(c, cases.map((x) => `${x.id} ${x.kind}`).join(', ')).toBeDefined();
    expect(c!.kind).toBe('verify-mismatch');
    expect(c!.summary).toContain('differ: 3 row(s) (loans 2, limits 1)');
    const oldRows = (c!.oldVersion as { rows: VerifyMismatch[] }).rows;
    const newRows = (c!.newVersion as { rows: VerifyMismatch[] }).rows;
    expect(oldRows.map((m) => m.key).sort()).toEqual(['77777', 'L-V2']);
    expect(newRows.map((m) => m.key).sort()).toEqual(['77777', 'L-V2', 'L-V9']);
    expect(oldRows.find((m) => m.key === 'L-V2')).toMatchObject({
      oldRow: { status: 'PENDING' },
      newRow: { status: 'DISBURSED' },
    });
  });

  it('names the table or column when the config names one the schema lacks', async () => {
    const svc = fe.config.services[0] as { reconcile?: ReconcileConfig };
    const saved = svc.reconcile!;
    const withLoans = (over: Record<string, unknown>) =>
      ReconcileConfig.parse({ ...saved, mutable: [{ ...saved.mutable[0], ...over }, saved.mutable[1]] });
    try {
      svc.reconcile = withLoans({ table: 'loan_states' });
      const noTable = await reconcile();
      expect(noTable.status).toBe('failed');
      expect(noTable.steps.find((s) => s.id === 'verify')!.status).toBe('failed');
      expect(noTable.error).toContain(
        'services[ledger].reconcile.mutable[0].table: table loan_states does not exist in ledger',
      );

      svc.reconcile = withLoans({ key: 'loan_id' });
      const noColumn = await reconcile();
      expect(noColumn.status).toBe('failed');
      expect(noColumn.error).toContain(
        'services[ledger].reconcile.mutable[0].key: table loans has no column loan_id in ledger',
      );
      expect(noColumn.error).toContain('its columns: id, status, version, updated_at');
    } finally {
      svc.reconcile = saved;
    }
  });
});
