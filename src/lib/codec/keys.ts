// The codec's keys, from the environment: REGIONSHIFT_CODEC_KEYS lists every key a process may
// need to decrypt with (`id:base64,id:base64`), REGIONSHIFT_CODEC_KEY_ID names the one it
// encrypts with. Rotation is adding a key and switching the id; old payloads name their key.
export const KEYS_VAR = 'REGIONSHIFT_CODEC_KEYS';
export const KEY_ID_VAR = 'REGIONSHIFT_CODEC_KEY_ID';

/** AES-256 */
export const KEY_BYTES = 32;

const ID = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export class CodecConfigError extends Error {
  override name = 'CodecConfigError';
}

export interface CodecKeys {
  /** The key new payloads are encrypted with. */
  currentId: string;
  keys: ReadonlyMap<string, Buffer>;
}

/** Parses the two variables; every problem names the variable and the entry, never the key itself. */
export function parseCodecKeys(keysText: string, currentId: string | undefined, source = 'the environment'): CodecKeys {
  const keys = new Map<string, Buffer>();
  const entryOf = new Map<string, number>();
  const entries = keysText.split(',').map((e) => e.trim());
  entries.forEach((entry, i) => {
    const n = i + 1;
    if (entry === '')
      throw new CodecConfigError(
        `${KEYS_VAR} (${source}) entry ${n} is empty; the format is id:base64key,id:base64key`,
      );
    const colon = entry.indexOf(':');
    if (colon < 0)
      throw new CodecConfigError(
        `${KEYS_VAR} (${source}) entry ${n} has no "id:" prefix; the format is id:base64key,id:base64key`,
      );
    const id = entry.slice(0, colon);
    const b64 = entry.slice(colon + 1);
    if (!ID.test(id))
      throw new CodecConfigError(
        `${KEYS_VAR} (${source}) entry ${n}: key id "${id}" may use only letters, digits, ".", "_" and "-" (1 to 64)`,
      );
    const first = entryOf.get(id);
    if (first !== undefined)
      throw new CodecConfigError(
        `${KEYS_VAR} (${source}) names key "${id}" twice (entries ${first} and ${n}); each id must name one key`,
      );
    if (!BASE64.test(b64) || b64.length % 4 !== 0)
      throw new CodecConfigError(`${KEYS_VAR} (${source}) entry ${n} (key "${id}"): the key is not standard base64`);
    const key = Buffer.from(b64, 'base64');
    if (key.length !== KEY_BYTES) {
      throw new CodecConfigError(
        `${KEYS_VAR} (${source}) entry ${n} (key "${id}") is ${key.length} bytes; AES-256-GCM needs ${KEY_BYTES} (make one with: openssl rand -base64 32)`,
      );
    }
    keys.set(id, key);
    entryOf.set(id, n);
  });
  const known = [...keys.keys()].join(', ');
  if (currentId === undefined || currentId.trim() === '') {
    throw new CodecConfigError(
      `${KEY_ID_VAR} (${source}) is not set; set it to the id of the key to encrypt with (one of: ${known})`,
    );
  }
  if (!keys.has(currentId))
    throw new CodecConfigError(
      `${KEY_ID_VAR}=${currentId} (${source}) names no key in ${KEYS_VAR} (its ids: ${known})`,
    );
  return { currentId, keys };
}
