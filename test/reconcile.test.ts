// Reconciliation on real parts (Temporal dev server, a PostgreSQL pair, moto, one worker per
// region): the primary is killed during a write load after replication fell behind, the service
// fails over unplanned and keeps writing in the new region, then `reconcile` finds the lost and
// conflicting transactions, applies what is safe and opens cases for the rest; run twice, it
// changes nothing the second time; cases are listed and resolved through the CLI.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import type { RunRecord } from '../src/contract/runbook/types';
import type { ReconcileCase } from '../src/contract/reconcile';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { buildFollowUpInput, listCases } from '../src/lib/runs/reconcile';
import { createFailoverEnv, type FailoverEnv } from './support/failover-env';
import {
  badBalances,
  EAST,
  expectEngineeredCases,
  journalHas,
  makeDivergence,
  sql,
  WEST,
  type DivergenceRun,
} from './support/divergence';
import { runCli } from './support/stack-env';
import { sshKey } from './support/signing';

let fe: FailoverEnv;
let d: DivergenceRun;
let first: RunRecord;
let cases: ReconcileCase[];

async function reconcile(): Promise<RunRecord> {
  const input = await buildFollowUpInput(fe.client, fe.config, loadRunbook(builtinRunbookPath('reconcile')), {
    service: 'ledger',
    requestedBy: 'alice',
    trigger: 'test',
  });
  const started = await startRun(fe.client, input);
  return awaitRecord(fe.client, started.workflowId, started.runId);
}

beforeAll(async () => {
  fe = await createFailoverEnv({
    approval: { planned: 'none', unplanned: 'none' },
    allowDataLoss: true,
    rpoBudgetSeconds: 600,
    approvers: ['carol', 'dave'],
  });
  d = await makeDivergence(fe, { engineered: true });
  // Reconciliation runs while the new region keeps taking writes.
  first = await reconcile();
  await d.load.stop();
  cases = await listCases(fe.client, fe.config, { service: 'ledger', status: 'open' });
}, 240_000);

afterAll(async () => {
  await d?.load.stop();
  await fe?.teardown();
});

describe('reconcile after an unplanned failover', () => {
  it('runs every step, starting the dead old primary read-only on its own timeline', async () => {
    expect(first.status, first.error).toBe('succeeded');
    expect(first.kind).toBe('reconcile');
    expect(first.steps.map((s) => [s.id, s.status])).toEqual([
      ['preserve', 'done'],
      ['classify', 'done'],
      ['apply', 'done'],
      ['verify', 'done'],
      ['report', 'done'],
    ]);
    const p = first.reconciliation!.preserve!;
    expect(p).toMatchObject({ region: WEST, state: 'read-only-primary', started: true });
    const west = (
      await sql<{ rec: boolean; ro: string }>(
        fe,
        WEST,
        "SELECT pg_is_in_recovery() AS rec, current_setting('default_transaction_read_only') AS ro",
      )
    )[0]!;
    expect(west).toEqual({ rec: false, ro: 'on' });
    const c = first.reconciliation!.classify!;
    expect(c.divergence.newTimeline).toBeGreaterThan(c.divergence.oldTimeline!);
    expect(c.divergence.switchLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(c.divergence.basis).toContain('last commit the new primary replayed');
  });

  it('reads only the window, and classifies by id', async () => {
    const oldTotal = Number((await sql<{ n: string }>(fe, WEST, 'SELECT count(*) AS n FROM journal'))[0]!.n);
    const rep = first.reconciliation!.report!;
    const c = first.reconciliation!.classify!;
    expect(c.read.oldRows, 'the window, not the table').toBeLessThan(oldTotal);
    expect(rep.txn['only-old'], 'the writes us-west-2 acknowledged after replication was cut').toBeGreaterThan(10);
    expect(rep.txn['same-id-different-payload']).toBe(1);
    expect(rep.txn.identical).toBe(1);
    expect(rep.txn['only-new']).toBeGreaterThan(0);
    expect(rep.rows['state-forward']).toBeGreaterThanOrEqual(1);
    expect(rep.rows['update-update']).toBeGreaterThanOrEqual(1);
    expect(rep.rows['update-delete']).toBe(1);
    expect(rep.applied.transactions).toBeGreaterThan(0);
    expect(rep.applied.entries).toBeGreaterThan(0);
    expect(rep.applied.duplicatesDropped).toBe(1);
    // A transaction that began before the window and committed after the divergence: verify
    // found it just outside the window, which was widened once and reconciled again.
    expect(rep.passes).toBe(2);
    expect(first.steps.find((s) => s.id === 'verify')!.detail).toMatch(
      /widened to .*pass 2: 1 more re-applied.*no difference outside the window/,
    );
    expect((await journalHas(fe, EAST, [d.engineered!.longRunning])).get(d.engineered!.longRunning)).toBe(2);
    expect(rep.verify).toMatchObject({ ok: true, differences: 0, balanceMismatches: 0 });
  });

  it('puts the engineered conflicts in front of a person instead of merging them', () => {
    const e = d.engineered!;
    expectEngineeredCases(e, cases);
    const od = cases.find((c) => c.kind === 'overdraft')!;
    // Both versions, and proposals that book, never overwrite.
    expect(od.newVersion).toEqual({ account: 'acct-low', balance: 20 });
    expect(Object.keys(od.proposals).sort()).toEqual(['accept', 'compensate']);
    expect(od.proposals.compensate!.transactions).toHaveLength(2);
    const sid = cases.find((c) => c.kind === 'same-id-different-payload')!;
    expect(sid.oldVersion).toBeTruthy();
    expect(sid.newVersion).toBeTruthy();
    expect(sid.proposals.compensate!.description).toMatch(/acct-003 \+200, acct-004 -200/);
    expect(first.reconciliation!.report!.cases.open).toBe(cases.length);
  });

  it('leaves every acknowledged transaction present exactly once in the new primary, or in an open case', async () => {
    const acked = d.acked();
    const ids = [...new Set(acked.map((a) => a.id))];
    // Only the engineered same-id pair and the duplicate were acknowledged by both regions.
    expect(acked.length - ids.length).toBe(2);
    const present = await journalHas(fe, EAST, ids);
    const inCase = new Set(cases.flatMap((c) => c.txnIds));
    const missing = ids.filter((id) => !present.has(id) && !inCase.has(id));
    expect(missing, 'acknowledged, neither in us-east-1 nor in a case').toEqual([]);
    // Transfers carry exactly two entries (a re-applied one was not booked twice); loan moves none.
    const entries = [...present.values()];
    expect(entries.every((n) => n === 0 || n === 2)).toBe(true);
    const lostFromWest = acked.filter((a) => a.region === WEST && !inCase.has(a.id));
    expect(lostFromWest.every((a) => present.has(a.id))).toBe(true);
    // Re-applied rows keep their original region and time, and their provenance is recorded.
    const prov = await sql<{ n: string }>(fe, EAST, 'SELECT count(*) AS n FROM regionshift.reconcile_provenance');
    expect(Number(prov[0]!.n)).toBe(first.reconciliation!.report!.applied.transactions);
    const reapplied = await sql<{ origin: string }>(
      fe,
      EAST,
      'SELECT DISTINCT j.origin_region AS origin FROM journal j JOIN regionshift.reconcile_provenance p ON p.txn_id = j.id',
    );
    expect(reapplied.map((r) => r.origin)).toEqual([WEST]);
  });

  it('balances equal the sum of entries, none negative; loans moved forward along the declared order', async () => {
    expect(await badBalances(fe, EAST)).toEqual([]);
    const neg = await sql(fe, EAST, `SELECT id FROM accounts WHERE balance < 0`);
    expect(neg).toEqual([]);
    const loans = Object.fromEntries(
      (await sql<{ id: string; status: string }>(fe, EAST, `SELECT id, status FROM loans WHERE id LIKE 'L-X%'`)).map(
        (r) => [r.id, r.status],
      ),
    );
    expect(loans).toEqual({ 'L-X1': 'APPROVED', 'L-X2': 'DISBURSED', 'L-X3': 'APPROVED' });
  });

  it('a second reconciliation of the same failover gives the same result and books nothing', async () => {
    const count = async () =>
      (
        await sql<{ j: string; e: string }>(
          fe,
          EAST,
          'SELECT (SELECT count(*) FROM journal) AS j, (SELECT count(*) FROM ledger_entries) AS e',
        )
      )[0];
    const before = await count();
    const again = await reconcile();
    expect(again.status, again.error).toBe('succeeded');
    expect(again.reconciliation!.classify!.alreadyApplied).toBe(true);
    expect(again.reconciliation!.apply!.alreadyApplied).toBe(true);
    const a = again.reconciliation!.report!;
    const b = first.reconciliation!.report!;
    expect({ txn: a.txn, rows: a.rows, applied: a.applied, cases: a.cases.opened, open: a.cases.open }).toEqual({
      txn: b.txn,
      rows: b.rows,
      applied: b.applied,
      cases: b.cases.opened,
      open: b.cases.open,
    });
    expect(await count()).toEqual(before);
    expect(a.audit.length).toBeGreaterThan(b.audit.length);
  });

  it('cases are listed and resolved with the CLI; a decision is not taken back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regionshift-cases-'));
    const file = join(dir, 'regionshift.json');
    writeFileSync(file, JSON.stringify(fe.config));
    const env = { ...process.env, TEMPORAL_ADDRESS: fe.config.temporal.address, REGIONSHIFT_CONFIG: file };
    const list = await runCli(['cases', 'list', '--service', 'ledger', '--json'], env, 60_000);
    expect(list.code, list.stderr).toBe(0);
    const listed = (JSON.parse(list.stdout) as { cases: ReconcileCase[] }).cases;
    expect(listed.map((c) => c.id).sort()).toEqual(cases.map((c) => c.id).sort());

    const od = cases.find((c) => c.kind === 'overdraft')!;
    const res = await runCli(
      [
        'cases',
        'resolve',
        od.id,
        '--service',
        'ledger',
        '--by',
        'carol',
        '--key',
        sshKey('carol').privateKey,
        '--action',
        'compensate',
        '--note',
        'recover 60 from the customer',
      ],
      env,
      60_000,
    );
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    expect(res.stdout).toContain('compensate by carol');
    const low = await sql<{ balance: string }>(fe, EAST, `SELECT balance::text FROM accounts WHERE id = 'acct-low'`);
    expect(low[0]!.balance).toBe('0');
    expect(await badBalances(fe, EAST)).toEqual([]);
    expect((await journalHas(fe, EAST, [d.engineered!.overdraft])).get(d.engineered!.overdraft)).toBe(2);

    const again = await runCli(
      [
        'cases',
        'resolve',
        od.id,
        '--service',
        'ledger',
        '--by',
        'dave',
        '--key',
        sshKey('dave').privateKey,
        '--action',
        'reject',
      ],
      env,
      60_000,
    );
    expect(again.code, again.stdout).toBe(3);
    expect(again.stderr).toContain('already resolved with compensate by carol');
    const missing = await runCli(
      [
        'cases',
        'resolve',
        'od-nope',
        '--service',
        'ledger',
        '--by',
        'dave',
        '--key',
        sshKey('dave').privateKey,
        '--action',
        'reject',
      ],
      env,
      60_000,
    );
    expect(missing.code).toBe(2);
    const hv = cases.find((c) => c.kind === 'high-value')!;
    const wrong = await runCli(
      [
        'cases',
        'resolve',
        hv.id,
        '--service',
        'ledger',
        '--by',
        'dave',
        '--key',
        sshKey('dave').privateKey,
        '--action',
        'compensate',
      ],
      env,
      60_000,
    );
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain('offers accept, reject');
  });
});
