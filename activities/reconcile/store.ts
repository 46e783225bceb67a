// Reconciliation's durable state, kept in the new primary's own database (schema regionshift,
// next to the fence probe objects) so that it replicates with the data it describes, survives any
// worker, and can be read and resolved by the CLI and the Slack bot without either holding state:
//   reconcile_runs        one row per reconciliation (per failover): window, counts, audit
//   reconcile_items       what classification found, staged for apply (never sent through Temporal)
//   reconcile_cases       what a person must decide, with both versions and the proposals
//   reconcile_provenance  every transaction reconciliation or a case booked, and why
import type { Client } from 'pg';
import type { CaseSummary, ReconcileCase } from '../../src/contract/reconcile';

export const DDL = `
CREATE SCHEMA IF NOT EXISTS regionshift;
CREATE TABLE IF NOT EXISTS regionshift.reconcile_runs (
  id text PRIMARY KEY,
  service text NOT NULL,
  old_region text NOT NULL,
  new_region text NOT NULL,
  failover jsonb,
  divergence jsonb,
  window_from timestamptz,
  window_to timestamptz,
  pass int NOT NULL DEFAULT 0,
  applied_pass int NOT NULL DEFAULT 0,
  counts jsonb NOT NULL DEFAULT '{}',
  applied jsonb NOT NULL DEFAULT '{}',
  verify jsonb,
  report jsonb,
  audit jsonb NOT NULL DEFAULT '[]',
  classified_at timestamptz,
  applied_at timestamptz,
  verified_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS regionshift.reconcile_items (
  reconciliation_id text NOT NULL,
  pass int NOT NULL,
  seq int NOT NULL,
  kind text NOT NULL,          -- apply | move | case | duplicate
  subject text NOT NULL,       -- transaction id or table:key
  committed_at timestamptz,
  body jsonb NOT NULL,
  PRIMARY KEY (reconciliation_id, pass, seq)
);
CREATE TABLE IF NOT EXISTS regionshift.reconcile_cases (
  id text PRIMARY KEY,
  reconciliation_id text NOT NULL,
  service text NOT NULL,
  kind text NOT NULL,
  txn_ids uuid[] NOT NULL DEFAULT '{}',
  key text,
  summary text NOT NULL,
  old_version jsonb,
  new_version jsonb,
  proposals jsonb NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
  resolution text CHECK (resolution IN ('accept', 'reject', 'compensate')),
  resolved_by text,
  resolved_at timestamptz,
  note text,
  outcome jsonb,
  opened_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reconcile_cases_open ON regionshift.reconcile_cases (service, status);
CREATE TABLE IF NOT EXISTS regionshift.reconcile_provenance (
  txn_id uuid PRIMARY KEY,
  reconciliation_id text NOT NULL,
  original_txn_id uuid NOT NULL,
  source_region text NOT NULL,
  how text NOT NULL,
  case_id text,
  booked_at timestamptz NOT NULL DEFAULT now()
);
`;

/** Creates the tables when missing (they replicate to the standbys with everything else). */
export async function ensureStore(c: Client): Promise<void> {
  const { rows } = await c.query<{ ok: boolean }>(
    `SELECT to_regclass('regionshift.reconcile_provenance') IS NOT NULL AS ok`,
  );
  if (!rows[0]!.ok) {
    // Two workers creating the schema at once: the second waits for the first.
    await c.query('SELECT pg_advisory_lock(hashtext($1))', ['regionshift.reconcile.ddl']);
    try {
      await c.query(DDL);
    } finally {
      await c.query('SELECT pg_advisory_unlock(hashtext($1))', ['regionshift.reconcile.ddl']);
    }
  }
}

/** Whether the store exists on this node (a standby has it once the primary made it). */
export async function storeExists(c: Client): Promise<boolean> {
  const { rows } = await c.query<{ ok: boolean }>(
    `SELECT to_regclass('regionshift.reconcile_cases') IS NOT NULL AS ok`,
  );
  return rows[0]!.ok;
}

interface CaseRow {
  id: string;
  reconciliation_id: string;
  service: string;
  kind: ReconcileCase['kind'];
  txn_ids: string[];
  key: string | null;
  summary: string;
  old_version: unknown;
  new_version: unknown;
  proposals: ReconcileCase['proposals'];
  status: ReconcileCase['status'];
  resolution: ReconcileCase['resolution'] | null;
  resolved_by: string | null;
  resolved_at: Date | null;
  note: string | null;
  opened_at: Date;
}

export const CASE_COLUMNS =
  'id, reconciliation_id, service, kind, txn_ids::text[] AS txn_ids, key, summary, old_version, new_version, proposals, status, resolution, resolved_by, resolved_at, note, opened_at';

export function caseOf(r: CaseRow): ReconcileCase {
  return {
    id: r.id,
    reconciliationId: r.reconciliation_id,
    service: r.service,
    kind: r.kind,
    ...(r.txn_ids.length ? { txnId: r.txn_ids[0] } : {}),
    txnIds: r.txn_ids,
    ...(r.key ? { key: r.key } : {}),
    summary: r.summary,
    oldVersion: r.old_version,
    newVersion: r.new_version,
    proposals: r.proposals ?? {},
    status: r.status,
    ...(r.resolution ? { resolution: r.resolution } : {}),
    ...(r.resolved_by ? { resolvedBy: r.resolved_by } : {}),
    ...(r.resolved_at ? { resolvedAt: r.resolved_at.toISOString() } : {}),
    ...(r.note ? { note: r.note } : {}),
    openedAt: r.opened_at.toISOString(),
  };
}

export async function readCases(c: Client, where: string, params: unknown[]): Promise<ReconcileCase[]> {
  const { rows } = await c.query<CaseRow>(
    `SELECT ${CASE_COLUMNS} FROM regionshift.reconcile_cases WHERE ${where} ORDER BY opened_at, id`,
    params,
  );
  return rows.map(caseOf);
}

export function summaryOf(c: ReconcileCase): CaseSummary {
  return {
    id: c.id,
    kind: c.kind,
    status: c.status,
    ...(c.txnId ? { txnId: c.txnId } : {}),
    ...(c.key ? { key: c.key } : {}),
    summary: c.summary,
  };
}

export async function appendAudit(
  c: Client,
  id: string,
  entry: { runId: string; by: string; what: string },
): Promise<void> {
  await c.query(
    `UPDATE regionshift.reconcile_runs SET audit = audit || jsonb_build_array(jsonb_build_object('runId', $2::text, 'by', $3::text, 'at', now(), 'what', $4::text)) WHERE id = $1`,
    [id, entry.runId, entry.by, entry.what],
  );
}
