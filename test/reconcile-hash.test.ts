// Verify's row hash and key-range checksums (activities/reconcile/verify.ts) on a real PostgreSQL:
// two databases play the two regions. The binary hash must still tell apart every change a
// person would call a difference, including those a type's own equality calls equal (numeric
// 1.0 and 1.00, an array's bounds), and the bisection must find a changed, a missing and an extra
// row among 50,000 with the window left out.
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checksumDiff, naiveDiff, rowHashSql, type VerifySpec } from '../activities/reconcile/verify';
import { dsn, PG_SUPERUSER } from '../src/lib/postgres/node';
import { createPgCluster, type PgCluster } from './support/pg-pair';

let pg: PgCluster;
let a: Client;
let b: Client;

const TABLE = `CREATE TABLE t (
  id uuid PRIMARY KEY, at timestamptz NOT NULL, amount bigint, price numeric, tags text[], note text, payload jsonb
)`;
const FILL = `INSERT INTO t SELECT md5(g::text)::uuid, timestamptz '2026-01-01' + g * interval '1 second', g, g / 10.0, ARRAY['a' || g, 'b'], 'n' || g, jsonb_build_object('g', g)
  FROM generate_series(1, 50000) g`;
const WINDOW_FROM = '2026-01-01T13:00:00Z'; // rows from second 46,800 on are inside the window

async function client(db: string): Promise<Client> {
  const c = new Client({ connectionString: dsn(pg.nodes[0]!, PG_SUPERUSER, db) });
  await c.connect();
  await c.query("SET TIME ZONE 'UTC'");
  return c;
}

async function spec(): Promise<VerifySpec> {
  const columns = ['id', 'at', 'amount', 'price', 'tags', 'note', 'payload'];
  return { table: 't', key: 'id', windowColumn: 'at', columns, hash: await rowHashSql(b, 't', columns) };
}

/** The hash of one row of b's t after `change` (rolled back). */
async function hashAfter(change: string): Promise<string> {
  const s = await spec();
  await b.query('BEGIN');
  try {
    if (change) await b.query(change);
    return (await b.query<{ h: string }>(`SELECT ${s.hash}::text AS h FROM t WHERE amount = 7`)).rows[0]!.h;
  } finally {
    await b.query('ROLLBACK');
  }
}

beforeAll(async () => {
  pg = await createPgCluster(['us-west-2']);
  const admin = await client('postgres');
  await admin.query('CREATE DATABASE side_a');
  await admin.query('CREATE DATABASE side_b');
  await admin.end();
  a = await client('side_a');
  b = await client('side_b');
  for (const c of [a, b]) await c.query(`${TABLE}; ${FILL}; ANALYZE t`);
}, 120_000);

afterAll(async () => {
  await a?.end().catch(() => undefined);
  await b?.end().catch(() => undefined);
  await pg?.teardown();
});

describe("verify's row hash", () => {
  it('hashes identity-typed columns as they are and the others through their text form', async () => {
    const h = (await spec()).hash!;
    expect(h).toMatch(/^hash_record_extended\(ROW\(/);
    expect(h).toContain('t."id", t."at", t."amount"');
    expect(h).toContain('t."price"::text');
    expect(h).toContain('t."tags", array_dims(t."tags")');
    expect(h).toContain('t."payload"::text');
  });

  it('changes with any column, including values their type calls equal', async () => {
    const base = await hashAfter('');
    expect(await hashAfter('')).toBe(base);
    const changes = [
      "UPDATE t SET at = at + interval '1 microsecond' WHERE amount = 7",
      'UPDATE t SET amount = 8 WHERE amount = 7 AND false', // no change: same hash
      'UPDATE t SET price = 0.70 WHERE amount = 7', // 0.7 = 0.70 as numeric, not as written
      "UPDATE t SET tags = '[0:1]={a7,b}' WHERE amount = 7", // same elements, other bounds
      "UPDATE t SET tags = ARRAY['a7', 'c'] WHERE amount = 7",
      'UPDATE t SET note = NULL WHERE amount = 7',
      `UPDATE t SET payload = '{"g": 7.0}' WHERE amount = 7`,
    ];
    const hashes = [];
    for (const c of changes) hashes.push(await hashAfter(c));
    expect(hashes[1]).toBe(base);
    for (const [i, x] of hashes.entries()) if (i !== 1) expect(x, changes[i]).not.toBe(base);
  });
});

describe('checksum bisection outside the window', () => {
  it('finds nothing between equal sides, and ignores differences inside the window', async () => {
    await b.query("UPDATE t SET note = 'changed inside the window' WHERE at >= $1::timestamptz AND amount % 100 = 0", [
      WINDOW_FROM,
    ]);
    const d = await checksumDiff(a, b, await spec(), WINDOW_FROM);
    expect(d.stats.rows).toBe(46_799);
    expect(d.stats.differences).toBe(0);
    expect(d.mismatches).toEqual([]);
    expect((await naiveDiff(a, b, await spec(), WINDOW_FROM)).differences).toBe(0);
  });

  it('finds a changed, a missing and an extra row, and nothing else', async () => {
    const changed = (await b.query<{ id: string }>('UPDATE t SET price = 1.230 WHERE amount = 1234 RETURNING id::text'))
      .rows[0]!.id;
    const missing = (await b.query<{ id: string }>('DELETE FROM t WHERE amount = 20000 RETURNING id::text')).rows[0]!
      .id;
    const extra = (
      await b.query<{ id: string }>(
        "INSERT INTO t VALUES (md5('extra')::uuid, timestamptz '2026-01-01 00:00:01.5', -1, 0, '{}', 'extra', '{}') RETURNING id::text",
      )
    ).rows[0]!.id;
    const d = await checksumDiff(a, b, await spec(), WINDOW_FROM);
    expect(d.mismatches.map((m) => [m.key, m.side]).sort()).toEqual(
      [
        [changed, 'different'],
        [extra, 'only-new'],
        [missing, 'only-old'],
      ].sort(),
    );
    // Only the differing ranges were fetched, not the table.
    expect(d.stats.rowsFetched).toBeLessThan(20_000);
    expect((await naiveDiff(a, b, await spec(), WINDOW_FROM)).differences).toBe(3);
  });
});
