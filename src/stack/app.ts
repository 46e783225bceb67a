// The demo's banking application (src/demo/app.ts) as a process of the local stack, when the
// config names one (stack.app): started like a worker (the built CLI), after the databases.
import { join } from 'node:path';
import type { Config } from '../lib/config/schema';
import { REPO_ROOT } from '../lib/paths';
import { logSince, type ProcessRecord } from './process';
import { STACK_HOST } from './status';

/** Printed by `regionshift app` once it listens (src/cli/app.ts). */
export const APP_READY_LINE = 'regionshift demo app ready';

export function appComponentName(service: string): string {
  return `app:${service}`;
}

export function appUrl(config: Config): string | undefined {
  return config.stack.app ? `http://${STACK_HOST}:${config.stack.app.port}` : undefined;
}

/** The application starts writing to `primary`: the stack tells it, as a deployment would. */
export function appArgv(configFile: string, primary: string, root = REPO_ROOT): string[] {
  return [process.execPath, join(root, 'bin', 'regionshift.js'), 'app', '--config', configFile, '--primary', primary];
}

export function appReady(rec: ProcessRecord): boolean {
  return logSince(rec.log, rec.logOffset).includes(APP_READY_LINE);
}
