// A Temporal PayloadCodec that encrypts each payload whole (its metadata and data) with
// AES-256-GCM, so history holds no customer data in plain text: only the key id and the
// encoding are readable. The key id is also bound into the GCM tag (additional data), so a
// payload whose key id was altered fails to decrypt instead of decrypting under another key.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { KEYS_VAR, type CodecKeys } from './keys';

export const ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | null | undefined): string | undefined => (b ? new TextDecoder().decode(b) : undefined);

export class CodecError extends Error {
  override name = 'CodecError';
}

export function isEncrypted(p: Payload): boolean {
  return text(p.metadata?.encoding) === ENCODING;
}

export class AesGcmCodec implements PayloadCodec {
  constructor(private readonly keys: CodecKeys) {}

  get currentKeyId(): string {
    return this.keys.currentId;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const id = this.keys.currentId;
    const key = this.keys.keys.get(id) as Buffer;
    return payloads.map((p) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(id, 'utf8'));
      const plain = temporal.api.common.v1.Payload.encode(p).finish();
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return { metadata: { encoding: utf8(ENCODING), [KEY_ID_METADATA]: utf8(id) }, data: sealed };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    // Payloads written before encryption was switched on (or by a process without keys) pass
    // through as they are: turning the codec on must not make old histories unreadable.
    return payloads.map((p) => (isEncrypted(p) ? this.open(p) : p));
  }

  private open(p: Payload): Payload {
    const id = text(p.metadata?.[KEY_ID_METADATA]);
    if (!id) throw new CodecError(`cannot decrypt a payload: its metadata has no ${KEY_ID_METADATA}`);
    const key = this.keys.keys.get(id);
    if (!key) {
      throw new CodecError(
        `cannot decrypt a payload encrypted with key "${id}": ${KEYS_VAR} has no key with that id (its ids: ${[...this.keys.keys.keys()].join(', ')}); ` +
          `keep retired keys in ${KEYS_VAR} while histories that use them are retained`,
      );
    }
    const data = p.data ?? new Uint8Array();
    if (data.length < IV_BYTES + TAG_BYTES)
      throw new CodecError(
        `cannot decrypt a payload encrypted with key "${id}": it is ${data.length} bytes, too short to be one`,
      );
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(id, 'utf8'));
    decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(buf.subarray(IV_BYTES, buf.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new CodecError(
        `cannot decrypt a payload encrypted with key "${id}": authentication failed, so the key this process calls "${id}" is not the one it was encrypted with (or the payload was altered); check ${KEYS_VAR}`,
      );
    }
    return temporal.api.common.v1.Payload.decode(plain);
  }
}

/**
 * The codec of a process that has no keys: it writes payloads as they are and, rather than
 * handing ciphertext to the JSON converter, says plainly why it cannot read an encrypted one.
 */
export class NoKeysCodec implements PayloadCodec {
  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads;
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    for (const p of payloads) {
      if (isEncrypted(p)) {
        throw new CodecError(
          `cannot decrypt a payload encrypted with key "${text(p.metadata?.[KEY_ID_METADATA]) ?? '?'}": this process has no keys (${KEYS_VAR} is not set); see docs/codec.md`,
        );
      }
    }
    return payloads;
  }
}
