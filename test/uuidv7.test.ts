// The demo's derived idempotency keys (src/demo/uuidv7.ts entryKey): pure functions, no servers.
import { describe, expect, it } from 'vitest';
import { entryKey, uuidv7, uuidv7Time } from '../src/demo/uuidv7';

describe('entryKey', () => {
  const txn = uuidv7(Date.parse('2026-12-05T05:00:00.000Z'));

  it('is the same for the same transaction and leg, and differs between legs and transactions', () => {
    expect(entryKey(txn, 'debit')).toBe(entryKey(txn, 'debit'));
    expect(entryKey(txn, 'debit')).not.toBe(entryKey(txn, 'credit'));
    expect(entryKey(uuidv7(Date.parse('2026-12-05T05:00:00.000Z')), 'debit')).not.toBe(entryKey(txn, 'debit'));
  });

  it("starts with the transaction id's time and is a version 8, variant 10 UUID", () => {
    const k = entryKey(txn, 'credit');
    expect(k).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(uuidv7Time(k)).toBe(Date.parse('2026-12-05T05:00:00.000Z'));
  });

  it('sorts the keys of later transactions after those of earlier ones', () => {
    const t0 = Date.parse('2026-12-05T05:00:00.000Z');
    const keys = Array.from({ length: 50 }, (_, i) => entryKey(uuidv7(t0 + i), i % 2 ? 'debit' : 'credit'));
    expect([...keys].sort()).toEqual(keys);
  });
});
