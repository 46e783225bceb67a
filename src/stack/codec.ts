// The local stack's payload encryption: one key kept in the state dir (made on the first `up`,
// kept across restarts, so the SQLite history stays readable), handed to the workers and the
// codec server through their environment, and the codec server the Temporal UI decrypts with.
import { join } from 'node:path';
import { ensureStackCodecKeys } from '../lib/codec/env';
import { KEYS_VAR } from '../lib/codec/keys';
import type { Config } from '../lib/config/schema';
import { REPO_ROOT } from '../lib/paths';
import { logSince, type ProcessRecord } from './process';
import { STACK_HOST } from './status';

export const CODEC_SERVER = 'codec-server';
/** Printed by `regionshift codec-server` once it listens (src/cli/codec-server.ts). */
export const CODEC_READY_LINE = 'regionshift codec server ready';

export function codecServerUrl(config: Config): string {
  return `http://${STACK_HOST}:${config.stack.codecServerPort}`;
}

/**
 * The codec variables the stack's processes get. A key set in the caller's environment wins (the
 * processes inherit it, and every later command must set it too); otherwise the state dir's key.
 */
export function stackCodecEnv(
  home: string,
  env: NodeJS.ProcessEnv = process.env,
): { env: Record<string, string>; note?: string } {
  if (env[KEYS_VAR]) return { env: {}, note: `payloads encrypted with the keys in ${KEYS_VAR} (from this shell)` };
  const keys = ensureStackCodecKeys(home);
  return { env: keys.env, ...(keys.created ? { note: `made the stack's payload encryption key: ${keys.file}` } : {}) };
}

export function codecServerArgv(configFile: string, root = REPO_ROOT): string[] {
  return [process.execPath, join(root, 'bin', 'regionshift.js'), 'codec-server', '--config', configFile];
}

export function codecServerReady(rec: ProcessRecord): boolean {
  return logSince(rec.log, rec.logOffset).includes(CODEC_READY_LINE);
}

/** The server answers the protocol: an empty decode comes back 200 (namespace as the UI sends it). */
export async function codecServerAnswers(config: Config, timeoutMs = 2_000): Promise<boolean> {
  try {
    const res = await fetch(`${codecServerUrl(config)}/decode`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Namespace': config.temporal.namespace },
      body: '{"payloads":[]}',
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer();
    // 401/403: a token is configured; the server answers all the same.
    return res.status === 200 || res.status === 401 || res.status === 403;
  } catch {
    return false;
  }
}
