// Types shared by the reconciliation and failback activities, the workflow, the CLI and the
// Slack bot. No imports with side effects: workflow code imports these as types.
import type { RejoinResult, TrafficState } from './activities';
import type { DecisionSignature } from './approvals';

/** What an unplanned failover hands over to reconciliation and failback (from its run record). */
export interface ReconcileHandoff {
  failoverWorkflowId: string;
  failoverRunId: string;
  /** The region that was primary before the failover: it holds the writes that never replicated. */
  oldPrimary: string;
  /** The region promoted by the failover. */
  newPrimary: string;
  divergence: {
    /** The new primary's timeline after promotion. */
    timeline?: number;
    /** The WAL position the new primary had replayed when it was promoted. */
    lsn?: string;
    /** Commit time of the last transaction it had replayed (ISO): the divergence point in time. */
    at?: string;
    /**
     * When the old primary failed (ISO): the failover's trigger time, else its start. With the
     * replication lag observed before promotion, the divergence point of a provider that only
     * reports lag (Aurora: failure time minus lag).
     */
    failedAt?: string;
    /** The replication lag the target reported before promotion (ms), and when it was observed (ISO). */
    lagMs?: number;
    lagObservedAt?: string;
  };
  /** Traffic records before the failover: what failback restores. */
  trafficBefore?: TrafficState;
  failoverEndedAt?: string;
}

/** Stable per failover: a second reconciliation of the same failover finds the first one's work. */
export function reconciliationIdOf(h: Pick<ReconcileHandoff, 'failoverRunId'>): string {
  return `rc-${h.failoverRunId}`;
}

/**
 * Transaction classes (by journal id) and mutable-row classes (by key). `replicated` rows are in
 * the window's margin and on both sides as replication left them: not part of the divergence.
 */
export const TXN_CLASSES = ['only-old', 'only-new', 'identical', 'same-id-different-payload', 'replicated'] as const;
export type TxnClass = (typeof TXN_CLASSES)[number];
export const ROW_CLASSES = [
  'state-forward',
  'update-update',
  'update-delete',
  'unique-key-collision',
  'conflicting-state',
  'lost-insert',
  'identical-row',
] as const;
export type RowClass = (typeof ROW_CLASSES)[number];

export const CASE_KINDS = [
  'overdraft',
  'same-id-different-payload',
  'conflicting-state',
  'update-delete',
  'unique-key-collision',
  'external-effect',
  'high-value',
  'verify-mismatch',
] as const;
export type CaseKind = (typeof CASE_KINDS)[number];

export type CaseAction = 'accept' | 'reject' | 'compensate';

export interface ClassifyInput {
  service: string;
  reconciliationId: string;
  oldRegion: string;
  /** Where the old side is read when it is not the old region's own database (Aurora: the restored cluster). */
  oldSide?: RestoredOldSide;
  handoff?: ReconcileHandoff;
  /** Which pass: 1, then one more per widening of the window. */
  pass: number;
  /** Read from here instead (ISO), when verify found a difference just before the window. */
  widenFrom?: string;
  requestedBy: string;
  workflowRunId: string;
}

export interface Divergence {
  /** The new primary's timeline, and where it forked from its parent (its history file). */
  newTimeline?: number;
  switchLsn?: string;
  /** The old primary's timeline and last WAL position: it wrote after switchLsn when it diverged. */
  oldTimeline?: number;
  oldLsn?: string;
  /** Aurora: the failure time and replication lag the window's start was computed from. */
  failedAt?: string;
  lagMs?: number;
  /** How the window's start was found. */
  windowFrom: string;
  windowTo: string;
  basis: string;
}

export interface ClassifyResult {
  reconciliationId: string;
  pass: number;
  /** The pass had been applied already: these are the stored figures. */
  alreadyApplied: boolean;
  divergence: Divergence;
  /** Rows read from each side's journal: proportional to the divergence, not to the table. */
  read: { oldRows: number; newRows: number };
  txn: Record<TxnClass, number>;
  rows: Record<RowClass, number>;
  /** What apply will do, and what it will hand to a person. */
  toApply: number;
  toStateMove: number;
  toCase: number;
  ms: number;
  /** Where the time went (ms per phase). */
  phases?: Record<string, number>;
}

export interface ApplyInput {
  service: string;
  reconciliationId: string;
  pass: number;
  requestedBy: string;
  workflowRunId: string;
}

export interface ApplyResult {
  reconciliationId: string;
  pass: number;
  alreadyApplied: boolean;
  /** Lost transactions re-inserted with their original ids and times. */
  transactionsApplied: number;
  entriesApplied: number;
  stateMoves: number;
  /** Exact duplicates dropped (same id and payload on both sides). */
  duplicatesDropped: number;
  casesOpened: number;
  /** Per case kind, the cases this pass opened. */
  casesByKind: Partial<Record<CaseKind, number>>;
  accountsTouched: number;
  /** Every invariant held at commit (else nothing was committed and the activity failed). */
  invariantsHeld: boolean;
  ms: number;
  /** Where the time went (ms per phase). */
  phases?: Record<string, number>;
}

export interface VerifyInput {
  service: string;
  reconciliationId: string;
  oldRegion: string;
  /** As ClassifyInput.oldSide. */
  oldSide?: RestoredOldSide;
  /** Open a verify-mismatch case for what the comparison finds (last attempt) instead of asking to widen. */
  escalate: boolean;
}

export interface TableVerify {
  table: string;
  /** Rows compared on each side (outside the window). */
  rows: number;
  /** Range checksums computed per side, and rows fetched to pin differences down. */
  ranges: number;
  rowsFetched: number;
  differences: number;
  /** Mutable tables: keys left out because a journal row in the window names them (classify and apply decided those). */
  excluded?: number;
  ms: number;
}

export interface VerifyMismatch {
  table: string;
  key: string;
  side: 'only-old' | 'only-new' | 'different';
  /** The row's window column (commit time), when it has one. */
  at?: string;
  /** Mutable rows: the row as each region has it (null: absent there), for the person the case goes to. */
  oldRow?: Record<string, unknown> | null;
  newRow?: Record<string, unknown> | null;
}

export interface VerifyResult {
  reconciliationId: string;
  windowFrom: string;
  tables: TableVerify[];
  /** Touched accounts whose balance is not the sum of their entries. */
  balanceMismatches: string[];
  mismatches: VerifyMismatch[];
  /** Where the window should start to take the differences in (ISO), when widening can explain them. */
  widenTo?: string;
  /** The case opened for unexplained differences (escalate). */
  escalatedCase?: string;
  ok: boolean;
  ms: number;
}

export interface ReportInput {
  service: string;
  reconciliationId: string;
  workflowId: string;
  runId: string;
  requestedBy: string;
  /** The restored cluster the old side was read from (Aurora): the report says how to delete it. */
  oldSide?: RestoredOldSide;
}

export interface CaseSummary {
  id: string;
  kind: CaseKind;
  status: 'open' | 'resolved';
  txnId?: string;
  key?: string;
  summary: string;
}

/** The reconciliation's audit record, stored with the cases in the new primary and returned to the run. */
export interface ReconcileReport {
  reconciliationId: string;
  oldRegion: string;
  newRegion: string;
  failover?: { workflowId: string; runId: string };
  divergence?: Divergence;
  passes: number;
  txn: Record<TxnClass, number>;
  rows: Record<RowClass, number>;
  applied: { transactions: number; entries: number; stateMoves: number; duplicatesDropped: number };
  cases: { opened: number; open: number; byKind: Partial<Record<CaseKind, number>>; list: CaseSummary[] };
  verify?: { ok: boolean; differences: number; balanceMismatches: number; escalatedCase?: string; ms: number };
  /**
   * Aurora: the cluster restored to read the old side, which costs money while it runs, and the
   * commands that delete it once nobody needs to query it (the snapshot copy it came from stays).
   */
  oldSide?: { region: string; cluster: string; instance: string; snapshot: string; deleteCommands: string[] };
  /** Each reconciliation run that worked on it, in order. */
  audit: { runId: string; by: string; at: string; what: string }[];
}

export interface PreserveOldInput {
  service: string;
  /** The region now primary: a node found streaming from it has already lost its divergent writes. */
  newPrimary: string;
  /** When the failover happened (ISO): Aurora's snapshot of the old primary is looked for from then on. */
  since?: string;
}

/**
 * Aurora: the old primary's data as Aurora kept it (the rds:unplanned-global-failover-* snapshot,
 * copied), restored as a cluster of its own and made read-only; reconciliation reads the old side
 * there. Connection details only: each worker takes the credentials from its own config and
 * environment (the old region's adminUser and passwordEnv: a restored cluster keeps the source's
 * master user).
 */
export interface RestoredOldSide {
  region: string;
  cluster: string;
  instance: string;
  /** The manual snapshot copy it was restored from. */
  snapshot: string;
  host: string;
  port: number;
  database: string;
  /** The commands that delete the restored cluster (instance first, then the cluster). */
  deleteCommands: string[];
}

/** Failure types of a preserve that is waiting on something outside regionshift (retried by the workflow, which reports the wait). */
export const PRESERVE_WAITING = ['SnapshotNotYet', 'RestoreInProgress'] as const;

export interface PreserveOldResult {
  region: string;
  /**
   * How the old primary's writes are kept: read-only on its own timeline (postgres-streaming), or
   * Aurora's snapshot of it restored as a read-only cluster (aurora-global).
   */
  state: 'read-only-primary' | 'restored-read-only-cluster';
  /** The node was started here (it was down). */
  started: boolean;
  /** The node was made read-only here (it was writable). */
  fenced: boolean;
  timeline?: number;
  lsn?: string;
  /** Aurora: the snapshot Aurora took and the copy regionshift keeps. */
  snapshot?: { source: string; copy: string };
  /** Aurora: where classify and verify read the old side. */
  oldSide?: RestoredOldSide;
  detail: string;
}

export interface FailbackCheckInput {
  service: string;
  reconciliationId: string;
  override?: { by: string; reason: string };
}

export interface FailbackCheckResult {
  reconciled: boolean;
  /** Reconciliation read the old primary's journal (its writes may now be discarded by a rewind). */
  oldSideRead: boolean;
  verified: boolean;
  openCases: CaseSummary[];
  /** The checks that failed and were overridden. */
  overridden: string[];
  detail: string;
}

export interface ProposedTxn {
  /** The journal row to insert, as to_jsonb gives it (original id and times, or a new id for a compensation). */
  journal: Record<string, unknown>;
  entries: Record<string, unknown>[];
  /** The transaction this one books or compensates. */
  originalTxnId: string;
}

export interface ProposedStateMove {
  table: string;
  key: string;
  /** Move to this status; `row` inserts the old side's row when the new side has none. */
  status?: string;
  row?: Record<string, unknown>;
  /** The new side's version when the case was opened: the move applies only if nobody changed it since. */
  expectVersion: number | null;
}

export interface Proposal {
  description: string;
  transactions: ProposedTxn[];
  stateMoves: ProposedStateMove[];
  /** Accounts the person accepts to see below zero (accepting an overdraft). */
  allowNegative?: string[];
}

export interface ReconcileCase {
  id: string;
  reconciliationId: string;
  service: string;
  kind: CaseKind;
  /** The first transaction the case holds back, and all of them (a row case can hold several). */
  txnId?: string;
  txnIds: string[];
  key?: string;
  summary: string;
  /** Both versions, as each region has it (null: absent there). */
  oldVersion: unknown;
  newVersion: unknown;
  /** What each action would book (never an overwrite or a delete); reject books nothing. */
  proposals: Partial<Record<'accept' | 'compensate', Proposal>>;
  status: 'open' | 'resolved';
  resolution?: CaseAction;
  resolvedBy?: string;
  resolvedAt?: string;
  note?: string;
  openedAt: string;
}

export interface CasesListInput {
  service: string;
  /** Default: open. */
  status?: 'open' | 'resolved' | 'all';
  reconciliationId?: string;
}

export interface CaseResolveInput {
  service: string;
  caseId: string;
  by: string;
  action: CaseAction;
  note?: string;
  /** Slack user groups the bot found `by` in (signed with the rest). */
  groups?: string[];
  /** Over the canonical message (src/contract/approvals.ts); verified before the case is touched. */
  signature?: DecisionSignature;
  /** Set once verified: how the decision was signed, recorded with the case. */
  signed?: string;
}

export interface CaseResolveResult {
  case: ReconcileCase;
  /** False when the case was already resolved with this action (a retry). */
  changed: boolean;
  detail: string;
}

/** The failback's own part of its run record. */
export interface FailbackRecord {
  reconciliationId: string;
  check?: FailbackCheckResult;
  override?: { by: string; reason: string };
  /** The old primary brought back as a standby of the current one (pg_rewind or a fresh copy). */
  oldPrimaryRejoin?: RejoinResult;
  trafficRestored?: { before: TrafficState; after: TrafficState };
}
