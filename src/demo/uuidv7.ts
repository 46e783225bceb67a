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
 * A UUIDv8 (RFC 9562 §5.8, custom) derived from a name: the same name always gives the same id.
 * Used for the idempotency keys of a transfer's entries, so a retried leg collides instead of
 * being booked twice.
 */
export function uuidFromName(name: string): string {
  const b = createHash('sha256').update(name).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80; // version 8
  b[8] = (b[8]! & 0x3f) | 0x80; // variant 10
  return format(Buffer.from(b));
}

/** The creation time a UUIDv7 carries. */
export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}
