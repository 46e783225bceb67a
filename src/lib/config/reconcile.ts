// What reconciliation needs to know about a service's schema: where its journal, ledger entries,
// balances and mutable state live, and the rules it resolves by. Every name has the demo ledger's
// value as its default (src/demo/ledger.ts), so a service that follows docs/data-model.md as
// written needs no `reconcile:` block at all. See docs/data-model.md.
import { z } from 'zod';

/** A table or column name, optionally schema-qualified for tables: `ledger.journal`. */
const ident = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain SQL identifier (letters, digits, underscores)');
const tableName = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/,
    'a table name, optionally schema-qualified: journal or ledger.journal',
  );

export const JournalTable = z.strictObject({
  table: tableName.default('journal'),
  /** Client-generated UUIDv7 of the business transaction: the identity reconciliation matches on. */
  id: ident.default('id'),
  /** The region whose database committed it. */
  origin: ident.default('origin_region'),
  /** Commit time; must be indexed: the window is read by it. */
  committedAt: ident.default('committed_at'),
  /** The keys the transaction touched: account ids, and `<keyPrefix><key>` for mutable rows. */
  keys: ident.default('keys'),
  /** A hash of what the transaction said: same id and a different hash is a conflict. */
  payloadHash: ident.default('payload_hash'),
});

export const EntriesTable = z.strictObject({
  table: tableName.default('ledger_entries'),
  /** Unique: a leg booked twice collides instead of counting twice. */
  idempotencyKey: ident.default('idempotency_key'),
  /** The journal id of the transaction the entry belongs to. */
  txnId: ident.default('txn_id'),
  account: ident.default('account'),
  /** Signed amount in minor units: debits negative, credits positive. */
  amount: ident.default('amount'),
  /** Insert time (same transaction as the journal row): verify reads entries outside the window by it. */
  createdAt: ident.default('created_at'),
});

export const BalancesTable = z.strictObject({
  table: tableName.default('accounts'),
  account: ident.default('id'),
  /**
   * A column caching the balance (sum of the account's entries), kept by the application in the
   * same transaction as the entries. null: balances are computed from the entries only.
   */
  balance: ident.nullable().default('balance'),
  /** No account may end below zero (except external ones) once reconciliation has applied. */
  forbidNegative: z.boolean().default(true),
});

export const MutableTable = z.strictObject({
  table: tableName,
  key: ident.default('id'),
  status: ident.default('status'),
  /** Incremented by every change (creation sets 1): how reconciliation tells who changed a row. */
  version: ident.default('version'),
  /** Last change time, when the table has one (reported with the versions of a case). */
  updatedAt: ident.optional(),
  /** Journal keys naming a row of this table: `loan:L-17` with keyPrefix `loan:`. */
  keyPrefix: z.string().min(1),
  /** The declared state order; reconciliation only ever moves a row forward along it. */
  states: z.array(z.string().min(1)).min(2),
});

export const ReconcileConfig = z.strictObject({
  journal: JournalTable.default(JournalTable.parse({})),
  entries: EntriesTable.default(EntriesTable.parse({})),
  balances: BalancesTable.default(BalancesTable.parse({})),
  mutable: z.array(MutableTable).default([]),
  /**
   * Accounts outside the ledger (funding sources, payment rails): their balances are not checked,
   * and a lost transaction that moves money to or from one may already have had its external
   * effect (a payment sent), so it is put in front of a person.
   */
  externalAccountPrefix: z.string().min(1).default('ext:'),
  /** A lost or conflicting transaction moving more than this (minor units) always goes to a person. */
  highValueThreshold: z.number().min(0).default(10_000),
  /**
   * Read this much before the divergence point: a transaction's commit time is when it began, and
   * one that began before the divergence may have committed after it.
   */
  windowMarginSeconds: z.number().min(0).default(30),
  /**
   * When the divergence point is estimated from a replication lag rather than read from the new
   * primary (Aurora: the failure time minus the lag observed before promotion), read this much
   * more before it: the lag is a figure observed at one moment (CloudWatch: the maximum over a
   * period, 60 s for Aurora's metrics), not the exact position replication stopped at.
   */
  lagMarginSeconds: z.number().min(0).default(60),
});

export type JournalTable = z.infer<typeof JournalTable>;
export type EntriesTable = z.infer<typeof EntriesTable>;
export type BalancesTable = z.infer<typeof BalancesTable>;
export type MutableTable = z.infer<typeof MutableTable>;
export type ReconcileConfig = z.infer<typeof ReconcileConfig>;

/** The service's reconcile block, defaults filled in (a config without one gets the demo ledger's names). */
export function reconcileConfigOf(service: { reconcile?: unknown }): ReconcileConfig {
  return ReconcileConfig.parse(service.reconcile ?? {});
}
