// One region worker process per region any service runs in: `regionshift worker --region <r>`.
// The worker prints READY_LINE once its workers poll, and runs until SIGTERM.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../lib/config/schema';
import { REPO_ROOT } from '../lib/paths';
import { logSince, type ProcessRecord } from './process';

export const READY_LINE = 'regionshift worker ready';

export function workerComponentName(region: string): string {
  return `worker:${region}`;
}

/** Regions named by any service, in the order they first appear. */
export function workerRegions(config: Config): string[] {
  return [...new Set(config.services.flatMap((s) => s.regions))];
}

/**
 * Whether `regionshift worker` can run: the compiled command must exist. Returns the reason to
 * skip the workers otherwise.
 */
export function workerSkipReason(root = REPO_ROOT): string | undefined {
  if (existsSync(join(root, 'dist', 'src', 'cli', 'worker.js'))) return undefined;
  if (existsSync(join(root, 'src', 'cli', 'worker.ts'))) return 'worker command not built yet (run `npm run build`)';
  return 'worker command not built yet';
}

export function workerArgv(region: string, root = REPO_ROOT): string[] {
  return [process.execPath, join(root, 'bin', 'regionshift.js'), 'worker', '--region', region];
}

/** codecEnv: the payload key variables (stackCodecEnv), so the worker encrypts what it writes. */
export function workerEnv(
  configFile: string,
  temporalAddress: string | undefined,
  codecEnv: Record<string, string> = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...codecEnv, REGIONSHIFT_CONFIG: configFile };
  if (temporalAddress) env.TEMPORAL_ADDRESS = temporalAddress;
  else delete env.TEMPORAL_ADDRESS;
  return env;
}

/** The worker said it is polling, in this run's part of its log. */
export function workerReady(rec: ProcessRecord): boolean {
  return logSince(rec.log, rec.logOffset).includes(READY_LINE);
}
