// reconcile.verify, off the critical path (apply has committed): outside the window both sides
// must hold exactly the same journal and entries. Compared by key-range bisection: each side
// computes (count, xor of 64-bit row hashes) per key range, in one pass per level, in parallel;
// only ranges that differ are split again, and only small differing ranges are fetched. Equal
// tables cost one scan per side and transfer a few numbers; the naive diff (naiveDiff, kept for
// the benchmark) ships every row's hash to the worker in key order.
import { performance } from 'node:perf_hooks';
import type { Client } from 'pg';
import type { ReconcileConfig } from '../../src/config/reconcile';
import type { Config } from '../../src/config/schema';
import type { TableVerify, VerifyInput, VerifyMismatch, VerifyResult } from '../../src/reconcile/types';
import { insertableColumns, q, qTable, rcConfig, rcNode, rcOldSide, requireWritablePrimary, withNode } from './db';
import { caseId, type CaseDraft, type TxnToApply } from './rules';
import { insertCases } from './apply';
import { appendAudit, ensureStore } from './store';

/** A table compared outside the window: uuid key, the column the window is on, the columns hashed. */
export interface VerifySpec {
  table: string;
  key: string;
  windowColumn: string;
  columns: string[];
}

const FANOUT = 16;
const LEAF_ROWS = 2_000;
const MAX_MISMATCHES = 1_000;

const U128 = (1n << 128n) - 1n;

function uuidToBig(u: string): bigint {
  return BigInt(`0x${u.replace(/-/g, '')}`);
}

function bigToUuid(b: bigint): string {
  const hex = (b > U128 ? U128 : b).toString(16).padStart(32, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function rowHash(spec: VerifySpec, alias = 't'): string {
  return `hashtextextended(ROW(${spec.columns.map((c) => `${alias}.${q(c)}`).join(', ')})::text, 0)`;
}

interface Bucket {
  n: number;
  x: string;
}

/** (count, xor) per sub-range of [lo, hi) split at `bounds`, one scan. */
async function buckets(c: Client, spec: VerifySpec, from: string, lo: string, hi: string | null, bounds: string[]): Promise<Bucket[]> {
  const k = `t.${q(spec.key)}`;
  const cases = bounds.map((_, i) => `WHEN ${k} < $${i + 4}::uuid THEN ${i}`).join(' ');
  const { rows } = await c.query<{ b: number; n: string; x: string }>(
    `SELECT CASE ${cases} ELSE ${bounds.length} END AS b, count(*)::text AS n, coalesce(bit_xor(${rowHash(spec)}), 0)::text AS x
       FROM ${qTable(spec.table)} t
      WHERE t.${q(spec.windowColumn)} < $1::timestamptz AND ${k} >= $2::uuid AND ($3::uuid IS NULL OR ${k} < $3::uuid)
      GROUP BY 1`,
    [from, lo, hi, ...bounds],
  );
  const out: Bucket[] = Array.from({ length: bounds.length + 1 }, () => ({ n: 0, x: '0' }));
  for (const r of rows) out[r.b] = { n: Number(r.n), x: r.x };
  return out;
}

async function leafRows(c: Client, spec: VerifySpec, from: string, lo: string, hi: string | null): Promise<Map<string, { h: string; at: string }>> {
  const k = `t.${q(spec.key)}`;
  const { rows } = await c.query<{ k: string; h: string; at: string }>(
    `SELECT ${k}::text AS k, ${rowHash(spec)}::text AS h, to_char(t.${q(spec.windowColumn)} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
       FROM ${qTable(spec.table)} t
      WHERE t.${q(spec.windowColumn)} < $1::timestamptz AND ${k} >= $2::uuid AND ($3::uuid IS NULL OR ${k} < $3::uuid)`,
    [from, lo, hi],
  );
  return new Map(rows.map((r) => [r.k, { h: r.h, at: r.at }]));
}

function diffRows(spec: VerifySpec, a: Map<string, { h: string; at: string }>, b: Map<string, { h: string; at: string }>, out: VerifyMismatch[]): number {
  let n = 0;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w) out.push({ table: spec.table, key: k, side: 'only-old', at: v.at });
    else if (w.h !== v.h) out.push({ table: spec.table, key: k, side: 'different', at: v.at });
    else continue;
    n++;
  }
  for (const [k, v] of b) {
    if (a.has(k)) continue;
    out.push({ table: spec.table, key: k, side: 'only-new', at: v.at });
    n++;
  }
  return n;
}

/**
 * Compares `spec` on both sides for rows before `from`. Ranges are [lo, hi) over the key; the
 * first range spans both sides' keys, so time-ordered keys (UUIDv7) split by time.
 */
export async function checksumDiff(oldC: Client, newC: Client, spec: VerifySpec, from: string): Promise<{ stats: TableVerify; mismatches: VerifyMismatch[] }> {
  const t0 = performance.now();
  const mismatches: VerifyMismatch[] = [];
  const stats: TableVerify = { table: spec.table, rows: 0, ranges: 0, rowsFetched: 0, differences: 0, ms: 0 };
  // uuid has no min()/max(); the key's index answers ORDER BY … LIMIT 1 at either end.
  const bound = async (c: Client, fn: 'min' | 'max') => (await c.query<{ v: string }>(
    `SELECT ${q(spec.key)}::text AS v FROM ${qTable(spec.table)} WHERE ${q(spec.windowColumn)} < $1::timestamptz ORDER BY ${q(spec.key)} ${fn === 'min' ? 'ASC' : 'DESC'} LIMIT 1`, [from],
  )).rows[0]?.v ?? null;
  const [oMin, nMin, oMax, nMax] = await Promise.all([bound(oldC, 'min'), bound(newC, 'min'), bound(oldC, 'max'), bound(newC, 'max')]);
  const mins = [oMin, nMin].filter((v): v is string => v !== null).map(uuidToBig);
  const maxs = [oMax, nMax].filter((v): v is string => v !== null).map(uuidToBig);
  if (mins.length === 0) return { stats: { ...stats, ms: Math.round(performance.now() - t0) }, mismatches };
  let level: { lo: bigint; hi: bigint; n: number }[] = [{ lo: mins.reduce((a, b) => (a < b ? a : b)), hi: maxs.reduce((a, b) => (a > b ? a : b)) + 1n, n: Infinity }];
  let first = true;
  while (level.length > 0 && mismatches.length < MAX_MISMATCHES) {
    const next: typeof level = [];
    for (const r of level) {
      const lo = bigToUuid(r.lo);
      const hi = r.hi > U128 ? null : bigToUuid(r.hi);
      if (r.n <= LEAF_ROWS) {
        const [a, b] = await Promise.all([leafRows(oldC, spec, from, lo, hi), leafRows(newC, spec, from, lo, hi)]);
        stats.rowsFetched += a.size + b.size;
        stats.differences += diffRows(spec, a, b, mismatches);
        continue;
      }
      const width = r.hi - r.lo;
      const step = width / BigInt(FANOUT) || 1n;
      const bounds: string[] = [];
      for (let i = 1; i < FANOUT && r.lo + step * BigInt(i) < r.hi; i++) bounds.push(bigToUuid(r.lo + step * BigInt(i)));
      const [a, b] = await Promise.all([buckets(oldC, spec, from, lo, hi, bounds), buckets(newC, spec, from, lo, hi, bounds)]);
      stats.ranges += a.length;
      if (first) {
        stats.rows = Math.max(a.reduce((s, x) => s + x.n, 0), b.reduce((s, x) => s + x.n, 0));
        first = false;
      }
      const edges = [r.lo, ...bounds.map(uuidToBig), r.hi];
      for (let i = 0; i < a.length; i++) {
        if (a[i]!.n === b[i]!.n && a[i]!.x === b[i]!.x) continue;
        next.push({ lo: edges[i]!, hi: edges[i + 1]!, n: Math.max(a[i]!.n, b[i]!.n) });
      }
    }
    level = next;
  }
  stats.ms = Math.round(performance.now() - t0);
  return { stats, mismatches };
}

/** The naive comparison: every row's hash from both sides, in key order, compared on the worker. */
export async function naiveDiff(oldC: Client, newC: Client, spec: VerifySpec, from: string, batch = 50_000): Promise<{ rows: number; differences: number; ms: number }> {
  const t0 = performance.now();
  const page = async (c: Client, after: string | null) => (await c.query<{ k: string; h: string }>(
    `SELECT t.${q(spec.key)}::text AS k, ${rowHash(spec)}::text AS h FROM ${qTable(spec.table)} t
      WHERE t.${q(spec.windowColumn)} < $1::timestamptz AND ($2::uuid IS NULL OR t.${q(spec.key)} > $2::uuid)
      ORDER BY t.${q(spec.key)} LIMIT $3`,
    [from, after, batch],
  )).rows;
  let a = await page(oldC, null);
  let b = await page(newC, null);
  let i = 0;
  let j = 0;
  let rows = 0;
  let differences = 0;
  while (a.length > 0 || b.length > 0) {
    if (i >= a.length && a.length === batch) {
      a = await page(oldC, a[a.length - 1]!.k);
      i = 0;
    }
    if (j >= b.length && b.length === batch) {
      b = await page(newC, b[b.length - 1]!.k);
      j = 0;
    }
    const x = a[i];
    const y = b[j];
    if (!x && !y) break;
    rows++;
    if (x && y && x.k === y.k) {
      if (x.h !== y.h) differences++;
      i++;
      j++;
    } else if (x && (!y || x.k < y.k)) {
      differences++;
      i++;
    } else {
      differences++;
      j++;
    }
  }
  return { rows, differences, ms: Math.round(performance.now() - t0) };
}

export async function verifySpecs(c: Client, cfg: ReconcileConfig): Promise<VerifySpec[]> {
  return [
    { table: cfg.journal.table, key: cfg.journal.id, windowColumn: cfg.journal.committedAt, columns: await insertableColumns(c, cfg.journal.table) },
    { table: cfg.entries.table, key: cfg.entries.idempotencyKey, windowColumn: cfg.entries.createdAt, columns: await insertableColumns(c, cfg.entries.table) },
  ];
}

/** Touched accounts whose cached balance is not the sum of their entries. */
async function balanceMismatches(c: Client, cfg: ReconcileConfig, accounts: string[]): Promise<string[]> {
  const b = cfg.balances;
  const e = cfg.entries;
  if (!b.balance || accounts.length === 0) return [];
  const { rows } = await c.query<{ id: string }>(
    `SELECT a.${q(b.account)}::text AS id FROM ${qTable(b.table)} a
      WHERE a.${q(b.account)}::text = ANY($1::text[])
        AND a.${q(b.balance)} <> coalesce((SELECT sum(x.${q(e.amount)}) FROM ${qTable(e.table)} x WHERE x.${q(e.account)} = a.${q(b.account)}), 0)`,
    [accounts],
  );
  return rows.map((r) => r.id);
}

export function createVerify(config: Config, region: string) {
  return async function reconcileVerify(input: VerifyInput): Promise<VerifyResult> {
    const t0 = performance.now();
    const cfg = rcConfig(config, input.service);
    const nNew = rcNode(config, input.service, region);
    const nOld = rcOldSide(config, input.service, input.oldRegion, input.oldSide);
    return withNode(nNew, 'verifying', async (newC) => {
      await requireWritablePrimary(newC, nNew, 'verification');
      await ensureStore(newC);
      const run = (await newC.query<{ from: string; service: string }>(
        `SELECT to_char(window_from AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS from, service FROM regionshift.reconcile_runs WHERE id = $1`,
        [input.reconciliationId],
      )).rows[0];
      if (!run) throw new Error(`reconciliation ${input.reconciliationId} has not classified anything yet`);
      const touched = (await newC.query<{ body: TxnToApply }>(
        `SELECT body FROM regionshift.reconcile_items WHERE reconciliation_id = $1 AND kind = 'apply'`, [input.reconciliationId],
      )).rows.flatMap((r) => Object.keys(r.body.deltas));
      return withNode(nOld, 'verifying-old', async (oldC) => {
        const tables: TableVerify[] = [];
        const mismatches: VerifyMismatch[] = [];
        for (const spec of await verifySpecs(newC, cfg)) {
          const d = await checksumDiff(oldC, newC, spec, run.from);
          tables.push(d.stats);
          mismatches.push(...d.mismatches);
        }
        const badBalances = await balanceMismatches(newC, cfg, [...new Set(touched)].filter((a) => !a.startsWith(cfg.externalAccountPrefix)));
        const result: VerifyResult = {
          reconciliationId: input.reconciliationId, windowFrom: run.from, tables, balanceMismatches: badBalances, mismatches: mismatches.slice(0, 50),
          ok: mismatches.length === 0 && badBalances.length === 0, ms: 0,
        };
        // Rows the old side has (or has differently) just outside the window: a transaction that
        // began long before it committed. Classifying again from before them takes them in.
        const widenable = mismatches.filter((m) => m.side !== 'only-new' && m.at);
        if (mismatches.length > 0 && !input.escalate && widenable.length === mismatches.length) {
          const earliest = Math.min(...widenable.map((m) => Date.parse(m.at!)));
          result.widenTo = new Date(earliest - cfg.windowMarginSeconds * 1000).toISOString();
        } else if (!result.ok) {
          const draft: CaseDraft = {
            id: caseId(input.reconciliationId, 'verify-mismatch', `${mismatches.length}:${badBalances.join(',')}:${mismatches.slice(0, 5).map((m) => m.key).join(',')}`),
            kind: 'verify-mismatch', txnIds: [],
            summary: `outside the reconciliation window the regions differ: ${mismatches.length} row(s)${badBalances.length ? `, and ${badBalances.length} touched account(s) whose balance is not the sum of its entries (${badBalances.slice(0, 5).join(', ')})` : ''}; investigate before failing back`,
            oldVersion: { rows: mismatches.filter((m) => m.side !== 'only-new').slice(0, 50) },
            newVersion: { rows: mismatches.filter((m) => m.side !== 'only-old').slice(0, 50), balanceMismatches: badBalances.slice(0, 50) },
            proposals: {},
          };
          await insertCases(newC, run.service, input.reconciliationId, [draft]);
          result.escalatedCase = draft.id;
        }
        result.ms = Math.round(performance.now() - t0);
        await newC.query('UPDATE regionshift.reconcile_runs SET verify = $2, verified_at = CASE WHEN $3 THEN now() ELSE verified_at END WHERE id = $1', [input.reconciliationId, JSON.stringify(result), result.ok]);
        await appendAudit(newC, input.reconciliationId, {
          runId: input.reconciliationId, by: 'verify',
          what: result.ok ? `verified: no difference outside the window (${tables.map((t) => `${t.table} ${t.rows} rows`).join(', ')})`
            : result.widenTo ? `verify found ${mismatches.length} difference(s) just before the window: widening to ${result.widenTo}`
              : `verify found ${mismatches.length} difference(s), ${badBalances.length} balance mismatch(es): case ${result.escalatedCase}`,
        });
        return result;
      });
    });
  };
}
