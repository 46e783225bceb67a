// Reconciliation's decisions on their own (activities/reconcile/rules.ts): no database, just rows.
import { describe, expect, it } from 'vitest';
import {
  classify,
  classifyRow,
  splitOverdrafts,
  type EntryRow,
  type JournalRow,
  type StateRow,
} from '../activities/reconcile/rules';
import { ReconcileConfig, type MutableTable } from '../src/lib/config/reconcile';

const cfg = ReconcileConfig.parse({
  mutable: [{ table: 'loans', keyPrefix: 'loan:', states: ['PENDING', 'APPROVED', 'DISBURSED', 'COMPLETED'] }],
});
const loans = cfg.mutable[0] as MutableTable;

const row = (key: string, status: string, version: number): StateRow => ({
  key,
  status,
  version,
  row: { id: key, status, version },
});
const j = (
  id: string,
  hash: string,
  origin = 'us-west-2',
  at = '2025-01-01T00:00:01.000000Z',
  keys: string[] = ['a', 'b'],
): JournalRow => ({
  id,
  hash,
  origin,
  committedAt: at,
  keys,
  row: { id, payload_hash: hash, origin_region: origin, committed_at: at, keys },
});
const legs = (txn: string, from: string, to: string, amount: number): EntryRow[] => [
  {
    txnId: txn,
    key: `${txn}-d`,
    account: from,
    amount: -amount,
    row: { idempotency_key: `${txn}-d`, account: from, amount: -amount, txn_id: txn },
  },
  {
    txnId: txn,
    key: `${txn}-c`,
    account: to,
    amount,
    row: { idempotency_key: `${txn}-c`, account: to, amount, txn_id: txn },
  },
];

describe('mutable rows', () => {
  it('moves a row the old region alone moved forward', () => {
    expect(classifyRow(loans, 'L1', row('L1', 'APPROVED', 2), row('L1', 'PENDING', 1), 1)).toMatchObject({
      cls: 'state-forward',
      move: { status: 'APPROVED', forward: true },
    });
  });
  it('takes the furthest state when both moved it forward, and nothing when the new one is ahead', () => {
    expect(classifyRow(loans, 'L2', row('L2', 'DISBURSED', 3), row('L2', 'APPROVED', 2), 2)).toMatchObject({
      cls: 'update-update',
      move: { status: 'DISBURSED' },
    });
    const ahead = classifyRow(loans, 'L2', row('L2', 'APPROVED', 2), row('L2', 'DISBURSED', 3), 1);
    expect(ahead).toEqual({ cls: 'update-update' });
  });
  it('sends backward moves, states outside the order and deletions to a person', () => {
    expect(classifyRow(loans, 'L3', row('L3', 'PENDING', 3), row('L3', 'APPROVED', 2), 1).caseKind).toBe(
      'conflicting-state',
    );
    expect(classifyRow(loans, 'L3', row('L3', 'CANCELLED', 2), row('L3', 'APPROVED', 2), 1).caseKind).toBe(
      'conflicting-state',
    );
    expect(classifyRow(loans, 'L4', row('L4', 'APPROVED', 2), undefined, 1).caseKind).toBe('update-delete');
    expect(classifyRow(loans, 'L4', undefined, row('L4', 'APPROVED', 2), 1).caseKind).toBe('update-delete');
  });
  it('re-inserts a row created in the old region only, and flags one created in both', () => {
    expect(classifyRow(loans, 'L5', row('L5', 'PENDING', 1), undefined, 1)).toMatchObject({
      cls: 'lost-insert',
      move: { row: { id: 'L5' } },
    });
    expect(classifyRow(loans, 'L6', row('L6', 'PENDING', 1), row('L6', 'APPROVED', 2), 1).caseKind).toBe(
      'unique-key-collision',
    );
  });
});

describe('transactions', () => {
  const base = {
    cfg,
    reconciliationId: 'rc-test',
    oldRegion: 'us-west-2',
    newRegion: 'us-east-1',
    newWindowRows: [],
    newEntries: new Map(),
    takenKeys: new Map(),
    state: new Map(),
  };

  it('classifies by id: lost, replicated, duplicate, same id with another payload', () => {
    const lost = j('t1', 'h1');
    const replicated = j('t2', 'h2');
    const dup = j('t3', 'h3');
    const diff = j('t4', 'h4');
    const out = classify({
      ...base,
      oldRows: [lost, replicated, dup, diff],
      newById: new Map([
        ['t2', replicated],
        ['t3', j('t3', 'h3', 'us-east-1', '2025-01-01T00:00:09.000000Z')],
        ['t4', j('t4', 'other', 'us-east-1')],
      ]),
      oldEntries: new Map([
        ['t1', legs('t1', 'a', 'b', 5)],
        ['t3', legs('t3', 'a', 'b', 3)],
        ['t4', legs('t4', 'a', 'b', 500)],
      ]),
      newEntries: new Map([['t4', legs('t4', 'a', 'b', 700)]]),
    });
    expect(out.txn).toMatchObject({ 'only-old': 1, replicated: 1, identical: 1, 'same-id-different-payload': 1 });
    expect(out.apply.map((t) => t.txnId)).toEqual(['t1']);
    expect(out.duplicates).toEqual(['t3']);
    const sid = out.cases.find((c) => c.kind === 'same-id-different-payload')!;
    // Compensation: the old version's effect minus the new one's, as a new transaction.
    expect(sid.proposals.compensate!.transactions[0]!.entries.map((e) => [e.account, e.amount])).toEqual([
      ['a', 200],
      ['b', -200],
    ]);
  });

  it('a widened pass counts only what it adds before the earlier window', () => {
    const early = j('e1', 'h', 'us-west-2', '2025-01-01T00:00:00.000000Z');
    const late = j('l1', 'h', 'us-west-2', '2025-01-01T00:00:05.000000Z');
    const out = classify({
      ...base,
      oldRows: [early, late],
      newById: new Map(),
      oldEntries: new Map([
        ['e1', legs('e1', 'a', 'b', 1)],
        ['l1', legs('l1', 'a', 'b', 1)],
      ]),
      countBefore: '2025-01-01T00:00:03.000000Z',
    });
    expect(out.txn['only-old']).toBe(1);
    expect(out.apply.map((t) => t.txnId)).toEqual(['e1', 'l1']);
  });

  it('holds back high-value, external and key-colliding transactions', () => {
    const out = classify({
      ...base,
      oldRows: [j('hv', 'x'), j('ex', 'y'), j('kc', 'z')],
      newById: new Map(),
      oldEntries: new Map([
        ['hv', legs('hv', 'a', 'b', 10_001)],
        ['ex', legs('ex', 'a', 'ext:payouts', 10)],
        ['kc', legs('kc', 'a', 'b', 10)],
      ]),
      takenKeys: new Map([['kc-d', 'someone-else']]),
    });
    expect(out.apply).toEqual([]);
    expect(out.cases.map((c) => c.kind).sort()).toEqual(['external-effect', 'high-value', 'unique-key-collision']);
    // Exactly the threshold is not above it.
    expect(
      classify({
        ...base,
        oldRows: [j('t', 'h')],
        newById: new Map(),
        oldEntries: new Map([['t', legs('t', 'a', 'b', 10_000)]]),
      }).apply,
    ).toHaveLength(1);
  });

  it('splits overdrafts in commit order on the locked balances', () => {
    const t = (id: string, amount: number) => ({
      txnId: id,
      committedAt: id,
      journal: {},
      entries: [],
      deltas: { low: -amount, other: amount },
    });
    const balances = new Map([['low', 100]]);
    const { ok, overdrawn } = splitOverdrafts(cfg, [t('1', 60), t('2', 60), t('3', 40)], balances);
    expect(ok.map((x) => x.txnId)).toEqual(['1', '3']);
    expect(overdrawn).toEqual([expect.objectContaining({ account: 'low', balance: 40, after: -20 })]);
    expect(balances.get('low')).toBe(0);
  });
});
