// Where the recorded histories live and the key their payloads are encrypted with: shared by the
// recorder (record-histories.ts) and the replay suite (test/histories.test.ts).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KEY_BYTES, KEY_ID_VAR, KEYS_VAR } from '../lib/codec/keys';
import { REPO_ROOT } from '../lib/paths';

export const HISTORIES_DIR = join(REPO_ROOT, 'test', 'histories');
export const FIXTURE_KEYS_FILE = join(HISTORIES_DIR, 'codec-keys.env');

/** The fixtures' codec variables, made once (a fresh random key, committed with the fixtures). */
export function fixtureCodecEnv(file = FIXTURE_KEYS_FILE): Record<string, string> {
  if (!existsSync(file)) {
    mkdirSync(HISTORIES_DIR, { recursive: true });
    writeFileSync(
      file,
      [
        '# Encrypts the recorded histories in this folder and nothing else: a test fixture, not a secret.',
        `${KEYS_VAR}=histories:${randomBytes(KEY_BYTES).toString('base64')}`,
        `${KEY_ID_VAR}=histories`,
        '',
      ].join('\n'),
    );
  }
  const vars: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.+)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!;
  }
  return vars;
}
