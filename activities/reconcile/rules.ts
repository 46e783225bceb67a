// Reconciliation's decisions, as pure functions over rows already read from both sides: which
// class each transaction and each mutable row falls in, what is safe to apply, and what goes to a
// person with which proposals. No I/O here (classify.ts reads, apply.ts writes), so every rule
// can be tested on its own.
import { createHash } from 'node:crypto';
import type { MutableTable, ReconcileConfig } from '../../src/lib/config/reconcile';
import type { CaseKind, Proposal, ProposedTxn, ReconcileCase, RowClass, TxnClass } from '../../src/contract/reconcile';

export type Json = Record<string, unknown>;

/** A journal row as read for classification; `row` is the whole row (to_jsonb) for re-insertion. */
export interface JournalRow {
  id: string;
  hash: string;
  origin: string;
  committedAt: string;
  keys: string[];
  row: Json;
}

export interface EntryRow {
  txnId: string;
  key: string;
  account: string;
  amount: number;
  row: Json;
}

/** A mutable row: key, status and version, and the whole row. */
export interface StateRow {
  key: string;
  status: string;
  version: number;
  row: Json;
}

/** A case as the rules draw it up, before it is stored (and given its service, status, times). */
export type CaseDraft = Pick<
  ReconcileCase,
  'id' | 'kind' | 'txnIds' | 'key' | 'summary' | 'oldVersion' | 'newVersion' | 'proposals'
>;

export interface StateMove {
  table: string;
  key: string;
  /** Move the new side's row to this status and version… */
  status?: string;
  version?: number;
  /** …or insert the old side's row (the new side never had it). */
  row?: Json;
  /** The new side's version when classified (null: absent): a person's move applies only if unchanged. */
  expectVersion: number | null;
  /**
   * Reconciliation's own moves are decided again under the row lock at apply time: the row moves
   * to `status` only if that is further along the declared order than where it is now (the new
   * region keeps writing between classification and apply).
   */
  forward?: boolean;
}

/** A lost transaction that is safe to re-apply, unless the balances say otherwise at apply time. */
export interface TxnToApply {
  txnId: string;
  committedAt: string;
  journal: Json;
  entries: Json[];
  /** Net amount per account. */
  deltas: Record<string, number>;
}

export interface Classification {
  txn: Record<TxnClass, number>;
  rows: Record<RowClass, number>;
  apply: TxnToApply[];
  moves: StateMove[];
  cases: CaseDraft[];
  /** Same id and payload written on both sides after the divergence: dropped, never applied twice. */
  duplicates: string[];
}

export function emptyTxnCounts(): Record<TxnClass, number> {
  return { 'only-old': 0, 'only-new': 0, identical: 0, 'same-id-different-payload': 0, replicated: 0 };
}

export function emptyRowCounts(): Record<RowClass, number> {
  return {
    'state-forward': 0,
    'update-update': 0,
    'update-delete': 0,
    'unique-key-collision': 0,
    'conflicting-state': 0,
    'lost-insert': 0,
    'identical-row': 0,
  };
}

/** Short, stable, readable: the same finding in a second run gets the same id. */
export function caseId(reconciliationId: string, kind: CaseKind, subject: string): string {
  const prefix: Record<CaseKind, string> = {
    overdraft: 'od',
    'same-id-different-payload': 'sid',
    'conflicting-state': 'cs',
    'update-delete': 'ud',
    'unique-key-collision': 'uk',
    'external-effect': 'ext',
    'high-value': 'hv',
    'verify-mismatch': 'vm',
  };
  return `${prefix[kind]}-${createHash('sha256').update(`${reconciliationId}|${kind}|${subject}`).digest('hex').slice(0, 8)}`;
}

/** A derived id (UUIDv8 from a name), for compensating transactions and re-keyed entries. */
export function derivedUuid(name: string): string {
  const b = createHash('sha256').update(name).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = Buffer.from(b).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export function rankOf(table: MutableTable, status: string): number {
  return table.states.indexOf(status);
}

function deltasOf(entries: EntryRow[]): Record<string, number> {
  const d: Record<string, number> = {};
  for (const e of entries) d[e.account] = (d[e.account] ?? 0) + e.amount;
  return d;
}

/** What a transaction moves: the sum of its credits (equal to its debits when it balances). */
export function valueOf(entries: EntryRow[]): number {
  return entries.reduce((sum, e) => sum + (e.amount > 0 ? e.amount : 0), 0);
}

function touchesExternal(cfg: ReconcileConfig, entries: EntryRow[], keys: string[]): boolean {
  return (
    entries.some((e) => e.account.startsWith(cfg.externalAccountPrefix)) ||
    keys.some((k) => k.startsWith(cfg.externalAccountPrefix))
  );
}

function versionOf(entries: EntryRow[]): { entries: Json[] } {
  return { entries: entries.map((e) => e.row) };
}

function bookOriginal(j: JournalRow, entries: EntryRow[], description: string, allowNegative?: string[]): Proposal {
  return {
    description,
    transactions: [{ journal: j.row, entries: entries.map((e) => e.row), originalTxnId: j.id }],
    stateMoves: [],
    ...(allowNegative ? { allowNegative } : {}),
  };
}

export interface ClassifyArgs {
  cfg: ReconcileConfig;
  reconciliationId: string;
  oldRegion: string;
  newRegion: string;
  /** The old side's journal from the window's start to its last write. */
  oldRows: JournalRow[];
  /** The new side's journal over the same window. */
  newWindowRows: JournalRow[];
  /** New-side rows with an id of oldRows, wherever their commit time (a client's retry after the failover). */
  newById: Map<string, JournalRow>;
  /** Entries of the old rows that are not replicated, by transaction. */
  oldEntries: Map<string, EntryRow[]>;
  /** Entries on the new side of same-id transactions. */
  newEntries: Map<string, EntryRow[]>;
  /** Idempotency keys of lost entries already taken on the new side, with the transaction holding them. */
  takenKeys: Map<string, string>;
  /** Mutable rows named by the old rows' keys: per table, the row on each side. */
  state: Map<MutableTable, { old: Map<string, StateRow>; new: Map<string, StateRow> }>;
  /**
   * A widened pass re-reads the earlier window too (mutable rows need every touch): only what it
   * adds, rows committed before this time, is counted again.
   */
  countBefore?: string;
}

/**
 * A row is `replicated` when the new side holds it exactly as the old one wrote it (same id,
 * origin, commit time, payload): it streamed before the divergence. Same id and payload written
 * separately (a client's retry in the other region) is an `identical` duplicate.
 */
function sameWrite(a: JournalRow, b: JournalRow): boolean {
  // committedAt is read as UTC text with microseconds on both sides (see classify.ts).
  return a.origin === b.origin && a.committedAt === b.committedAt;
}

export function classify(args: ClassifyArgs): Classification {
  const { cfg, reconciliationId } = args;
  const out: Classification = {
    txn: emptyTxnCounts(),
    rows: emptyRowCounts(),
    apply: [],
    moves: [],
    cases: [],
    duplicates: [],
  };
  const oldIds = new Set(args.oldRows.map((r) => r.id));
  for (const r of args.newWindowRows) if (!oldIds.has(r.id)) out.txn['only-new']++;
  const counted = (r: JournalRow): boolean =>
    !args.countBefore || Date.parse(r.committedAt) < Date.parse(args.countBefore);
  const count = (cls: TxnClass, r: JournalRow): void => {
    if (counted(r)) out.txn[cls]++;
  };

  // Transactions the old side wrote after the divergence (not replicated), and whether each is lost.
  const diverged: JournalRow[] = [];
  const lost: JournalRow[] = [];
  for (const o of args.oldRows) {
    const n = args.newById.get(o.id);
    if (!n) {
      count('only-old', o);
      diverged.push(o);
      lost.push(o);
    } else if (n.hash !== o.hash) {
      count('same-id-different-payload', o);
      diverged.push(o);
      const oldE = args.oldEntries.get(o.id) ?? [];
      const newE = args.newEntries.get(o.id) ?? [];
      out.cases.push(sameIdCase(args, o, n, oldE, newE));
    } else if (sameWrite(o, n)) {
      count('replicated', o);
    } else {
      count('identical', o);
      diverged.push(o);
      if (counted(o)) out.duplicates.push(o.id);
    }
  }

  // Mutable rows: decided per key; the transactions that touched a key in conflict go with its case.
  const heldByRowCase = new Map<string, string>();
  for (const [table, sides] of args.state) {
    const touches = new Map<string, string[]>();
    const newlyCounted = new Set<string>();
    for (const o of diverged) {
      for (const k of o.keys) {
        if (!k.startsWith(table.keyPrefix)) continue;
        const key = k.slice(table.keyPrefix.length);
        touches.set(key, [...(touches.get(key) ?? []), o.id]);
        if (counted(o)) newlyCounted.add(key);
      }
    }
    for (const [key, txnIds] of touches) {
      const verdict = classifyRow(table, key, sides.old.get(key), sides.new.get(key), txnIds.length);
      if (newlyCounted.has(key)) out.rows[verdict.cls]++;
      if (verdict.move) out.moves.push(verdict.move);
      if (verdict.caseKind) {
        const lostHere = txnIds.filter((id) => lost.some((l) => l.id === id));
        const c = rowCase(
          args,
          table,
          key,
          verdict.caseKind,
          verdict.why!,
          sides.old.get(key),
          sides.new.get(key),
          lostHere,
        );
        out.cases.push(c);
        for (const id of lostHere) heldByRowCase.set(id, c.id);
      }
    }
  }

  for (const o of lost) {
    if (heldByRowCase.has(o.id)) continue;
    const entries = args.oldEntries.get(o.id) ?? [];
    const taken = entries.filter((e) => args.takenKeys.has(e.key));
    if (taken.length > 0) {
      out.rows['unique-key-collision']++;
      out.cases.push(collisionCase(args, o, entries, taken));
      continue;
    }
    const value = valueOf(entries);
    if (touchesExternal(cfg, entries, o.keys)) {
      out.cases.push({
        id: caseId(reconciliationId, 'external-effect', o.id),
        kind: 'external-effect',
        txnIds: [o.id],
        summary: `transaction ${o.id} (${value}) committed in ${args.oldRegion} at ${o.committedAt} and never reached ${args.newRegion}; it moves money to or from an external account, so its effect (a payment sent) may already have happened`,
        oldVersion: { journal: o.row, ...versionOf(entries) },
        newVersion: null,
        proposals: {
          accept: bookOriginal(
            o,
            entries,
            `book ${o.id} as it was committed in ${args.oldRegion} (the payment happened)`,
          ),
        },
      });
      continue;
    }
    if (value > cfg.highValueThreshold) {
      out.cases.push({
        id: caseId(reconciliationId, 'high-value', o.id),
        kind: 'high-value',
        txnIds: [o.id],
        summary: `transaction ${o.id} moves ${value}, above the high-value threshold ${cfg.highValueThreshold}; committed in ${args.oldRegion} at ${o.committedAt} and never reached ${args.newRegion}`,
        oldVersion: { journal: o.row, ...versionOf(entries) },
        newVersion: null,
        proposals: { accept: bookOriginal(o, entries, `book ${o.id} with its original id and time`) },
      });
      continue;
    }
    out.apply.push({
      txnId: o.id,
      committedAt: o.committedAt,
      journal: o.row,
      entries: entries.map((e) => e.row),
      deltas: deltasOf(entries),
    });
  }
  out.apply.sort((a, b) => Date.parse(a.committedAt) - Date.parse(b.committedAt) || (a.txnId < b.txnId ? -1 : 1));
  return out;
}

interface RowVerdict {
  cls: RowClass;
  move?: StateMove;
  caseKind?: CaseKind;
  why?: string;
}

/**
 * One mutable row touched by `touchesOld` diverged transactions of the old side. Versions count
 * changes (creation is 1), so the version both sides shared at the divergence is
 * old.version − touchesOld, and the new side's changes since are new.version − that.
 */
export function classifyRow(
  table: MutableTable,
  key: string,
  oldRow: StateRow | undefined,
  newRow: StateRow | undefined,
  touchesOld: number,
): RowVerdict {
  const inOrder = (s: string) => rankOf(table, s) >= 0;
  if (!oldRow && !newRow) return { cls: 'identical-row' };
  if (!oldRow)
    return {
      cls: 'update-delete',
      caseKind: 'update-delete',
      why: `deleted in the old region after the divergence, still present (version ${newRow!.version}, ${newRow!.status}) in the new one`,
    };
  const base = oldRow.version - touchesOld;
  if (!newRow) {
    if (base <= 0) {
      if (!inOrder(oldRow.status))
        return {
          cls: 'conflicting-state',
          caseKind: 'conflicting-state',
          why: `created in the old region in state ${oldRow.status}, which is not in the declared order ${table.states.join(' < ')}`,
        };
      return {
        cls: 'lost-insert',
        move: { table: table.table, key, row: oldRow.row, status: oldRow.status, expectVersion: null, forward: true },
      };
    }
    return {
      cls: 'update-delete',
      caseKind: 'update-delete',
      why: `changed in the old region (to ${oldRow.status}, version ${oldRow.version}) and deleted in the new one`,
    };
  }
  const changedNew = newRow.version - Math.max(base, 0);
  if (base <= 0) {
    // Created on both sides after the divergence under the same key.
    if (newRow.status === oldRow.status) return { cls: 'identical-row' };
    return {
      cls: 'unique-key-collision',
      caseKind: 'unique-key-collision',
      why: `created in both regions after the divergence: ${oldRow.status} in the old one, ${newRow.status} in the new one`,
    };
  }
  if (changedNew < 0) {
    return {
      cls: 'conflicting-state',
      caseKind: 'conflicting-state',
      why: `the new region's version ${newRow.version} is below the shared version ${base}: the versions do not add up`,
    };
  }
  if (newRow.status === oldRow.status) return { cls: changedNew === 0 ? 'state-forward' : 'update-update' };
  if (!inOrder(oldRow.status) || !inOrder(newRow.status)) {
    return {
      cls: changedNew === 0 ? 'conflicting-state' : 'update-update',
      caseKind: 'conflicting-state',
      why: `moved to ${oldRow.status} in the old region and ${changedNew === 0 ? 'unchanged' : 'to'} ${newRow.status} in the new one; ${[oldRow.status, newRow.status].filter((s) => !inOrder(s)).join(', ')} is not in the declared order ${table.states.join(' < ')}`,
    };
  }
  const forward = rankOf(table, oldRow.status) > rankOf(table, newRow.status);
  if (changedNew === 0) {
    // Only the old side moved it: forward is safe, backward is not something the order allows.
    if (!forward)
      return {
        cls: 'conflicting-state',
        caseKind: 'conflicting-state',
        why: `moved back from ${newRow.status} to ${oldRow.status} in the old region, against the declared order`,
      };
    return {
      cls: 'state-forward',
      move: { table: table.table, key, status: oldRow.status, expectVersion: newRow.version, forward: true },
    };
  }
  // Both moved it forward from the shared state: the furthest along the order wins.
  if (!forward) return { cls: 'update-update' };
  return {
    cls: 'update-update',
    move: { table: table.table, key, status: oldRow.status, expectVersion: newRow.version, forward: true },
  };
}

function sameIdCase(args: ClassifyArgs, o: JournalRow, n: JournalRow, oldE: EntryRow[], newE: EntryRow[]): CaseDraft {
  // Compensating entries: what the old version would have booked minus what the new one did, per
  // account, as a new transaction linked to the original. Nothing is overwritten or deleted.
  const net = deltasOf(oldE);
  for (const [acct, amt] of Object.entries(deltasOf(newE))) net[acct] = (net[acct] ?? 0) - amt;
  const accounts = Object.entries(net)
    .filter(([, amt]) => amt !== 0)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  const compId = derivedUuid(`${o.id}:compensates-new-version`);
  const template = newE[0]?.row ?? oldE[0]?.row ?? {};
  const c = args.cfg;
  const proposals: CaseDraft['proposals'] = {};
  if (accounts.length > 0) {
    proposals.compensate = {
      description: `the old region's version is the right one: book the difference (${accounts.map(([a, v]) => `${a} ${v > 0 ? '+' : ''}${v}`).join(', ')}) as compensating transaction ${compId}`,
      transactions: [
        {
          journal: {
            ...o.row,
            [c.journal.id]: compId,
            [c.journal.keys]: accounts.map(([a]) => a),
            [c.journal.payloadHash]: `compensates:${o.id}`,
          },
          entries: accounts.map(([acct, amt]) => ({
            ...template,
            [c.entries.idempotencyKey]: derivedUuid(`${compId}:${acct}`),
            [c.entries.txnId]: compId,
            [c.entries.account]: acct,
            [c.entries.amount]: amt,
          })),
          originalTxnId: o.id,
        },
      ],
      stateMoves: [],
    };
  }
  return {
    id: caseId(args.reconciliationId, 'same-id-different-payload', o.id),
    kind: 'same-id-different-payload',
    txnIds: [o.id],
    summary: `transaction ${o.id} was committed in both regions with different contents (${args.oldRegion} at ${o.committedAt}, ${args.newRegion} at ${n.committedAt})`,
    oldVersion: { journal: o.row, ...versionOf(oldE) },
    newVersion: { journal: n.row, ...versionOf(newE) },
    proposals,
  };
}

function collisionCase(args: ClassifyArgs, o: JournalRow, entries: EntryRow[], taken: EntryRow[]): CaseDraft {
  const c = args.cfg;
  const rekeyed: ProposedTxn = {
    journal: o.row,
    entries: entries.map((e) =>
      args.takenKeys.has(e.key)
        ? { ...e.row, [c.entries.idempotencyKey]: derivedUuid(`${e.key}:rekeyed-by-reconciliation`) }
        : e.row,
    ),
    originalTxnId: o.id,
  };
  return {
    id: caseId(args.reconciliationId, 'unique-key-collision', o.id),
    kind: 'unique-key-collision',
    txnIds: [o.id],
    summary: `transaction ${o.id} from ${args.oldRegion} cannot be re-applied: idempotency key${taken.length > 1 ? 's' : ''} ${taken.map((e) => e.key).join(', ')} already belong to ${[...new Set(taken.map((e) => args.takenKeys.get(e.key)))].join(', ')} in ${args.newRegion}`,
    oldVersion: { journal: o.row, ...versionOf(entries) },
    newVersion: { takenBy: Object.fromEntries(taken.map((e) => [e.key, args.takenKeys.get(e.key)])) },
    proposals: {
      compensate: {
        description: `book ${o.id} with new idempotency keys for the taken legs`,
        transactions: [rekeyed],
        stateMoves: [],
      },
    },
  };
}

function rowCase(
  args: ClassifyArgs,
  table: MutableTable,
  key: string,
  kind: CaseKind,
  why: string,
  oldRow: StateRow | undefined,
  newRow: StateRow | undefined,
  lostTxns: string[],
): CaseDraft {
  const lost = args.oldRows.filter((r) => lostTxns.includes(r.id));
  const txns: ProposedTxn[] = lost.map((j) => ({
    journal: j.row,
    entries: (args.oldEntries.get(j.id) ?? []).map((e) => e.row),
    originalTxnId: j.id,
  }));
  const proposals: CaseDraft['proposals'] = {};
  if (oldRow && newRow && oldRow.status !== newRow.status) {
    proposals.accept = {
      description: `move ${table.table} ${key} from ${newRow.status} to the old region's ${oldRow.status} (version ${newRow.version + 1}) and record the ${lost.length} transaction(s) that moved it there`,
      transactions: txns,
      stateMoves: [{ table: table.table, key, status: oldRow.status, expectVersion: newRow.version }],
    };
  } else if (oldRow && !newRow) {
    proposals.accept = {
      description: `re-create ${table.table} ${key} as the old region has it (${oldRow.status}) and record its ${lost.length} transaction(s)`,
      transactions: txns,
      stateMoves: [{ table: table.table, key, row: oldRow.row, expectVersion: null }],
    };
  }
  return {
    id: caseId(args.reconciliationId, kind, `${table.table}:${key}`),
    kind,
    txnIds: lostTxns,
    key: `${table.table}:${key}`,
    summary: `${table.table} ${key}: ${why}`,
    oldVersion: oldRow?.row ?? null,
    newVersion: newRow?.row ?? null,
    proposals,
  };
}

/**
 * Overdraft check in commit order: a lost transaction is applied only if no account it debits
 * ends below zero (external accounts excepted); the others become cases. `balances` holds the
 * new side's locked balances and is updated with each transaction applied.
 */
export function splitOverdrafts<T extends Pick<TxnToApply, 'deltas'>>(
  cfg: ReconcileConfig,
  txns: T[],
  balances: Map<string, number>,
): { ok: T[]; overdrawn: { txn: T; account: string; balance: number; after: number }[] } {
  const ok: T[] = [];
  const overdrawn: { txn: T; account: string; balance: number; after: number }[] = [];
  for (const t of txns) {
    let bad: { account: string; balance: number; after: number } | undefined;
    if (cfg.balances.forbidNegative) {
      for (const [acct, delta] of Object.entries(t.deltas)) {
        if (acct.startsWith(cfg.externalAccountPrefix) || delta >= 0) continue;
        const balance = balances.get(acct) ?? 0;
        if (balance + delta < 0) {
          bad = { account: acct, balance, after: balance + delta };
          break;
        }
      }
    }
    if (bad) {
      overdrawn.push({ txn: t, ...bad });
      continue;
    }
    for (const [acct, delta] of Object.entries(t.deltas)) balances.set(acct, (balances.get(acct) ?? 0) + delta);
    ok.push(t);
  }
  return { ok, overdrawn };
}

export function overdraftCase(
  cfg: ReconcileConfig,
  reconciliationId: string,
  oldRegion: string,
  o: { txn: TxnToApply; account: string; balance: number; after: number },
): CaseDraft {
  const { txn } = o;
  const shortfall = -o.after;
  const coverId = derivedUuid(`${txn.txnId}:overdraft-cover`);
  const template = txn.entries[0] ?? {};
  const e = cfg.entries;
  const suspense = `${cfg.externalAccountPrefix}suspense`;
  const original: ProposedTxn = { journal: txn.journal, entries: txn.entries, originalTxnId: txn.txnId };
  return {
    id: caseId(reconciliationId, 'overdraft', txn.txnId),
    kind: 'overdraft',
    txnIds: [txn.txnId],
    summary: `re-applying transaction ${txn.txnId} from ${oldRegion} would take ${o.account} from ${o.balance} to ${o.after}: both regions spent the same money`,
    oldVersion: { journal: txn.journal, entries: txn.entries },
    newVersion: { account: o.account, balance: o.balance },
    proposals: {
      accept: {
        description: `book ${txn.txnId} as it was and let ${o.account} go to ${o.after}`,
        transactions: [original],
        stateMoves: [],
        allowNegative: [o.account],
      },
      compensate: {
        description: `book ${txn.txnId} and a compensating credit of ${shortfall} to ${o.account} from ${suspense} (transaction ${coverId}) to be recovered from the customer`,
        transactions: [
          original,
          {
            journal: {
              ...txn.journal,
              [cfg.journal.id]: coverId,
              [cfg.journal.keys]: [o.account, suspense],
              [cfg.journal.payloadHash]: `covers-overdraft:${txn.txnId}`,
            },
            entries: [
              {
                ...template,
                [e.idempotencyKey]: derivedUuid(`${coverId}:credit`),
                [e.txnId]: coverId,
                [e.account]: o.account,
                [e.amount]: shortfall,
              },
              {
                ...template,
                [e.idempotencyKey]: derivedUuid(`${coverId}:debit`),
                [e.txnId]: coverId,
                [e.account]: suspense,
                [e.amount]: -shortfall,
              },
            ],
            originalTxnId: txn.txnId,
          },
        ],
        stateMoves: [],
      },
    },
  };
}
