// reconcile.classify: read both journals over the divergence window only, classify every
// transaction and mutable row (rules.ts), and stage the outcome in the new primary
// (regionshift.reconcile_items) for apply. Runs on the new primary's worker; reads the old side
// across regions: the old primary read-only on its own timeline (postgres-streaming), or the
// cluster restored from Aurora's snapshot of it (aurora-global).
import { performance } from 'node:perf_hooks';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import type { MutableTable, ReconcileConfig } from '../../src/lib/config/reconcile';
import type { Config } from '../../src/lib/config/schema';
import type { ClassifyInput, ClassifyResult, Divergence, ReconcileHandoff } from '../../src/contract/reconcile';
import { errorMessage, isLsn } from '../db/sql';
import {
  laps,
  probeRows,
  q,
  qTable,
  rcConfig,
  rcNode,
  rcOldSide,
  ReconcileFailure,
  requireWritablePrimary,
  withNode,
  type RcNode,
} from './db';
import { classify, type Classification, type EntryRow, type JournalRow, type StateRow } from './rules';
import { appendAudit, ensureStore } from './store';

const WALK_CHUNK = 2_000;
const STAGE_CHUNK = 20_000;

interface SideInfo {
  timeline: number;
  lsn: string;
  inRecovery: boolean;
}

async function sideInfo(c: Client): Promise<SideInfo> {
  const { rows } = await c.query<{ rec: boolean; lsn: string; walfile: string | null; tli: number }>(
    `SELECT pg_is_in_recovery() AS rec,
            CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END AS lsn,
            CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS walfile,
            (SELECT timeline_id FROM pg_control_checkpoint()) AS tli`,
  );
  const r = rows[0]!;
  return { inRecovery: r.rec, lsn: r.lsn, timeline: r.walfile ? parseInt(r.walfile.slice(0, 8), 16) : r.tli };
}

/** Aurora: only whether the endpoint is a writer (no WAL functions to ask). */
async function recoveryOf(c: Client): Promise<{ inRecovery: boolean }> {
  return { inRecovery: (await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0]!.rec };
}

/** Where the node's timeline forked from its parent, from its history file (superuser or pg_read_server_files). */
async function switchPoint(c: Client, timeline: number): Promise<string | undefined> {
  if (timeline <= 1) return undefined;
  try {
    const file = `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
    const text = (await c.query<{ t: string }>('SELECT pg_read_file($1) AS t', [file])).rows[0]!.t;
    const last = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .pop();
    const lsn = last?.split(/\s+/)[1];
    return lsn && isLsn(lsn) ? lsn : undefined;
  } catch {
    return undefined;
  }
}

function journalSelect(cfg: ReconcileConfig, alias = 'j'): string {
  const j = cfg.journal;
  return `${alias}.${q(j.id)}::text AS id, ${alias}.${q(j.payloadHash)}::text AS hash, ${alias}.${q(j.origin)}::text AS origin,
          to_char(${alias}.${q(j.committedAt)} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS committed_at,
          ${alias}.${q(j.keys)}::text[] AS keys`;
}

interface RawJournal {
  id: string;
  hash: string;
  origin: string;
  committed_at: string;
  keys: string[] | null;
  row?: Record<string, unknown>;
}

/**
 * Aurora reports no divergence position, only a replication lag: the secondary had replicated
 * everything up to the failure time minus the lag it showed. The failure time is the failover's
 * trigger, or the last lag observation when that came earlier (a lag observed before the failure
 * says where replication stood then; it can only have moved on since). The lag is a figure for
 * one moment, so lagMarginSeconds more is read, and windowMarginSeconds for transactions whose
 * commit-time column is when they began. Undefined when the failover recorded no lag.
 */
function lagWindow(
  cfg: ReconcileConfig,
  d: ReconcileHandoff['divergence'] | undefined,
): Pick<Divergence, 'windowFrom' | 'basis' | 'failedAt' | 'lagMs'> | undefined {
  const margin = cfg.lagMarginSeconds + cfg.windowMarginSeconds;
  const margins = `${cfg.lagMarginSeconds}s lag margin and ${cfg.windowMarginSeconds}s window margin`;
  if (d?.failedAt && d.lagMs !== undefined && !Number.isNaN(Date.parse(d.failedAt))) {
    const observed = d.lagObservedAt ? Date.parse(d.lagObservedAt) : NaN;
    const failed = Number.isNaN(observed) ? Date.parse(d.failedAt) : Math.min(Date.parse(d.failedAt), observed);
    const at = new Date(failed).toISOString();
    return {
      windowFrom: new Date(failed - d.lagMs - margin * 1000).toISOString(),
      failedAt: at,
      lagMs: d.lagMs,
      basis: `Aurora: failure time ${at}${failed < Date.parse(d.failedAt) ? ` (the lag observation, earlier than the failover's trigger ${d.failedAt})` : ''} minus the replication lag observed before promotion (${d.lagMs} ms) minus ${margins}`,
    };
  }
  if (d?.at) {
    return {
      windowFrom: new Date(Date.parse(d.at) - margin * 1000).toISOString(),
      basis: `Aurora: the newest point the secondary had replicated before promotion (${d.at}, lag observation time minus lag) minus ${margins}`,
    };
  }
  return undefined;
}

const toJournal = (r: RawJournal): JournalRow => ({
  id: r.id,
  hash: r.hash,
  origin: r.origin,
  committedAt: r.committed_at,
  keys: r.keys ?? [],
  row: r.row ?? {},
});

/**
 * Without a divergence time from the failover's record, the window is found from the data: walk
 * the old journal backwards in commit order until a whole chunk is present in the new one and
 * older than the earliest missing write (or the last write) by the margin. Streaming replication
 * is in order, so nothing older can be missing; the walk reads about as much as diverged.
 */
async function walkBack(
  cfg: ReconcileConfig,
  oldC: Client,
  newC: Client,
  lastWrite: string | null,
): Promise<{ from: string; read: number }> {
  const j = cfg.journal;
  const marginMs = cfg.windowMarginSeconds * 1000;
  let cursor: string | null = null;
  let earliestMissing: number | undefined;
  let read = 0;
  for (;;) {
    const rows: { id: string; at: string }[] = (
      await oldC.query<{ id: string; at: string }>(
        `SELECT ${q(j.id)}::text AS id, to_char(${q(j.committedAt)} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
         FROM ${qTable(j.table)} ${cursor ? `WHERE ${q(j.committedAt)} < $2::timestamptz` : 'WHERE $2::text IS NULL'}
        ORDER BY ${q(j.committedAt)} DESC LIMIT $1`,
        [WALK_CHUNK, cursor],
      )
    ).rows;
    read += rows.length;
    if (rows.length === 0) return { from: new Date(0).toISOString(), read };
    const present = new Set(
      (
        await newC.query<{ id: string }>(
          `SELECT p.id FROM ${probeRows(j.table, j.id, '$1', 'uuid', `x.${q(j.id)}::text AS id`)}`,
          [rows.map((r) => r.id)],
        )
      ).rows.map((r) => r.id),
    );
    for (const r of rows)
      if (!present.has(r.id)) earliestMissing = Math.min(earliestMissing ?? Infinity, Date.parse(r.at));
    const bound = (earliestMissing ?? (lastWrite ? Date.parse(lastWrite) : Date.parse(rows[0]!.at))) - marginMs;
    const newestHere = Date.parse(rows[0]!.at);
    if (rows.every((r) => present.has(r.id)) && newestHere < bound)
      return { from: new Date(bound).toISOString(), read };
    cursor = rows[rows.length - 1]!.at;
  }
}

/**
 * How many journal rows the new side committed over the window besides the old side's ids.
 *
 * A set difference, not NOT EXISTS over the ids: right after a failover the window lies past the
 * last bucket of the journal's statistics (a large table is analyzed rarely), the planner expects
 * a row or two in it, and runs the anti-join as a nested loop that compares every window row with
 * every old id. Seen in the demo: 20 s for 25,000 new rows against 20,000 old ids; at a bank's
 * volume, hours. EXCEPT has only a hashed and a sorted plan, both linear in what they read.
 */
export async function countOtherWrites(
  c: Client,
  cfg: ReconcileConfig,
  window: { from: string; to: string; endExcluded: boolean },
  oldIds: string[],
): Promise<number> {
  const { rows } = await c.query<{ n: string }>(otherWritesSql(cfg, window.endExcluded), [
    window.from,
    window.to,
    oldIds,
  ]);
  return Number(rows[0]!.n);
}

/** The query countOtherWrites runs, with its parameters $1 (from), $2 (to) and $3 (the old ids). */
export function otherWritesSql(cfg: ReconcileConfig, endExcluded: boolean): string {
  const j = cfg.journal;
  return `SELECT count(*) AS n FROM (
            SELECT j.${q(j.id)} FROM ${qTable(j.table)} j
             WHERE j.${q(j.committedAt)} >= $1::timestamptz AND j.${q(j.committedAt)} ${endExcluded ? '<' : '<='} $2::timestamptz
            EXCEPT SELECT unnest($3::uuid[])) AS others`;
}

async function readState(c: Client, t: MutableTable, keys: string[]): Promise<Map<string, StateRow>> {
  const { rows } = await c.query<{ key: string; status: string; version: number; row: Record<string, unknown> }>(
    `SELECT t.${q(t.key)}::text AS key, t.${q(t.status)}::text AS status, t.${q(t.version)}::int AS version, to_jsonb(t) AS row
       FROM ${qTable(t.table)} t WHERE t.${q(t.key)}::text = ANY($1::text[])`,
    [keys],
  );
  return new Map(rows.map((r) => [r.key, { key: r.key, status: r.status, version: r.version, row: r.row }]));
}

const entryColumns = (e: ReconcileConfig['entries']) =>
  `x.${q(e.txnId)}::text AS txn, x.${q(e.idempotencyKey)}::text AS key, x.${q(e.account)}::text AS account,
   x.${q(e.amount)}::text AS amount, to_jsonb(x) AS row, x.${q(e.idempotencyKey)} AS k`;

interface RawEntry {
  txn: string;
  key: string;
  account: string;
  amount: string;
  row: Record<string, unknown>;
}

function byTxn(rows: RawEntry[]): Map<string, EntryRow[]> {
  const out = new Map<string, EntryRow[]>();
  for (const r of rows) {
    const e = { txnId: r.txn, key: r.key, account: r.account, amount: Number(r.amount), row: r.row };
    const list = out.get(r.txn);
    if (list) list.push(e);
    else out.set(r.txn, [e]);
  }
  return out;
}

async function readEntries(c: Client, cfg: ReconcileConfig, txnIds: string[]): Promise<Map<string, EntryRow[]>> {
  const e = cfg.entries;
  if (txnIds.length === 0) return new Map();
  const { rows } = await c.query<RawEntry>(
    `SELECT p.txn, p.key, p.account, p.amount, p.row
       FROM ${probeRows(e.table, e.txnId, '$1', 'uuid', entryColumns(e))}
      ORDER BY p.k`,
    [txnIds],
  );
  return byTxn(rows);
}

/**
 * The entries of every journal row committed from `from`: the same rows readEntries would find
 * for the window's ids, found on the server from the window itself, so the read needs no id list
 * and can start while another session reads the journal rows. One index probe per journal row of
 * the window (OFFSET 0, as in probeRows: no hash join over the whole entries table).
 */
async function readWindowEntries(c: Client, cfg: ReconcileConfig, from: string): Promise<Map<string, EntryRow[]>> {
  const e = cfg.entries;
  const j = cfg.journal;
  const { rows } = await c.query<RawEntry>(
    `SELECT p.txn, p.key, p.account, p.amount, p.row
       FROM ${qTable(j.table)} j
            CROSS JOIN LATERAL (SELECT ${entryColumns(e)} FROM ${qTable(e.table)} x WHERE x.${q(e.txnId)} = j.${q(j.id)} OFFSET 0) AS p
      WHERE j.${q(j.committedAt)} >= $1::timestamptz
      ORDER BY p.k`,
    [from],
  );
  return byTxn(rows);
}

/**
 * Reads the old side's journal over the window and its entries at once, on two sessions that see
 * one snapshot (the second imports the first's): the two reads are each about as long as the
 * other, and back to back they were most of classification's wait on the old side.
 */
async function readOldWindow(
  oldC: Client,
  nOld: RcNode,
  cfg: ReconcileConfig,
  from: string,
  snapshot: string,
): Promise<{ oldRows: JournalRow[]; windowEntries: Map<string, EntryRow[]> }> {
  const j = cfg.journal;
  const entriesRead = withNode(nOld, 'reading-old-primary', async (c2) => {
    await c2.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await c2.query(`SET TRANSACTION SNAPSHOT '${snapshot.replace(/'/g, "''")}'`);
    const out = await readWindowEntries(c2, cfg, from);
    await c2.query('COMMIT');
    return out;
  });
  const journalRead = oldC.query<RawJournal>(
    `SELECT ${journalSelect(cfg)}, to_jsonb(j) AS row FROM ${qTable(j.table)} j WHERE j.${q(j.committedAt)} >= $1::timestamptz ORDER BY j.${q(j.committedAt)}, j.${q(j.id)}`,
    [from],
  );
  const [journal, windowEntries] = await Promise.all([journalRead, entriesRead]);
  return { oldRows: journal.rows.map(toJournal), windowEntries };
}

export function createClassify(config: Config, region: string) {
  return async function reconcileClassify(input: ClassifyInput): Promise<ClassifyResult> {
    const t0 = performance.now();
    const { lap, phases } = laps();
    const cfg = rcConfig(config, input.service);
    const nNew = rcNode(config, input.service, region);
    const nOld = rcOldSide(config, input.service, input.oldRegion, input.oldSide);
    if (nOld.region === nNew.region)
      throw ApplicationFailure.nonRetryable(
        `the old primary and the new one are both ${region}`,
        ReconcileFailure.Config,
      );
    // Aurora has no timelines or WAL positions to show (its storage replicates below SQL): the
    // window comes from the failover's lag evidence instead.
    const aurora = nNew.provider === 'aurora-global';
    return withNode(nNew, 'classifying', async (newC) => {
      await requireWritablePrimary(newC, nNew, 'reconciliation');
      await ensureStore(newC);
      const stored = await storedPass(newC, input.reconciliationId, input.pass);
      if (stored) return { ...stored, alreadyApplied: true, ms: Math.round(performance.now() - t0) };

      const newSide = aurora ? undefined : await sideInfo(newC);
      const switchLsn = newSide ? await switchPoint(newC, newSide.timeline) : undefined;
      return withNode(nOld, 'reading-old-primary', async (oldC) => {
        const oldSide: { inRecovery: boolean } & Partial<SideInfo> = await (
          aurora ? recoveryOf(oldC) : sideInfo(oldC)
        ).catch((err: unknown) => {
          throw ApplicationFailure.retryable(`${nOld.where}: ${errorMessage(err)}`, ReconcileFailure.Unreachable);
        });
        if (oldSide.inRecovery) {
          throw ApplicationFailure.nonRetryable(
            aurora
              ? `${nOld.where} is in recovery: it is a reader, not the restored cluster's writer endpoint; reconcile.preserve returns the writer endpoint (DBCluster.Endpoint), run the reconcile runbook again`
              : `${nOld.where} is a standby now: it has rejoined and its divergent writes were rewound away before reconciliation read them. If a rejoin re-cloned it, the old data directory was kept aside (<dataDir>.before-reclone-*): start a copy of it read-only and reconcile from there`,
            ReconcileFailure.OldSideLost,
          );
        }
        lap('timelines');
        // One snapshot of the old side for every read below, shared with the second session that
        // reads its entries (readOldWindow).
        await oldC.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const snapshot = (await oldC.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
        const j = cfg.journal;
        const last = (
          await oldC.query<{ at: string | null }>(
            `SELECT to_char(max(${q(j.committedAt)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at FROM ${qTable(j.table)}`,
          )
        ).rows[0]!.at;
        let from: string;
        let basis: string;
        let walked = 0;
        let lagBasis: Pick<Divergence, 'failedAt' | 'lagMs'> = {};
        const at = input.handoff?.divergence.at;
        const byLag = aurora && !input.widenFrom ? lagWindow(cfg, input.handoff?.divergence) : undefined;
        if (input.widenFrom) {
          from = input.widenFrom;
          basis = `widened by verify to ${input.widenFrom}`;
        } else if (byLag) {
          ({ windowFrom: from, basis, ...lagBasis } = byLag);
        } else if (at && !aurora) {
          from = new Date(Date.parse(at) - cfg.windowMarginSeconds * 1000).toISOString();
          basis = `last commit the new primary replayed before promotion (${at}) minus ${cfg.windowMarginSeconds}s`;
        } else {
          const w = await walkBack(cfg, oldC, newC, last);
          from = w.from;
          walked = w.read;
          basis = `found by walking the old journal back (${w.read} rows) to a replicated stretch ${cfg.windowMarginSeconds}s before the earliest missing write${aurora ? ' (the failover recorded no replication lag)' : ''}`;
        }
        const to = last ?? from;
        const divergence: Divergence = {
          ...(newSide ? { newTimeline: newSide.timeline } : {}),
          ...(switchLsn ? { switchLsn } : {}),
          ...(oldSide.timeline !== undefined && oldSide.lsn !== undefined
            ? { oldTimeline: oldSide.timeline, oldLsn: oldSide.lsn }
            : {}),
          ...lagBasis,
          windowFrom: from,
          windowTo: to,
          basis,
        };

        // The old side over the window: everything it committed from the window's start, and its entries.
        const { oldRows, windowEntries } = await readOldWindow(oldC, nOld, cfg, from, snapshot);
        lap('readOldWindow');
        const oldIds = oldRows.map((r) => r.id);
        // Which of the window's idempotency keys the new side holds, asked on a session of its own
        // while this one looks the ids up: only the keys of lost transactions matter (filtered
        // below), but those are known only once the ids are, and the two probes took as long.
        const e = cfg.entries;
        const windowKeys = [...windowEntries.values()].flatMap((es) => es.map((x) => x.key));
        const takenRead = withNode(nNew, 'classifying', async (c2) =>
          (
            await c2.query<{ key: string; txn: string }>(
              `SELECT p.key, p.txn FROM ${probeRows(e.table, e.idempotencyKey, '$1', 'uuid', `x.${q(e.idempotencyKey)}::text AS key, x.${q(e.txnId)}::text AS txn`)}`,
              [windowKeys],
            )
          ).rows.map((r) => [r.key, r.txn] as const),
        );
        // Awaited below; a failure of the lookup that runs meanwhile must not leave it unhandled.
        takenRead.catch(() => undefined);
        const {
          byId: newById,
          before: earlier,
          others: onlyNew,
        } = await (async () => {
          // The new side: the same ids wherever they are (a retry after the failover), and how many
          // others it wrote over the window.
          const byId = new Map(
            (
              await newC.query<RawJournal>(
                `SELECT p.* FROM ${probeRows(j.table, j.id, '$1', 'uuid', `${journalSelect(cfg, 'x')}, to_jsonb(x) AS row`)}`,
                [oldIds],
              )
            ).rows.map((r) => [r.id, toJournal(r)]),
          );
          // A widened pass counts only what it adds before the earlier window (see rules.ts countBefore).
          const before =
            input.pass > 1
              ? ((
                  await newC.query<{ from: string | null }>(
                    `SELECT to_char(window_from AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS from FROM regionshift.reconcile_runs WHERE id = $1`,
                    [input.reconciliationId],
                  )
                ).rows[0]?.from ?? undefined)
              : undefined;
          const windowEnd = before ?? new Date(Date.parse(to) + cfg.windowMarginSeconds * 1000).toISOString();
          const others = await countOtherWrites(
            newC,
            cfg,
            { from, to: windowEnd, endExcluded: before !== undefined },
            oldIds,
          );
          return { byId, before, others };
        })();
        const newRowsRead = newById.size + onlyNew;
        lap('readNewSide');

        const notReplicated = oldRows.filter((o) => {
          const n = newById.get(o.id);
          return !n || n.hash !== o.hash || n.origin !== o.origin || n.committedAt !== o.committedAt;
        });
        const oldEntries = new Map(
          notReplicated.filter((o) => windowEntries.has(o.id)).map((o) => [o.id, windowEntries.get(o.id)!]),
        );
        const sameId = notReplicated
          .filter((o) => newById.has(o.id) && newById.get(o.id)!.hash !== o.hash)
          .map((o) => o.id);
        const newEntries = await readEntries(newC, cfg, sameId);
        const lostKeys = notReplicated
          .filter((o) => !newById.has(o.id))
          .flatMap((o) => (oldEntries.get(o.id) ?? []).map((e) => e.key));
        const lost = new Set(lostKeys);
        const takenKeys = new Map((await takenRead).filter(([k]) => lost.has(k)));

        lap('readEntries');
        const state = new Map<MutableTable, { old: Map<string, StateRow>; new: Map<string, StateRow> }>();
        for (const t of cfg.mutable) {
          const keys = [
            ...new Set(
              notReplicated.flatMap((o) =>
                o.keys.filter((k) => k.startsWith(t.keyPrefix)).map((k) => k.slice(t.keyPrefix.length)),
              ),
            ),
          ];
          if (keys.length === 0) continue;
          state.set(t, { old: await readState(oldC, t, keys), new: await readState(newC, t, keys) });
        }
        await oldC.query('COMMIT');
        lap('readState');
        const result = classify({
          cfg,
          reconciliationId: input.reconciliationId,
          oldRegion: nOld.region,
          newRegion: nNew.region,
          oldRows,
          newWindowRows: [],
          newById,
          oldEntries,
          newEntries,
          takenKeys,
          state,
          ...(earlier ? { countBefore: earlier } : {}),
        });
        result.txn['only-new'] = onlyNew;
        const summary: ClassifyResult = {
          reconciliationId: input.reconciliationId,
          pass: input.pass,
          alreadyApplied: false,
          divergence,
          read: { oldRows: oldRows.length + walked, newRows: newRowsRead },
          txn: result.txn,
          rows: result.rows,
          toApply: result.apply.length,
          toStateMove: result.moves.length,
          toCase: result.cases.length,
          ms: 0,
        };
        lap('classify');
        const applied = await stage(newC, input, nNew, nOld, result, summary);
        lap('stage');
        summary.phases = phases;
        if (applied) return { ...applied, alreadyApplied: true, ms: Math.round(performance.now() - t0) };
        return { ...summary, ms: Math.round(performance.now() - t0) };
      });
    });
  };
}

async function storedPass(c: Client, id: string, pass: number): Promise<ClassifyResult | undefined> {
  const { rows } = await c.query<{ applied_pass: number; counts: Record<string, ClassifyResult> }>(
    'SELECT applied_pass, counts FROM regionshift.reconcile_runs WHERE id = $1',
    [id],
  );
  const r = rows[0];
  if (!r || r.applied_pass < pass) return undefined;
  return r.counts[String(pass)];
}

/** Stages the pass's findings in one transaction; returns the stored figures if it was applied meanwhile. */
async function stage(
  c: Client,
  input: ClassifyInput,
  nNew: RcNode,
  nOld: RcNode,
  result: Classification,
  summary: ClassifyResult,
): Promise<ClassifyResult | undefined> {
  await c.query('BEGIN');
  try {
    await c.query(
      `INSERT INTO regionshift.reconcile_runs (id, service, old_region, new_region, failover)
       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`,
      [
        input.reconciliationId,
        input.service,
        nOld.region,
        nNew.region,
        input.handoff
          ? JSON.stringify({ workflowId: input.handoff.failoverWorkflowId, runId: input.handoff.failoverRunId })
          : null,
      ],
    );
    const run = (
      await c.query<{ applied_pass: number; counts: Record<string, ClassifyResult> }>(
        'SELECT applied_pass, counts FROM regionshift.reconcile_runs WHERE id = $1 FOR UPDATE',
        [input.reconciliationId],
      )
    ).rows[0]!;
    if (run.applied_pass >= input.pass) {
      await c.query('ROLLBACK');
      return run.counts[String(input.pass)];
    }
    await c.query('DELETE FROM regionshift.reconcile_items WHERE reconciliation_id = $1 AND pass = $2', [
      input.reconciliationId,
      input.pass,
    ]);
    const items: { kind: string; subject: string; at: string | null; body: unknown }[] = [
      ...result.apply.map((t) => ({ kind: 'apply', subject: t.txnId, at: t.committedAt, body: t })),
      ...result.moves.map((m) => ({ kind: 'move', subject: `${m.table}:${m.key}`, at: null, body: m })),
      ...result.cases.map((k) => ({ kind: 'case', subject: k.id, at: null, body: k })),
      ...result.duplicates.map((id) => ({ kind: 'duplicate', subject: id, at: null, body: {} })),
    ];
    // One statement per STAGE_CHUNK items, the chunk as one jsonb document: a round trip and a
    // parse per chunk, not an array literal of escaped JSON per column.
    for (let i = 0; i < items.length; i += STAGE_CHUNK) {
      await c.query(
        `INSERT INTO regionshift.reconcile_items (reconciliation_id, pass, seq, kind, subject, committed_at, body)
         SELECT $1, $2::int, $3::int + s.ord::int - 1, s.x->>'kind', s.x->>'subject', (s.x->>'at')::timestamptz, s.x->'body'
           FROM jsonb_array_elements($4::jsonb) WITH ORDINALITY AS s(x, ord)`,
        [input.reconciliationId, input.pass, i, JSON.stringify(items.slice(i, i + STAGE_CHUNK))],
      );
    }
    await c.query(
      `UPDATE regionshift.reconcile_runs
          SET pass = greatest(pass, $2::int), divergence = $3, window_from = least(coalesce(window_from, $4::timestamptz), $4::timestamptz),
              window_to = $5::timestamptz, counts = counts || jsonb_build_object(($2::int)::text, $6::jsonb), classified_at = now()
        WHERE id = $1`,
      [
        input.reconciliationId,
        input.pass,
        JSON.stringify(summary.divergence),
        summary.divergence.windowFrom,
        summary.divergence.windowTo,
        JSON.stringify(summary),
      ],
    );
    await appendAudit(c, input.reconciliationId, {
      runId: input.workflowRunId,
      by: input.requestedBy,
      what: `pass ${input.pass}: read ${summary.read.oldRows} old / ${summary.read.newRows} new journal rows from ${summary.divergence.windowFrom}; ${summary.toApply} to apply, ${summary.toStateMove} state moves, ${summary.toCase} cases`,
    });
    await c.query('COMMIT');
    return undefined;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
