// reconcile.apply: one transaction on the new primary that re-inserts the lost transactions
// classification staged (original ids and times, provenance marked), drops exact duplicates,
// moves mutable state forward, moves the touched balances by what was inserted, opens the cases,
// and commits only if every invariant holds. The run row is locked first and marked applied in
// the same transaction: a retry after a crash at any point, or a second reconciliation of the
// same failover, finds it applied and books nothing twice.
import { performance } from 'node:perf_hooks';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import type { ReconcileConfig } from '../../src/lib/config/reconcile';
import type { Config } from '../../src/lib/config/schema';
import type { ApplyInput, ApplyResult, CaseKind } from '../../src/contract/reconcile';
import { bookStaged, checkInvariants, lockedBalances, moveStates } from './book';
import { laps, rcConfig, rcNode, ReconcileFailure, requireWritablePrimary, withNode } from './db';
import { overdraftCase, splitOverdrafts, type CaseDraft, type StateMove, type TxnToApply } from './rules';
import { appendAudit, ensureStore } from './store';

export async function insertCases(
  c: Client,
  service: string,
  reconciliationId: string,
  cases: CaseDraft[],
): Promise<number> {
  if (cases.length === 0) return 0;
  const res = await c.query(
    `INSERT INTO regionshift.reconcile_cases (id, reconciliation_id, service, kind, txn_ids, key, summary, old_version, new_version, proposals)
     SELECT s.id, $1, $2, s.kind, ARRAY(SELECT jsonb_array_elements_text(s.txns))::uuid[], s.key, s.summary, s.oldv, s.newv, s.props
       FROM unnest($3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[], $8::jsonb[], $9::jsonb[], $10::jsonb[])
            AS s(id, kind, txns, key, summary, oldv, newv, props)
     ON CONFLICT (id) DO NOTHING`,
    [
      reconciliationId,
      service,
      cases.map((k) => k.id),
      cases.map((k) => k.kind),
      cases.map((k) => JSON.stringify(k.txnIds)),
      cases.map((k) => k.key ?? null),
      cases.map((k) => k.summary),
      cases.map((k) => JSON.stringify(k.oldVersion)),
      cases.map((k) => JSON.stringify(k.newVersion)),
      cases.map((k) => JSON.stringify(k.proposals)),
    ],
  );
  return res.rowCount ?? 0;
}

async function applyPass(
  c: Client,
  cfg: ReconcileConfig,
  region: string,
  input: ApplyInput,
  t0: number,
): Promise<ApplyResult> {
  const { lap, phases } = laps();
  const run = (
    await c.query<{ pass: number; applied_pass: number; applied: Record<string, ApplyResult>; old_region: string }>(
      'SELECT pass, applied_pass, applied, old_region FROM regionshift.reconcile_runs WHERE id = $1 FOR UPDATE',
      [input.reconciliationId],
    )
  ).rows[0];
  if (!run || run.pass < input.pass) {
    throw ApplicationFailure.nonRetryable(
      `reconciliation ${input.reconciliationId} has no classified pass ${input.pass}: classify first`,
      ReconcileFailure.Stale,
    );
  }
  if (run.applied_pass >= input.pass) {
    await c.query('ROLLBACK');
    const stored = run.applied[String(input.pass)]!;
    return { ...stored, alreadyApplied: true, ms: Math.round(performance.now() - t0) };
  }
  // What the overdraft decision needs of each lost transaction (its deltas), not its rows: those
  // are booked from the staged items inside the database.
  const items = (
    await c.query<{ kind: string; subject: string; body: unknown }>(
      `SELECT kind, subject,
            CASE WHEN kind = 'apply' THEN jsonb_build_object('txnId', body->'txnId', 'committedAt', body->'committedAt', 'deltas', body->'deltas', 'entries', jsonb_array_length(body->'entries'))
                 ELSE body END AS body
       FROM regionshift.reconcile_items WHERE reconciliation_id = $1 AND pass = $2 ORDER BY seq`,
      [input.reconciliationId, input.pass],
    )
  ).rows;
  lap('readStaged');
  const candidates = items
    .filter((i) => i.kind === 'apply')
    .map((i) => {
      const b = i.body as { txnId: string; committedAt: string; deltas: Record<string, number>; entries: number };
      const txn: TxnToApply & { entryCount: number } = {
        txnId: b.txnId,
        committedAt: b.committedAt,
        deltas: b.deltas,
        journal: {},
        entries: [],
        entryCount: b.entries,
      };
      return txn;
    });
  const moves = items.filter((i) => i.kind === 'move').map((i) => i.body as StateMove);
  const cases = items.filter((i) => i.kind === 'case').map((i) => i.body as CaseDraft);
  const duplicates = items.filter((i) => i.kind === 'duplicate').length;

  // Overdrafts are decided on the balances as they are now, locked: both regions may have spent the same money.
  const accounts = [...new Set(candidates.flatMap((t) => Object.keys(t.deltas)))];
  const balances = await lockedBalances(c, cfg, accounts);
  lap('lockBalances');
  const { ok, overdrawn } = splitOverdrafts(cfg, candidates, balances);
  if (overdrawn.length > 0) {
    // The cases show the whole transaction: fetch the few that need it.
    const full = new Map(
      (
        await c.query<{ subject: string; body: TxnToApply }>(
          `SELECT subject, body FROM regionshift.reconcile_items WHERE reconciliation_id = $1 AND pass = $2 AND kind = 'apply' AND subject = ANY($3::text[])`,
          [input.reconciliationId, input.pass, overdrawn.map((o) => o.txn.txnId)],
        )
      ).rows.map((r) => [r.subject, r.body]),
    );
    for (const o of overdrawn)
      o.txn = { ...o.txn, journal: full.get(o.txn.txnId)!.journal, entries: full.get(o.txn.txnId)!.entries };
  }
  const allCases = [...cases, ...overdrawn.map((o) => overdraftCase(cfg, input.reconciliationId, run.old_region, o))];

  const booked = await bookStaged(
    c,
    cfg,
    {
      reconciliationId: input.reconciliationId,
      pass: input.pass,
      count: ok.length,
      except: overdrawn.map((o) => o.txn.txnId),
    },
    {
      sourceRegion: run.old_region,
      how: 're-applied: lost in the failover',
    },
    lap,
  );
  lap('bookProvenance');
  const stateMoves = await moveStates(c, cfg, moves);
  lap('stateMoves');
  const opened = await insertCases(
    c,
    (
      await c.query<{ s: string }>('SELECT service AS s FROM regionshift.reconcile_runs WHERE id = $1', [
        input.reconciliationId,
      ])
    ).rows[0]!.s,
    input.reconciliationId,
    allCases,
  );
  await checkInvariants(c, cfg, {
    txnIds: ok.map((t) => t.txnId),
    expectedEntries: ok.reduce((n, t) => n + t.entryCount, 0),
    debited: [
      ...new Set(
        ok.flatMap((t) =>
          Object.entries(t.deltas)
            .filter(([, d]) => d < 0)
            .map(([a]) => a),
        ),
      ),
    ],
    balancesAfter: booked.balancesAfter,
  });
  lap('casesAndInvariants');
  const byKind: Partial<Record<CaseKind, number>> = {};
  for (const k of allCases) byKind[k.kind] = (byKind[k.kind] ?? 0) + 1;
  const result: ApplyResult = {
    reconciliationId: input.reconciliationId,
    pass: input.pass,
    alreadyApplied: false,
    transactionsApplied: booked.journalInserted.length,
    entriesApplied: booked.entriesInserted,
    stateMoves,
    duplicatesDropped: duplicates,
    casesOpened: opened,
    casesByKind: byKind,
    accountsTouched: accounts.length,
    invariantsHeld: true,
    ms: 0,
    phases,
  };
  await c.query(
    `UPDATE regionshift.reconcile_runs SET applied_pass = $2::int, applied = applied || jsonb_build_object(($2::int)::text, $3::jsonb), applied_at = now() WHERE id = $1`,
    [input.reconciliationId, input.pass, JSON.stringify(result)],
  );
  await appendAudit(c, input.reconciliationId, {
    runId: input.workflowRunId,
    by: input.requestedBy,
    what: `pass ${input.pass} applied: ${result.transactionsApplied} transactions (${result.entriesApplied} entries) re-inserted, ${stateMoves} state moves, ${duplicates} duplicates dropped, ${opened} cases opened`,
  });
  await c.query('COMMIT');
  lap('commit');
  return { ...result, ms: Math.round(performance.now() - t0) };
}

export function createApply(config: Config, region: string) {
  return async function reconcileApply(input: ApplyInput): Promise<ApplyResult> {
    const t0 = performance.now();
    const cfg = rcConfig(config, input.service);
    const n = rcNode(config, input.service, region);
    return withNode(n, 'applying', async (c) => {
      await requireWritablePrimary(c, n, 'reconciliation');
      await ensureStore(c);
      await c.query('BEGIN');
      try {
        return await applyPass(c, cfg, region, input, t0);
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  };
}
