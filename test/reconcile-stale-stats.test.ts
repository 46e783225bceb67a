// Classification on a real PostgreSQL whose statistics are a day old, as they are right after a
// failover: a large journal is analyzed rarely, so the reconciliation window lies past the last
// bucket of its histogram and the planner expects a row or two in it. What classification asks
// of the window must stay linear anyway: in the demo, an anti-join planned on that estimate ran
// as a nested loop and took 20 s for 25,000 rows.
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countOtherWrites, otherWritesSql } from '../activities/reconcile/classify';
import { reconcileConfigOf } from '../src/lib/config/reconcile';
import { dsn, PG_SUPERUSER } from '../src/lib/postgres/node';
import { createPgCluster, type PgCluster } from './support/pg-pair';

const cfg = reconcileConfigOf({});
const WINDOW_ROWS = 25_000;
const OLD_IDS = 20_000;

let pg: PgCluster;
let c: Client;
let window: { from: string; to: string };
let oldIds: string[];

beforeAll(async () => {
  pg = await createPgCluster(['us-west-2']);
  c = new Client({ connectionString: dsn(pg.nodes[0]!, PG_SUPERUSER) });
  await c.connect();
  await c.query("SET TIME ZONE 'UTC'");
  // The history, analyzed a day ago; then the window's writes, which no ANALYZE has seen.
  await c.query(`CREATE TABLE journal (id uuid PRIMARY KEY, committed_at timestamptz NOT NULL)
                   WITH (autovacuum_enabled = off);
                 CREATE INDEX ON journal (committed_at);
                 INSERT INTO journal SELECT md5('h' || g)::uuid, timestamptz '2026-12-04 09:00' + g * interval '10 ms'
                   FROM generate_series(1, 50000) g;
                 ANALYZE journal;
                 INSERT INTO journal SELECT md5('w' || g)::uuid, timestamptz '2026-12-05 10:00' + g * interval '2 ms'
                   FROM generate_series(1, ${WINDOW_ROWS}) g;`);
  window = { from: '2026-12-05T10:00:00Z', to: '2026-12-05T10:00:50Z' }; // the last window row is at 10:00:50
  // The old side's ids: most of the window (replicated before the failover), and ids of its own.
  oldIds = (
    await c.query<{ id: string }>(
      `SELECT md5('w' || g)::uuid::text AS id FROM generate_series(1, ${OLD_IDS}) g
       UNION ALL SELECT md5('lost' || g)::uuid::text FROM generate_series(1, 1000) g`,
    )
  ).rows.map((r) => r.id);
}, 120_000);

afterAll(async () => {
  await c?.end().catch(() => undefined);
  await pg?.teardown();
});

/** The plan of `sql` with this file's parameters, as text. */
async function plan(sql: string): Promise<string> {
  const { rows } = await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, [window.from, window.to, oldIds]);
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

describe('classification with day-old statistics', () => {
  it('counts the window rows that are not the old side’s, its end included or not', async () => {
    const others = WINDOW_ROWS - OLD_IDS;
    expect(await countOtherWrites(c, cfg, { ...window, endExcluded: false }, oldIds)).toBe(others);
    // A widened pass stops before the earlier window: the row at its end is not counted.
    expect(await countOtherWrites(c, cfg, { ...window, endExcluded: true }, oldIds)).toBe(others - 1);
    expect(await countOtherWrites(c, cfg, { ...window, endExcluded: false }, [])).toBe(WINDOW_ROWS);
  });

  it('plans the count without a nested loop, where an anti-join on the same estimate compares every pair', async () => {
    const ours = await plan(otherWritesSql(cfg, false));
    // The condition holds: the planner expects almost nothing in the window.
    expect(ours).toMatch(/Index Scan using journal_committed_at_idx on journal j {2}\(cost=[\d.]+ rows=[12] /);
    expect(ours).toMatch(/SetOp Except/);
    expect(ours).not.toMatch(/Nested Loop/);
    // The query it replaced, under the same statistics: the nested loop the demo ran into.
    const antiJoin = await plan(
      `SELECT count(*) FROM journal j WHERE j.committed_at >= $1::timestamptz AND j.committed_at <= $2::timestamptz
         AND NOT EXISTS (SELECT 1 FROM unnest($3::uuid[]) AS o(id) WHERE o.id = j.id)`,
    );
    expect(antiJoin).toMatch(/Nested Loop Anti Join/);
  });
});
