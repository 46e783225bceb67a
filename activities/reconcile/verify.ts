// reconcile.verify, off the critical path (apply has committed): outside the window both sides
// must hold exactly the same journal and entries, and the same mutable rows (those no journal
// row in the window names: see "mutable tables" below). Compared by key-range bisection: each side
// computes (count, xor of 64-bit row hashes) per key range, in one pass per level, in parallel;
// only ranges that differ are split again, and only small differing ranges are fetched. Equal
// tables cost one scan per side and transfer a few numbers; the naive diff (naiveDiff, kept for
// the benchmark) ships every row's hash to the worker in key order.
import { performance } from 'node:perf_hooks';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import type { ReconcileConfig } from '../../src/lib/config/reconcile';
import type { Config } from '../../src/lib/config/schema';
import type { TableVerify, VerifyInput, VerifyMismatch, VerifyResult } from '../../src/contract/reconcile';
import {
  insertableColumns,
  q,
  qTable,
  rcConfig,
  rcNode,
  rcOldSide,
  ReconcileFailure,
  requireWritablePrimary,
  withNode,
} from './db';
import { caseId, type CaseDraft, type TxnToApply } from './rules';
import { insertCases } from './apply';
import { appendAudit, ensureStore } from './store';

/** A table compared outside the window: uuid key, the column the window is on, the columns hashed. */
export interface VerifySpec {
  table: string;
  key: string;
  windowColumn: string;
  columns: string[];
  /** The row hash over alias t (rowHashSql); absent: every column through its text form. */
  hash?: string;
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

function rowHash(spec: { columns: string[]; hash?: string }): string {
  return spec.hash ?? `hashtextextended(ROW(${spec.columns.map((c) => `t.${q(c)}`).join(', ')})::text, 0)`;
}

/**
 * Types whose hash function is as strict as identity: two values hash alike only by chance (1 in
 * 2^64) unless they are the same value. They are hashed by hash_record_extended as they are, which
 * costs a few nanoseconds a column, where printing the row as text (a timestamptz, a uuid) and
 * hashing the text is most of a full scan's time. Left out on purpose, and hashed through their
 * text form instead: numeric (1.0 = 1.00), float (0 = -0), bpchar (trailing blanks), json, and
 * text under a nondeterministic collation: their hashes follow their type's equality, which is
 * looser than "the same value", and verify proves rows identical. Arrays also hash their bounds
 * (array_dims): the element hash alone does not tell '{1,2}' from '[0:1]={1,2}'.
 */
const IDENTITY_HASHED = new Set([
  16,
  17,
  20,
  21,
  23,
  25,
  26,
  1043,
  1082,
  1114,
  1184,
  2950, // bool bytea int8 int2 int4 text oid varchar date timestamp timestamptz uuid
  1000,
  1001,
  1016,
  1005,
  1007,
  1009,
  1028,
  1015,
  1182,
  1115,
  1185,
  2951, // their arrays
]);

/**
 * The row-hash SQL (alias t) for `columns` of `table` as this database types them: one
 * hash_record_extended over the columns, those outside IDENTITY_HASHED cast to text first. Both
 * sides are hashed with the same expression. A server without hash_record_extended (before
 * PostgreSQL 14) gets the text form of the whole row.
 */
export async function rowHashSql(c: Client, table: string, columns: string[]): Promise<string> {
  const has = (
    await c.query<{ ok: boolean }>(`SELECT to_regprocedure('hash_record_extended(record,bigint)') IS NOT NULL AS ok`)
  ).rows[0]!.ok;
  if (!has) return rowHash({ columns });
  const { rows } = await c.query<{ name: string; typ: number; det: boolean; arr: boolean }>(
    `SELECT a.attname AS name, a.atttypid::int AS typ, coalesce(co.collisdeterministic, true) AS det, ty.typcategory = 'A' AS arr
       FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid LEFT JOIN pg_collation co ON co.oid = a.attcollation
      WHERE a.attrelid = $1::regclass AND a.attname = ANY($2::text[]) AND NOT a.attisdropped`,
    [qTable(table), columns],
  );
  const byName = new Map(rows.map((r) => [r.name, r]));
  const fields = columns.flatMap((col) => {
    const r = byName.get(col);
    const ref = `t.${q(col)}`;
    if (!r || !IDENTITY_HASHED.has(r.typ) || !r.det) return [`${ref}::text`];
    return r.arr ? [ref, `array_dims(${ref})`] : [ref];
  });
  return `hash_record_extended(ROW(${fields.join(', ')}), 0)`;
}

interface Bucket {
  n: number;
  x: string;
}

/** (count, xor) per sub-range of [lo, hi) split at `bounds`, one scan. */
async function buckets(
  c: Client,
  spec: VerifySpec,
  from: string,
  lo: string,
  hi: string | null,
  bounds: string[],
): Promise<Bucket[]> {
  const k = `t.${q(spec.key)}`;
  // Bucket i holds bounds[i-1] <= key < bounds[i]: found by halving (4 comparisons a row for 16
  // buckets, not up to 15 in a flat CASE).
  const pick = (l: number, r: number): string => {
    if (l === r) return String(l);
    const mid = (l + r) >> 1;
    return `CASE WHEN ${k} < $${mid + 4}::uuid THEN ${pick(l, mid)} ELSE ${pick(mid + 1, r)} END`;
  };
  const { rows } = await c.query<{ b: number; n: string; x: string }>(
    `SELECT ${pick(0, bounds.length)} AS b, count(*)::text AS n, coalesce(bit_xor(${rowHash(spec)}), 0)::text AS x
       FROM ${qTable(spec.table)} t
      WHERE t.${q(spec.windowColumn)} < $1::timestamptz AND ${k} >= $2::uuid AND ($3::uuid IS NULL OR ${k} < $3::uuid)
      GROUP BY 1`,
    [from, lo, hi, ...bounds],
  );
  const out: Bucket[] = Array.from({ length: bounds.length + 1 }, () => ({ n: 0, x: '0' }));
  for (const r of rows) out[r.b] = { n: Number(r.n), x: r.x };
  return out;
}

async function leafRows(
  c: Client,
  spec: VerifySpec,
  from: string,
  lo: string,
  hi: string | null,
): Promise<Map<string, { h: string; at: string }>> {
  const k = `t.${q(spec.key)}`;
  const { rows } = await c.query<{ k: string; h: string; at: string }>(
    `SELECT ${k}::text AS k, ${rowHash(spec)}::text AS h, to_char(t.${q(spec.windowColumn)} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
       FROM ${qTable(spec.table)} t
      WHERE t.${q(spec.windowColumn)} < $1::timestamptz AND ${k} >= $2::uuid AND ($3::uuid IS NULL OR ${k} < $3::uuid)`,
    [from, lo, hi],
  );
  return new Map(rows.map((r) => [r.k, { h: r.h, at: r.at }]));
}

function diffRows(
  spec: VerifySpec,
  a: Map<string, { h: string; at: string }>,
  b: Map<string, { h: string; at: string }>,
  out: VerifyMismatch[],
): number {
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
export async function checksumDiff(
  oldC: Client,
  newC: Client,
  spec: VerifySpec,
  from: string,
): Promise<{ stats: TableVerify; mismatches: VerifyMismatch[] }> {
  const t0 = performance.now();
  const mismatches: VerifyMismatch[] = [];
  const stats: TableVerify = { table: spec.table, rows: 0, ranges: 0, rowsFetched: 0, differences: 0, ms: 0 };
  // uuid has no min()/max(); the key's index answers ORDER BY … LIMIT 1 at either end.
  const bound = async (c: Client, fn: 'min' | 'max') =>
    (
      await c.query<{ v: string }>(
        `SELECT ${q(spec.key)}::text AS v FROM ${qTable(spec.table)} WHERE ${q(spec.windowColumn)} < $1::timestamptz ORDER BY ${q(spec.key)} ${fn === 'min' ? 'ASC' : 'DESC'} LIMIT 1`,
        [from],
      )
    ).rows[0]?.v ?? null;
  const [oMin, nMin, oMax, nMax] = await Promise.all([
    bound(oldC, 'min'),
    bound(newC, 'min'),
    bound(oldC, 'max'),
    bound(newC, 'max'),
  ]);
  const mins = [oMin, nMin].filter((v): v is string => v !== null).map(uuidToBig);
  const maxs = [oMax, nMax].filter((v): v is string => v !== null).map(uuidToBig);
  if (mins.length === 0) return { stats: { ...stats, ms: Math.round(performance.now() - t0) }, mismatches };
  let level: { lo: bigint; hi: bigint; n: number }[] = [
    { lo: mins.reduce((a, b) => (a < b ? a : b)), hi: maxs.reduce((a, b) => (a > b ? a : b)) + 1n, n: Infinity },
  ];
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
      for (let i = 1; i < FANOUT && r.lo + step * BigInt(i) < r.hi; i++)
        bounds.push(bigToUuid(r.lo + step * BigInt(i)));
      const [a, b] = await Promise.all([
        buckets(oldC, spec, from, lo, hi, bounds),
        buckets(newC, spec, from, lo, hi, bounds),
      ]);
      stats.ranges += a.length;
      if (first) {
        stats.rows = Math.max(
          a.reduce((s, x) => s + x.n, 0),
          b.reduce((s, x) => s + x.n, 0),
        );
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
export async function naiveDiff(
  oldC: Client,
  newC: Client,
  spec: VerifySpec,
  from: string,
  batch = 50_000,
): Promise<{ rows: number; differences: number; ms: number }> {
  const t0 = performance.now();
  const page = async (c: Client, after: string | null) =>
    (
      await c.query<{ k: string; h: string }>(
        `SELECT t.${q(spec.key)}::text AS k, ${rowHash(spec)}::text AS h FROM ${qTable(spec.table)} t
      WHERE t.${q(spec.windowColumn)} < $1::timestamptz AND ($2::uuid IS NULL OR t.${q(spec.key)} > $2::uuid)
      ORDER BY t.${q(spec.key)} LIMIT $3`,
        [from, after, batch],
      )
    ).rows;
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

// --- mutable tables ------------------------------------------------------------------------------
//
// A mutable row (a loan's status) has no commit time, so "outside the window" is decided by key:
// the rows whose key no journal row committed from the window's start names, on either side (the
// journal lists what each transaction touched, `<keyPrefix><key>`). Rows the window names were
// decided by classify and apply and may rightly differ (an open case, a delete in one region);
// every other row streamed from the old primary before the divergence and must be identical.
// Keys named only by the window's margin (transactions that replicated) are left out too: the
// exclusion errs wide, never narrow.
//
// The bisection runs over a 64-bit hash of the key's text, not over the key itself: mutable keys
// are whatever the service chose (text like L-0017, bigint, uuid), and text cannot be split at
// arithmetic midpoints, bigints are often sparse or clustered. The hash spreads any key type evenly,
// so every level splits each differing bucket into 16 of about equal size, and a whole level is one
// GROUP BY scan per side however many buckets differ (its top bits are the bucket). The price is
// that a level cannot read a narrow key range through the key's index; these tables are scanned
// whole anyway (they have no window column to bound the scan), and the levels are few
// (log16(rows / 2,000)). The key is compared as text, as the journal names it and as classify
// reads it.

/** A mutable table compared outside the window: its key, the journal's prefix for it, the columns hashed. */
export interface MutableVerifySpec {
  table: string;
  key: string;
  /** The key column's type, from the catalog: both versions of a differing row are read through its index. */
  keyType: string;
  keyPrefix: string;
  columns: string[];
  /** As VerifySpec.hash. */
  hash?: string;
}

const BITS = 4; // 2^BITS = FANOUT buckets per differing bucket and level
/** Differing rows per table whose both versions are read for the result and the case (it shows 50). */
const VERSIONS_SHOWN = 50;

async function columnsOf(c: Client, table: string): Promise<{ name: string; type: string }[] | null> {
  const rel = (await c.query<{ rel: string | null }>('SELECT to_regclass($1)::text AS rel', [qTable(table)])).rows[0]!
    .rel;
  if (!rel) return null;
  return (
    await c.query<{ name: string; type: string }>(
      `SELECT attname AS name, format_type(atttypid, NULL) AS type FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
      [rel],
    )
  ).rows;
}

/**
 * The configured mutable tables as this database has them. Classify only reads a mutable table
 * when the window touches it, so a wrong name may first show here: it is said as the config
 * field, the table and the column, before anything is scanned.
 */
export async function mutableVerifySpecs(
  c: Client,
  cfg: ReconcileConfig,
  service: string,
  where: string,
): Promise<MutableVerifySpec[]> {
  const specs: MutableVerifySpec[] = [];
  for (const [i, t] of cfg.mutable.entries()) {
    const field = `services[${service}].reconcile.mutable[${i}]`;
    const cols = await columnsOf(c, t.table);
    if (!cols || cols.length === 0) {
      throw ApplicationFailure.nonRetryable(
        `${field}.table: table ${t.table} does not exist in ${where}`,
        ReconcileFailure.Config,
      );
    }
    const named: [string, string | undefined][] = [
      ['key', t.key],
      ['status', t.status],
      ['version', t.version],
      ['updatedAt', t.updatedAt],
    ];
    for (const [name, col] of named) {
      if (col !== undefined && !cols.some((x) => x.name === col)) {
        throw ApplicationFailure.nonRetryable(
          `${field}.${name}: table ${t.table} has no column ${col} in ${where} (its columns: ${cols.map((x) => x.name).join(', ')})`,
          ReconcileFailure.Config,
        );
      }
    }
    specs.push({
      table: t.table,
      key: t.key,
      keyType: cols.find((x) => x.name === t.key)!.type,
      keyPrefix: t.keyPrefix,
      columns: cols.map((x) => x.name),
    });
  }
  return specs;
}

const keyText = (s: MutableVerifySpec) => `t.${q(s.key)}::text`;
const keyHash = (s: MutableVerifySpec) => `hashtextextended(${keyText(s)}, 0)`;
/**
 * Rows whose key is not among $1 (the window's keys): a hash anti-join whose hash side is built
 * from the divergence, not the table. An array parameter rather than a temp table: the preserved
 * old primary is read-only, and a read-only session cannot create one.
 */
const outsideWindow = (s: MutableVerifySpec) =>
  `NOT EXISTS (SELECT 1 FROM unnest($1::text[]) AS w(k) WHERE w.k = ${keyText(s)})`;

/**
 * (count, xor) per bucket: the key hash's top bits (shifted right by `shift`), over the buckets
 * whose parent (BITS fewer top bits) is in `parents`, or all of them at the first level. int8's
 * shift is arithmetic, so a bucket's parent is its id shifted by BITS on both sides alike.
 */
async function hashBuckets(
  c: Client,
  s: MutableVerifySpec,
  inside: string[],
  shift: number,
  parents: string[] | null,
): Promise<Map<string, Bucket>> {
  const { rows } = await c.query<{ b: string; n: string; x: string }>(
    `SELECT (${keyHash(s)} >> $2::int)::text AS b, count(*)::text AS n, coalesce(bit_xor(${rowHash(s)}), 0)::text AS x
       FROM ${qTable(s.table)} t
      WHERE ${outsideWindow(s)} AND ($3::int8[] IS NULL OR (${keyHash(s)} >> ($2::int + ${BITS})) = ANY($3::int8[]))
      GROUP BY 1`,
    [inside, shift, parents],
  );
  return new Map(rows.map((r) => [r.b, { n: Number(r.n), x: r.x }]));
}

async function hashLeaves(
  c: Client,
  s: MutableVerifySpec,
  inside: string[],
  shift: number,
  buckets: string[],
): Promise<Map<string, string>> {
  const { rows } = await c.query<{ k: string; h: string }>(
    `SELECT ${keyText(s)} AS k, ${rowHash(s)}::text AS h FROM ${qTable(s.table)} t
      WHERE ${outsideWindow(s)} AND (${keyHash(s)} >> $2::int) = ANY($3::int8[])`,
    [inside, shift, buckets],
  );
  return new Map(rows.map((r) => [r.k, r.h]));
}

async function rowVersions(
  c: Client,
  s: MutableVerifySpec,
  keys: string[],
): Promise<Map<string, Record<string, unknown>>> {
  const { rows } = await c.query<{ k: string; row: Record<string, unknown> }>(
    `SELECT ${keyText(s)} AS k, to_jsonb(t) AS row FROM ${qTable(s.table)} t WHERE t.${q(s.key)} = ANY($1::${s.keyType}[])`,
    [keys],
  );
  return new Map(rows.map((r) => [r.k, r.row]));
}

/**
 * Compares a mutable table on both sides, leaving out the keys in `inside` (the window's, without
 * their prefix). Call it with the new side in one repeatable-read snapshot that also read the
 * new journal's window keys: the new region keeps moving rows (and journaling them) meanwhile,
 * and a row moved after the keys were read would otherwise look like a difference.
 */
export async function mutableChecksumDiff(
  oldC: Client,
  newC: Client,
  spec: MutableVerifySpec,
  inside: string[],
): Promise<{ stats: TableVerify; mismatches: VerifyMismatch[] }> {
  const t0 = performance.now();
  const mismatches: VerifyMismatch[] = [];
  const stats: TableVerify = {
    table: spec.table,
    rows: 0,
    ranges: 0,
    rowsFetched: 0,
    differences: 0,
    excluded: inside.length,
    ms: 0,
  };
  let parents: string[] | null = null;
  for (let depth = 1; depth * BITS <= 64 && mismatches.length < MAX_MISMATCHES; depth++) {
    const shift = 64 - depth * BITS;
    const [a, b] = await Promise.all([
      hashBuckets(oldC, spec, inside, shift, parents),
      hashBuckets(newC, spec, inside, shift, parents),
    ]);
    const ids = new Set([...a.keys(), ...b.keys()]);
    stats.ranges += ids.size;
    if (depth === 1)
      stats.rows = Math.max(
        [...a.values()].reduce((n, x) => n + x.n, 0),
        [...b.values()].reduce((n, x) => n + x.n, 0),
      );
    const leaves: string[] = [];
    const deeper: string[] = [];
    for (const id of ids) {
      const x = a.get(id);
      const y = b.get(id);
      if (x && y && x.n === y.n && x.x === y.x) continue;
      (Math.max(x?.n ?? 0, y?.n ?? 0) <= LEAF_ROWS || shift === 0 ? leaves : deeper).push(id);
    }
    if (leaves.length > 0) {
      const [ra, rb] = await Promise.all([
        hashLeaves(oldC, spec, inside, shift, leaves),
        hashLeaves(newC, spec, inside, shift, leaves),
      ]);
      stats.rowsFetched += ra.size + rb.size;
      for (const [k, h] of ra) {
        const other = rb.get(k);
        if (other === h) continue;
        mismatches.push({ table: spec.table, key: k, side: other === undefined ? 'only-old' : 'different' });
      }
      for (const k of rb.keys()) if (!ra.has(k)) mismatches.push({ table: spec.table, key: k, side: 'only-new' });
    }
    if (deeper.length === 0) break;
    parents = deeper;
  }
  stats.differences = mismatches.length;
  const shown = mismatches.slice(0, VERSIONS_SHOWN);
  if (shown.length > 0) {
    const keys = shown.map((m) => m.key);
    const [va, vb] = await Promise.all([rowVersions(oldC, spec, keys), rowVersions(newC, spec, keys)]);
    for (const m of shown) {
      m.oldRow = va.get(m.key) ?? null;
      m.newRow = vb.get(m.key) ?? null;
    }
  }
  stats.ms = Math.round(performance.now() - t0);
  return { stats, mismatches };
}

/** Prefixed keys (`loan:L-17`) named by the journal rows committed from `from` on, for the given prefixes. */
async function windowKeys(c: Client, cfg: ReconcileConfig, from: string, prefixes: string[]): Promise<string[]> {
  const j = cfg.journal;
  const { rows } = await c.query<{ k: string }>(
    `SELECT DISTINCT k.k FROM ${qTable(j.table)} j CROSS JOIN LATERAL unnest(j.${q(j.keys)}::text[]) AS k(k)
      WHERE j.${q(j.committedAt)} >= $1::timestamptz AND EXISTS (SELECT 1 FROM unnest($2::text[]) AS p(p) WHERE left(k.k, length(p.p)) = p.p)`,
    [from, prefixes],
  );
  return rows.map((r) => r.k);
}

/**
 * Every mutable table outside the window. The old primary is preserved read-only and holds
 * still; the new side is read in one repeatable-read, read-only snapshot (its window keys and
 * its rows alike).
 */
async function verifyMutable(
  oldC: Client,
  newC: Client,
  cfg: ReconcileConfig,
  specs: MutableVerifySpec[],
  from: string,
): Promise<{ tables: TableVerify[]; mismatches: VerifyMismatch[] }> {
  const tables: TableVerify[] = [];
  const mismatches: VerifyMismatch[] = [];
  if (specs.length === 0) return { tables, mismatches };
  await newC.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const prefixes = specs.map((s) => s.keyPrefix);
    const named = new Set([
      ...(await windowKeys(oldC, cfg, from, prefixes)),
      ...(await windowKeys(newC, cfg, from, prefixes)),
    ]);
    for (const spec of specs) {
      const inside = [...named].filter((k) => k.startsWith(spec.keyPrefix)).map((k) => k.slice(spec.keyPrefix.length));
      const d = await mutableChecksumDiff(oldC, newC, spec, inside);
      tables.push(d.stats);
      mismatches.push(...d.mismatches);
    }
    await newC.query('COMMIT');
  } catch (err) {
    await newC.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return { tables, mismatches };
}

/**
 * A mutable row has no commit time, so it cannot say where the window should start. Widening can
 * still explain it when the old side's journal has a row just before the window (itself a
 * difference verify found, with a commit time) that names its key: a transaction that began
 * before the window and moved the row. Classifying again from before that transaction takes the
 * key into the window, and the next verify leaves it out. Any other mutable difference is not
 * something a wider window explains, and escalates. Returns how many are explained.
 */
async function explainedByWidening(
  oldC: Client,
  cfg: ReconcileConfig,
  specs: MutableVerifySpec[],
  timed: VerifyMismatch[],
  mutable: VerifyMismatch[],
): Promise<number> {
  const ids = timed.filter((m) => m.table === cfg.journal.table).map((m) => m.key);
  if (ids.length === 0 || mutable.length === 0) return 0;
  const j = cfg.journal;
  const named = new Set(
    (
      await oldC.query<{ k: string }>(
        `SELECT DISTINCT unnest(${q(j.keys)}::text[]) AS k FROM ${qTable(j.table)} WHERE ${q(j.id)} = ANY($1::uuid[])`,
        [ids],
      )
    ).rows.map((r) => r.k),
  );
  const prefixOf = new Map(specs.map((s) => [s.table, s.keyPrefix]));
  return mutable.filter((m) => named.has(`${prefixOf.get(m.table)}${m.key}`)).length;
}

export async function verifySpecs(c: Client, cfg: ReconcileConfig): Promise<VerifySpec[]> {
  const spec = async (table: string, key: string, windowColumn: string): Promise<VerifySpec> => {
    const columns = await insertableColumns(c, table);
    return { table, key, windowColumn, columns, hash: await rowHashSql(c, table, columns) };
  };
  return [
    await spec(cfg.journal.table, cfg.journal.id, cfg.journal.committedAt),
    await spec(cfg.entries.table, cfg.entries.idempotencyKey, cfg.entries.createdAt),
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
      const run = (
        await newC.query<{ from: string; service: string }>(
          `SELECT to_char(window_from AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS from, service FROM regionshift.reconcile_runs WHERE id = $1`,
          [input.reconciliationId],
        )
      ).rows[0];
      if (!run) throw new Error(`reconciliation ${input.reconciliationId} has not classified anything yet`);
      const touched = (
        await newC.query<{ body: TxnToApply }>(
          `SELECT body FROM regionshift.reconcile_items WHERE reconciliation_id = $1 AND kind = 'apply'`,
          [input.reconciliationId],
        )
      ).rows.flatMap((r) => Object.keys(r.body.deltas));
      return withNode(nOld, 'verifying-old', async (oldC) => {
        const tables: TableVerify[] = [];
        const mismatches: VerifyMismatch[] = [];
        // Both schemas first: a table or column the config names and one side lacks is a config
        // error, said before anything is scanned. A column only one side has (a migration in the
        // new region after the failover) is not compared.
        const newMutable = await mutableVerifySpecs(newC, cfg, input.service, nNew.where);
        const oldMutable = await mutableVerifySpecs(oldC, cfg, input.service, nOld.where);
        const mutableSpecs: MutableVerifySpec[] = [];
        for (const [i, s] of newMutable.entries()) {
          const columns = s.columns.filter((col) => oldMutable[i]!.columns.includes(col));
          mutableSpecs.push({ ...s, columns, hash: await rowHashSql(newC, s.table, columns) });
        }
        for (const spec of await verifySpecs(newC, cfg)) {
          const d = await checksumDiff(oldC, newC, spec, run.from);
          tables.push(d.stats);
          mismatches.push(...d.mismatches);
        }
        const mut = await verifyMutable(oldC, newC, cfg, mutableSpecs, run.from);
        tables.push(...mut.tables);
        mismatches.push(...mut.mismatches);
        const badBalances = await balanceMismatches(
          newC,
          cfg,
          [...new Set(touched)].filter((a) => !a.startsWith(cfg.externalAccountPrefix)),
        );
        const result: VerifyResult = {
          reconciliationId: input.reconciliationId,
          windowFrom: run.from,
          tables,
          balanceMismatches: badBalances,
          mismatches: mismatches.slice(0, 50),
          ok: mismatches.length === 0 && badBalances.length === 0,
          ms: 0,
        };
        // Rows the old side has (or has differently) just outside the window: a transaction that
        // began long before it committed. Classifying again from before them takes them in, and
        // the mutable rows such a transaction moved with them (explainedByWidening).
        const timed = mismatches.filter((m) => m.side !== 'only-new' && m.at);
        const explained =
          input.escalate || timed.length === 0
            ? 0
            : await explainedByWidening(oldC, cfg, mutableSpecs, timed, mut.mismatches);
        if (mismatches.length > 0 && !input.escalate && timed.length + explained === mismatches.length) {
          const earliest = Math.min(...timed.map((x) => Date.parse(x.at!)));
          result.widenTo = new Date(earliest - cfg.windowMarginSeconds * 1000).toISOString();
        } else if (!result.ok) {
          const draft: CaseDraft = {
            id: caseId(
              input.reconciliationId,
              'verify-mismatch',
              `${mismatches.length}:${badBalances.join(',')}:${mismatches
                .slice(0, 5)
                .map((m) => m.key)
                .join(',')}`,
            ),
            kind: 'verify-mismatch',
            txnIds: [],
            summary: `outside the reconciliation window the regions differ: ${mismatches.length} row(s)${
              mismatches.length
                ? ` (${tables
                    .filter((t) => t.differences > 0)
                    .map((t) => `${t.table} ${t.differences}`)
                    .join(', ')})`
                : ''
            }${badBalances.length ? `, and ${badBalances.length} touched account(s) whose balance is not the sum of its entries (${badBalances.slice(0, 5).join(', ')})` : ''}; investigate before failing back`,
            oldVersion: { rows: mismatches.filter((m) => m.side !== 'only-new').slice(0, 50) },
            newVersion: {
              rows: mismatches.filter((m) => m.side !== 'only-old').slice(0, 50),
              balanceMismatches: badBalances.slice(0, 50),
            },
            proposals: {},
          };
          await insertCases(newC, run.service, input.reconciliationId, [draft]);
          result.escalatedCase = draft.id;
        }
        result.ms = Math.round(performance.now() - t0);
        await newC.query(
          'UPDATE regionshift.reconcile_runs SET verify = $2, verified_at = CASE WHEN $3 THEN now() ELSE verified_at END WHERE id = $1',
          [input.reconciliationId, JSON.stringify(result), result.ok],
        );
        await appendAudit(newC, input.reconciliationId, {
          runId: input.reconciliationId,
          by: 'verify',
          what: result.ok
            ? `verified: no difference outside the window (${tables.map((t) => `${t.table} ${t.rows} rows`).join(', ')})`
            : result.widenTo
              ? `verify found ${mismatches.length} difference(s) just before the window: widening to ${result.widenTo}`
              : `verify found ${mismatches.length} difference(s), ${badBalances.length} balance mismatch(es): case ${result.escalatedCase}`,
        });
        return result;
      });
    });
  };
}
