// The one place every Temporal client and worker gets its data converter from, so a process
// never writes history with one codec and reads it with another by accident.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DataConverter } from '@temporalio/common';
import { stateDir } from '../paths';
import { AesGcmCodec, NoKeysCodec } from './aes-gcm';
import { CodecConfigError, KEY_BYTES, KEY_ID_VAR, KEYS_VAR, parseCodecKeys, type CodecKeys } from './keys';

/** The local stack's keys, written by `stack up`; read when the variables are not set. */
export function codecKeysFile(home = stateDir()): string {
  return join(home, 'codec-keys.env');
}

function readEnvFile(file: string): Record<string, string> {
  const vars: Record<string, string> = {};
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const eq = line.indexOf('=');
      if (eq < 1) throw new CodecConfigError(`${file} line ${i + 1} is not NAME=value`);
      vars[line.slice(0, eq)] = line.slice(eq + 1);
    });
  return vars;
}

export interface FoundKeys {
  keys: CodecKeys;
  /** Where they came from: "the environment" or the stack's key file. */
  source: string;
}

/** The keys this process has: the environment first, then the local stack's key file. */
export function codecKeysFromEnv(env: NodeJS.ProcessEnv = process.env): FoundKeys | undefined {
  const keysText = env[KEYS_VAR];
  if (keysText !== undefined && keysText.trim() !== '') {
    return { keys: parseCodecKeys(keysText, env[KEY_ID_VAR]), source: 'the environment' };
  }
  if (env[KEY_ID_VAR])
    throw new CodecConfigError(`${KEY_ID_VAR}=${env[KEY_ID_VAR]} is set but ${KEYS_VAR} is not; set both, or neither`);
  const file = codecKeysFile(stateDir(env));
  if (!existsSync(file)) return undefined;
  const vars = readEnvFile(file);
  const fileKeys = vars[KEYS_VAR];
  if (!fileKeys)
    throw new CodecConfigError(
      `${file} has no ${KEYS_VAR}= line; delete the file and run \`regionshift stack up\` to make a new one`,
    );
  return { keys: parseCodecKeys(fileKeys, vars[KEY_ID_VAR], file), source: file };
}

let warned = false;

/**
 * For short-lived commands (the CLI): what they send is a run's request, not customer data, and a
 * warning before every answer would bury it. The processes that write results (workers, the
 * intake, the Slack bot) still say it once.
 */
export function skipMissingKeysWarning(): void {
  warned = true;
}

export interface ConverterOptions {
  /** Where the one warning about running without keys goes (stderr when absent). */
  warn?: (line: string) => void;
}

/**
 * The data converter for a Temporal client or worker. Without keys the process still runs (a
 * developer's test or tool should not need ceremony) but says once, on stderr, that what it
 * writes is stored in plain text; an encrypted payload it meets fails with a clear error.
 */
export function dataConverterFromEnv(env: NodeJS.ProcessEnv = process.env, opts: ConverterOptions = {}): DataConverter {
  const found = codecKeysFromEnv(env);
  if (found) return { payloadCodecs: [new AesGcmCodec(found.keys)] };
  if (!warned) {
    warned = true;
    const line = `regionshift: warning: ${KEYS_VAR} is not set; payloads this process sends to Temporal are stored in plain text (see docs/codec.md)`;
    if (opts.warn) opts.warn(line);
    else process.stderr.write(`${line}\n`);
  }
  return { payloadCodecs: [new NoKeysCodec()] };
}

/** The environment for a process of the local stack: its key, made once and kept in the state dir. */
export function ensureStackCodecKeys(home = stateDir()): {
  env: Record<string, string>;
  file: string;
  created: boolean;
} {
  const file = codecKeysFile(home);
  let created = false;
  if (!existsSync(file)) {
    mkdirSync(home, { recursive: true });
    const id = `local-${new Date().toISOString().slice(0, 10).replaceAll('-', '')}`;
    const body = [
      "# The local stack's payload encryption key (docs/codec.md). Losing it makes the stack's histories unreadable.",
      `${KEYS_VAR}=${id}:${randomBytes(KEY_BYTES).toString('base64')}`,
      `${KEY_ID_VAR}=${id}`,
      '',
    ].join('\n');
    writeFileSync(file, body, { mode: 0o600, flag: 'wx' });
    created = true;
  }
  chmodSync(file, 0o600);
  const vars = readEnvFile(file);
  // Validates the file the same way every process will read it.
  parseCodecKeys(vars[KEYS_VAR] ?? '', vars[KEY_ID_VAR], file);
  return { env: { [KEYS_VAR]: vars[KEYS_VAR] as string, [KEY_ID_VAR]: vars[KEY_ID_VAR] as string }, file, created };
}
