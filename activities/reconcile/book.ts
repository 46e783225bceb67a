// Booking into the new primary, inside a transaction the caller holds: transactions (journal row
// and entries, inserted whole from the rows read on the old side, original ids and times kept),
// balances moved by exactly what was inserted (never copied from the other region), state moves
// that only apply if nobody changed the row since, provenance, and the invariant checks that
// decide whether the caller may commit. Shared by reconcile.apply and case resolution.
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import type { ReconcileConfig } from '../../src/lib/config/reconcile';
import type { ProposedTxn } from '../../src/contract/reconcile';
import { insertableColumns, probeRows, q, qTable, ReconcileFailure } from './db';
import type { StateMove } from './rules';

export interface BookedTxns {
  journalInserted: string[];
  entriesInserted: number;
  /** Net amount inserted per account. */
  deltas: Map<string, number>;
  /** The cached balance of each account moved, as the update left it (this transaction holds its lock). */
  balancesAfter: Map<string, number>;
}

/**
 * Inserts the transactions; a journal row or an entry already present (a retry, a duplicate) is
 * skipped, so booking twice books once. Compensating transactions (an id of their own) are
 * stamped with the booking time and region; re-applied ones keep the old side's.
 */
export async function bookTxns(
  c: Client,
  cfg: ReconcileConfig,
  region: string,
  txns: ProposedTxn[],
  provenance: { reconciliationId: string; sourceRegion: string; how: string; caseId?: string },
): Promise<BookedTxns> {
  const out: BookedTxns = { journalInserted: [], entriesInserted: 0, deltas: new Map(), balancesAfter: new Map() };
  if (txns.length === 0) return out;
  const j = cfg.journal;
  const e = cfg.entries;
  const now = (
    await c.query<{ now: string }>(`SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`)
  ).rows[0]!.now;
  const journals: Record<string, unknown>[] = [];
  const entries: Record<string, unknown>[] = [];
  for (const t of txns) {
    const own = t.journal[j.id] !== t.originalTxnId;
    journals.push(own ? { ...t.journal, [j.committedAt]: now, [j.origin]: region } : t.journal);
    for (const en of t.entries) entries.push(own && e.createdAt in en ? { ...en, [e.createdAt]: now } : en);
  }
  const jCols = await insertableColumns(c, j.table);
  const eCols = await insertableColumns(c, e.table);
  const jList = jCols.map(q).join(', ');
  const eList = eCols.map(q).join(', ');
  out.journalInserted = (
    await c.query<{ id: string }>(
      `INSERT INTO ${qTable(j.table)} (${jList}) SELECT ${jList} FROM jsonb_populate_recordset(NULL::${qTable(j.table)}, $1::jsonb)
     ON CONFLICT DO NOTHING RETURNING ${q(j.id)}::text AS id`,
      [JSON.stringify(journals)],
    )
  ).rows.map((r) => r.id);
  const deltas = (
    await c.query<{ account: string; delta: string; n: string }>(
      `WITH ins AS (
       INSERT INTO ${qTable(e.table)} (${eList}) SELECT ${eList} FROM jsonb_populate_recordset(NULL::${qTable(e.table)}, $1::jsonb)
       ON CONFLICT DO NOTHING RETURNING ${q(e.account)}::text AS account, ${q(e.amount)}::numeric AS amount)
     SELECT account, sum(amount)::text AS delta, count(*)::text AS n FROM ins GROUP BY account`,
      [JSON.stringify(entries)],
    )
  ).rows;
  for (const d of deltas) {
    out.deltas.set(d.account, Number(d.delta));
    out.entriesInserted += Number(d.n);
  }
  out.balancesAfter = await moveBalances(c, cfg, out.deltas);
  const inserted = new Set(out.journalInserted);
  const prov = txns.filter((t) => inserted.has(String(t.journal[j.id])));
  if (prov.length > 0) {
    await c.query(
      `INSERT INTO regionshift.reconcile_provenance (txn_id, reconciliation_id, original_txn_id, source_region, how, case_id)
       SELECT s.txn, $1, s.orig, $2, $3, $4 FROM unnest($5::uuid[], $6::uuid[]) AS s(txn, orig) ON CONFLICT (txn_id) DO NOTHING`,
      [
        provenance.reconciliationId,
        provenance.sourceRegion,
        provenance.how,
        provenance.caseId ?? null,
        prov.map((t) => String(t.journal[j.id])),
        prov.map((t) => t.originalTxnId),
      ],
    );
  }
  return out;
}

/**
 * apply's fast path: books the staged lost transactions straight from regionshift.reconcile_items
 * (already jsonb in the same database: nothing travels back to the worker). Re-applied
 * transactions keep every column the old side had; provenance names the source region.
 */
export async function bookStaged(
  c: Client,
  cfg: ReconcileConfig,
  staged: { reconciliationId: string; pass: number; count: number; except: string[] },
  provenance: { sourceRegion: string; how: string },
  lap: (phase: string) => void = () => undefined,
): Promise<BookedTxns> {
  const out: BookedTxns = { journalInserted: [], entriesInserted: 0, deltas: new Map(), balancesAfter: new Map() };
  if (staged.count === 0) return out;
  const j = cfg.journal;
  const e = cfg.entries;
  const jCols = await insertableColumns(c, j.table);
  const eCols = await insertableColumns(c, e.table);
  // The staged transactions less the few held back (overdrafts): an = ANY over the ten thousand
  // booked ids would cost the planner tens of milliseconds per statement, estimating it id by id.
  const items = `regionshift.reconcile_items i WHERE i.reconciliation_id = $1 AND i.pass = $2 AND i.kind = 'apply' AND NOT (i.subject = ANY($3::text[]))`;
  const params = [staged.reconciliationId, staged.pass, staged.except];
  out.journalInserted = (
    await c.query<{ id: string }>(
      `INSERT INTO ${qTable(j.table)} (${jCols.map(q).join(', ')})
     SELECT ${jCols.map((x) => `r.${q(x)}`).join(', ')}
       FROM (SELECT i.body FROM ${items}) s CROSS JOIN LATERAL jsonb_populate_record(NULL::${qTable(j.table)}, s.body->'journal') r
     ON CONFLICT DO NOTHING RETURNING ${q(j.id)}::text AS id`,
      params,
    )
  ).rows.map((r) => r.id);
  lap('bookJournal');
  // The entries and the cached balances they move in one statement: the per-account sums stay in
  // the server instead of travelling to the worker and back as twenty thousand-element arrays.
  // Accounts the balance table lacks come back without a balance and are created below.
  const b = cfg.balances;
  const move = b.balance
    ? `, u AS (UPDATE ${qTable(b.table)} a SET ${q(b.balance)} = a.${q(b.balance)} + d.delta FROM d
                WHERE a.${q(b.account)}::text = d.account AND NOT starts_with(d.account, $4::text)
                RETURNING a.${q(b.account)}::text AS account, a.${q(b.balance)}::text AS balance)
       SELECT d.account, d.delta::text AS delta, d.n::text AS n, u.balance FROM d LEFT JOIN u USING (account)`
    : `SELECT d.account, d.delta::text AS delta, d.n::text AS n, NULL::text AS balance FROM d`;
  const deltas = (
    await c.query<{ account: string; delta: string; n: string; balance: string | null }>(
      `WITH ins AS (
       INSERT INTO ${qTable(e.table)} (${eCols.map(q).join(', ')})
       SELECT ${eCols.map((x) => `r.${q(x)}`).join(', ')}
         FROM (SELECT i.body FROM ${items}) s CROSS JOIN LATERAL jsonb_array_elements(s.body->'entries') x(en)
              CROSS JOIN LATERAL jsonb_populate_record(NULL::${qTable(e.table)}, x.en) r
        -- In key order: the unique index's leaves are visited once each, in order, not in a
        -- random walk that reads some of them again after they left the buffer cache.
        ORDER BY r.${q(e.idempotencyKey)}
       ON CONFLICT DO NOTHING RETURNING ${q(e.account)}::text AS account, ${q(e.amount)}::numeric AS amount),
     d AS (SELECT account, sum(amount) AS delta, count(*) AS n FROM ins GROUP BY account)${move}`,
      b.balance ? [...params, cfg.externalAccountPrefix] : params,
    )
  ).rows;
  const unmoved = new Map<string, number>();
  for (const d of deltas) {
    out.deltas.set(d.account, Number(d.delta));
    out.entriesInserted += Number(d.n);
    if (d.balance !== null) out.balancesAfter.set(d.account, Number(d.balance));
    else if (b.balance) unmoved.set(d.account, Number(d.delta));
  }
  lap('bookEntries');
  // Left: external accounts (moveBalances skips them) and accounts the new side has never had.
  for (const [a, v] of await moveBalances(c, cfg, unmoved)) out.balancesAfter.set(a, v);
  lap('bookBalances');
  if (out.journalInserted.length > 0) {
    await c.query(
      `INSERT INTO regionshift.reconcile_provenance (txn_id, reconciliation_id, original_txn_id, source_region, how)
       SELECT s.txn, $1, s.txn, $2, $3 FROM unnest($4::uuid[]) AS s(txn) ON CONFLICT (txn_id) DO NOTHING`,
      [staged.reconciliationId, provenance.sourceRegion, provenance.how, out.journalInserted],
    );
  }
  return out;
}

/**
 * The cached balance moves by what was inserted (the entries stay the truth). Returns each moved
 * account's balance after the move, as the update wrote it.
 */
async function moveBalances(
  c: Client,
  cfg: ReconcileConfig,
  deltas: Map<string, number>,
): Promise<Map<string, number>> {
  const b = cfg.balances;
  const after = new Map<string, number>();
  const balance = b.balance;
  if (!balance || deltas.size === 0) return after;
  const accounts = [...deltas.keys()].filter((a) => !a.startsWith(cfg.externalAccountPrefix));
  if (accounts.length === 0) return after;
  const move = async (list: string[]) => {
    const { rows } = await c.query<{ id: string; balance: string }>(
      `UPDATE ${qTable(b.table)} a SET ${q(balance)} = a.${q(balance)} + d.delta
         FROM unnest($1::text[], $2::numeric[]) AS d(account, delta) WHERE a.${q(b.account)}::text = d.account
       RETURNING a.${q(b.account)}::text AS id, a.${q(balance)}::text AS balance`,
      [list, list.map((a) => deltas.get(a)!)],
    );
    for (const r of rows) after.set(r.id, Number(r.balance));
  };
  await move(accounts);
  // Accounts the new side has never had are created (at zero) and then moved. Only those: an
  // insert-or-skip of every touched account would look up each one's key once more.
  const missing = accounts.filter((a) => !after.has(a));
  if (missing.length > 0) {
    await c
      .query(`INSERT INTO ${qTable(b.table)} (${q(b.account)}) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [
        missing,
      ])
      .catch((err: Error) => {
        throw ApplicationFailure.nonRetryable(
          `creating missing accounts in ${b.table} failed (${err.message}); create them, then run reconcile again`,
          ReconcileFailure.Config,
        );
      });
    await move(missing);
  }
  return after;
}

/**
 * Balances of `accounts` as the new side has them now, locked until the transaction ends (the
 * application keeps writing; its own transfers wait for these rows rather than race them).
 */
export async function lockedBalances(
  c: Client,
  cfg: ReconcileConfig,
  accounts: string[],
): Promise<Map<string, number>> {
  const b = cfg.balances;
  const e = cfg.entries;
  const inLedger = [...new Set(accounts)].filter((a) => !a.startsWith(cfg.externalAccountPrefix)).sort();
  const out = new Map<string, number>();
  if (inLedger.length === 0) return out;
  if (b.balance) {
    const { rows } = await c.query<{ id: string; balance: string }>(
      `SELECT ${q(b.account)}::text AS id, ${q(b.balance)}::text AS balance FROM ${qTable(b.table)} WHERE ${q(b.account)}::text = ANY($1::text[]) ORDER BY ${q(b.account)} FOR UPDATE`,
      [inLedger],
    );
    for (const r of rows) out.set(r.id, Number(r.balance));
  } else {
    const { rows } = await c.query<{ id: string; balance: string }>(
      `SELECT ${q(e.account)}::text AS id, sum(${q(e.amount)})::text AS balance FROM ${qTable(e.table)} WHERE ${q(e.account)}::text = ANY($1::text[]) GROUP BY 1`,
      [inLedger],
    );
    for (const r of rows) out.set(r.id, Number(r.balance));
  }
  for (const a of inLedger) if (!out.has(a)) out.set(a, 0);
  return out;
}

/**
 * Applies state moves. Reconciliation's own (forward) moves are decided under the row lock: the
 * row moves only if the target is further along the declared order than its current state, so a
 * new-region write since classification is never undone. A person's move (a case's proposal)
 * applies only to the version they saw; a row changed since aborts the whole transaction.
 * Returns how many rows moved.
 */
export async function moveStates(c: Client, cfg: ReconcileConfig, moves: StateMove[]): Promise<number> {
  let n = 0;
  for (const m of moves) {
    const t = cfg.mutable.find((x) => x.table === m.table);
    if (!t)
      throw ApplicationFailure.nonRetryable(
        `state move on ${m.table}, which is not a mutable table of the reconcile config`,
        ReconcileFailure.Config,
      );
    const touch = t.updatedAt ? `, ${q(t.updatedAt)} = now()` : '';
    if (m.row) {
      const cols = await insertableColumns(c, t.table);
      const list = cols.map(q).join(', ');
      const res = await c.query(
        `INSERT INTO ${qTable(t.table)} (${list}) SELECT ${list} FROM jsonb_populate_record(NULL::${qTable(t.table)}, $1::jsonb) ON CONFLICT DO NOTHING`,
        [JSON.stringify(m.row)],
      );
      if (res.rowCount === 1) {
        n++;
        continue;
      }
      if (!m.forward)
        throw ApplicationFailure.nonRetryable(
          `${t.table} ${m.key} appeared in the new primary since the case was opened`,
          ReconcileFailure.Stale,
        );
    }
    if (m.status === undefined) continue;
    if (m.forward) {
      const res = await c.query(
        `UPDATE ${qTable(t.table)} SET ${q(t.status)} = $2, ${q(t.version)} = ${q(t.version)} + 1${touch}
          WHERE ${q(t.key)}::text = $1 AND array_position($3::text[], ${q(t.status)}::text) < array_position($3::text[], $2::text)`,
        [m.key, m.status, t.states],
      );
      n += res.rowCount ?? 0;
      continue;
    }
    const res = await c.query(
      `UPDATE ${qTable(t.table)} SET ${q(t.status)} = $2, ${q(t.version)} = ${q(t.version)} + 1${touch}
        WHERE ${q(t.key)}::text = $1 AND ${q(t.version)} = $3::int`,
      [m.key, m.status, m.expectVersion],
    );
    if (res.rowCount !== 1) {
      throw ApplicationFailure.nonRetryable(
        `${t.table} ${m.key} changed in the new primary since the case was opened (it was at version ${m.expectVersion})`,
        ReconcileFailure.Stale,
      );
    }
    n++;
  }
  return n;
}

/**
 * The invariants a commit needs: every booked transaction has all its entries (a leg that
 * collided would leave it half-booked), and no account that was debited ends below zero where
 * the config forbids it (except the ones a person accepted).
 */
export async function checkInvariants(
  c: Client,
  cfg: ReconcileConfig,
  booked: {
    txnIds: string[];
    expectedEntries: number;
    debited: string[];
    allowNegative?: string[];
    balancesAfter?: Map<string, number>;
  },
): Promise<void> {
  const e = cfg.entries;
  if (booked.txnIds.length > 0) {
    const n = Number(
      (
        await c.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${probeRows(e.table, e.txnId, '$1', 'uuid', '1 AS one')}`,
          [booked.txnIds],
        )
      ).rows[0]!.n,
    );
    if (n !== booked.expectedEntries) {
      throw ApplicationFailure.nonRetryable(
        `after booking, ${booked.txnIds.length} transactions hold ${n} entries instead of ${booked.expectedEntries}: an idempotency key was taken in the meantime; nothing was committed, classify again`,
        ReconcileFailure.Stale,
      );
    }
  }
  if (!cfg.balances.forbidNegative) return;
  const check = booked.debited.filter(
    (a) => !a.startsWith(cfg.externalAccountPrefix) && !(booked.allowNegative ?? []).includes(a),
  );
  if (check.length === 0) return;
  // The balances the booking's own update returned are final: this transaction holds their locks
  // until it ends. Only accounts it did not move are read again.
  const known = booked.balancesAfter ?? new Map<string, number>();
  const balances = new Map(check.filter((a) => known.has(a)).map((a) => [a, known.get(a)!]));
  const unknown = check.filter((a) => !known.has(a));
  if (unknown.length > 0) for (const [a, v] of await lockedBalances(c, cfg, unknown)) balances.set(a, v);
  const negative = [...balances].filter(([, v]) => v < 0);
  if (negative.length > 0) {
    throw ApplicationFailure.nonRetryable(
      `after booking, ${negative.map(([a, v]) => `${a} would be at ${v}`).join(', ')}: negative balances are forbidden; nothing was committed`,
      ReconcileFailure.Invariant,
    );
  }
}
