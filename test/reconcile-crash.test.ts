// A crash of the reconciling worker mid-apply: the new primary's worker runs as a process of its
// own and is SIGKILLed while its apply transaction is open (held up by a row lock the test holds,
// after it has inserted the lost transactions). The server rolls the transaction back; Temporal
// retries the activity on the restarted worker, which applies everything exactly once. Then a
// failback with cases still open goes ahead only with an override, and records it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import type { RunRecord } from '../src/contract/runbook/types';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { buildFollowUpInput, listCases } from '../src/lib/runs/reconcile';
import { createFailoverEnv, spawnRegionWorker, type FailoverEnv, type WorkerProcess } from './support/failover-env';
import {
  badBalances,
  EAST,
  journalHas,
  makeDivergence,
  pgClient,
  sql,
  WEST,
  type DivergenceRun,
} from './support/divergence';
import { waitFor } from './support/wait';

let fe: FailoverEnv;
let d: DivergenceRun;
let worker: WorkerProcess | undefined;

async function input(kind: 'reconcile' | 'failback', overrideReason?: string) {
  return buildFollowUpInput(fe.client, fe.config, loadRunbook(builtinRunbookPath(kind)), {
    service: 'ledger',
    requestedBy: 'alice',
    trigger: 'test',
    ...(overrideReason ? { overrideReason } : {}),
  });
}

const waiting = async (): Promise<number | false> => {
  const rows = await sql<{ pid: number }>(
    fe,
    EAST,
    `SELECT pid FROM pg_stat_activity WHERE application_name = 'regionshift' AND wait_event_type = 'Lock'`,
  );
  return rows[0]?.pid ?? false;
};

beforeAll(async () => {
  fe = await createFailoverEnv({
    approval: { planned: 'none', unplanned: 'none' },
    allowDataLoss: true,
    rpoBudgetSeconds: 600,
  });
  d = await makeDivergence(fe, { engineered: true });
  await d.load.stop();
}, 240_000);

afterAll(async () => {
  await worker?.kill();
  await d?.load.stop();
  await fe?.teardown();
});

describe('a worker crash in the middle of reconciliation', () => {
  let rec: RunRecord;

  it('rolls the half-done apply back and applies exactly once on the retry', async () => {
    // The application holds a loan the apply must move: apply waits for it inside its transaction.
    const holder = pgClient(fe, EAST);
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query(`SELECT * FROM loans WHERE id = 'L-X1' FOR UPDATE`);

    await fe.stopRegion(EAST);
    worker = await spawnRegionWorker(fe, EAST);
    // Without the failover's divergence time, the window is found from the data (walking back).
    const rcInput = await input('reconcile');
    delete rcInput.handoff!.divergence.at;
    const started = await startRun(fe.client, rcInput);
    const first = await waitFor('the apply transaction to wait on the held loan', waiting, 90_000, 100);
    // Its inserts are done but not committed.
    const inserted = await sql<{ n: string }>(
      fe,
      EAST,
      `SELECT count(*) AS n FROM pg_locks WHERE pid = $1 AND mode = 'RowExclusiveLock'`,
      [first],
    );
    expect(Number(inserted[0]!.n)).toBeGreaterThan(0);

    await worker.kill();
    worker = undefined;
    // The server notices the client is gone (client_connection_check_interval) and rolls back.
    await waitFor(
      "the dead worker's transaction to end",
      async () => (await sql(fe, EAST, 'SELECT 1 FROM pg_stat_activity WHERE pid = $1', [first])).length === 0,
      30_000,
    );
    const run = await sql<{ applied_pass: number }>(fe, EAST, 'SELECT applied_pass FROM regionshift.reconcile_runs');
    expect(run.map((r) => r.applied_pass)).toEqual([0]);
    expect(await sql(fe, EAST, 'SELECT 1 FROM regionshift.reconcile_provenance')).toEqual([]);

    await fe.startRegion(EAST);
    const second = await waitFor(
      'the retried apply to wait on the held loan',
      async () => {
        const pid = await waiting();
        return pid !== false && pid !== first ? pid : false;
      },
      90_000,
      200,
    );
    expect(second).not.toBe(first);
    await holder.query('COMMIT');
    await holder.end();

    rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status, rec.error).toBe('succeeded');
    // The history shows the apply activity ran more than once.
    const history = await fe.client.workflow.getHandle(started.workflowId, started.runId).fetchHistory();
    const scheduled = new Map<number, string>();
    const attempts: Record<string, number> = {};
    for (const e of history.events ?? []) {
      const s = e.activityTaskScheduledEventAttributes;
      if (s) scheduled.set(Number(e.eventId), s.activityType?.name ?? '');
      const st = e.activityTaskStartedEventAttributes;
      if (st) {
        const name = scheduled.get(Number(st.scheduledEventId)) ?? '';
        attempts[name] = Math.max(attempts[name] ?? 0, st.attempt ?? 1);
      }
    }
    expect(attempts.reconcileApply).toBeGreaterThanOrEqual(2);
    expect(rec.reconciliation!.classify!.divergence.basis).toContain('walking the old journal back');

    // Exactly once: every lost transaction that was not held back for a person is there once,
    // with its two entries; balances are the sum of entries; provenance counts each once.
    const cases = await listCases(fe.client, fe.config, { service: 'ledger' });
    const inCase = new Set(cases.flatMap((c) => c.txnIds));
    const lost = d
      .acked()
      .filter((a) => a.region === WEST && !inCase.has(a.id))
      .map((a) => a.id);
    const present = await journalHas(fe, EAST, lost);
    expect(lost.filter((id) => !present.has(id))).toEqual([]);
    expect([...present.values()].every((n) => n === 0 || n === 2)).toBe(true);
    expect(await badBalances(fe, EAST)).toEqual([]);
    const rep = rec.reconciliation!.report!;
    const prov = await sql<{ n: string }>(fe, EAST, 'SELECT count(*) AS n FROM regionshift.reconcile_provenance');
    expect(Number(prov[0]!.n)).toBe(rep.applied.transactions);
    // Walking back from the data took the long-running transaction in at once: one pass, and
    // every lost transaction applied except the overdraft held back.
    expect(rep.passes).toBe(1);
    expect(rep.applied.transactions).toBe(rec.reconciliation!.classify!.toApply - (rep.cases.byKind.overdraft ?? 0));
    const loan = await sql<{ status: string; version: number }>(
      fe,
      EAST,
      `SELECT status, version FROM loans WHERE id = 'L-X1'`,
    );
    expect(loan[0]).toEqual({ status: 'APPROVED', version: 2 });
  });

  it('failback with cases open goes ahead only with an override, which the run records', async () => {
    const open = await listCases(fe.client, fe.config, { service: 'ledger' });
    expect(open.length).toBeGreaterThan(0);
    const reason = 'test: the open cases are being settled with the customers offline';
    const started = await startRun(fe.client, await input('failback', reason));
    const fb = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(fb.status, fb.error).toBe('succeeded');
    expect(fb.failback!.override).toEqual({ by: 'alice', reason });
    expect(fb.failback!.check!.overridden.join(' ')).toContain(`${open.length} reconciliation case(s) open`);
    expect(fb.steps.find((s) => s.id === 'check-reconciliation')!.detail).toContain('OVERRIDDEN by alice');
    expect(fb.rpo).toMatchObject({ zeroLoss: true });
    expect(await fe.isWritable(WEST)).toBe(true);
    // The cases stay open: an override lets failback go, it decides nothing.
    expect((await listCases(fe.client, fe.config, { service: 'ledger' })).length).toBe(open.length);
  });
});
