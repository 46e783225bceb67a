// UUIDv7 (RFC 9562 §5.7): 48 bits of Unix milliseconds, then randomness. Ids made by the client
// sort by creation time, so the journal can be read in order across regions without a sequence.
import { createHash, randomBytes } from 'node:crypto';

function format(b: Buffer): string {
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export function uuidv7(nowMs: number = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(nowMs, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70; // version 7
  b[8] = (b[8]! & 0x3f) | 0x80; // variant 10
  return format(b);
}

/**
 * The idempotency key of one leg of a transaction: a UUIDv8 derived from the transaction id and
 * the leg (the same pair always gives the same key, so a retried leg collides instead of being
 * booked twice) whose first 48 bits are the transaction id's, its UUIDv7 time. Keys then sort by
 * time like the ids: the unique index on them grows at its right edge, as the journal's does,
 * instead of taking each new key on a random leaf (at ten million entries, most of a re-applied
 * batch's leaves were read from disk and written again in full after a checkpoint).
 */
export function entryKey(txnId: string, leg: string): string {
  const b = createHash('sha256').update(`${txnId}:${leg}`).digest().subarray(0, 16);
  Buffer.from(txnId.replace(/-/g, '').slice(0, 12).padEnd(12, '0'), 'hex').copy(b, 0);
  b[6] = (b[6]! & 0x0f) | 0x80; // version 8
  b[8] = (b[8]! & 0x3f) | 0x80; // variant 10
  return format(Buffer.from(b));
}

/** The creation time a UUIDv7 carries. */
export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}
