// What `stack up` started, so `status` and `down` act on exactly that: stack.json in the state
// directory, written after every start so a crash half-way still leaves a record to clean up.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stateDir } from '../lib/paths';
import { LockBusyError, pidLock } from './pid-lock';
import type { ProcessRecord } from './process';

export interface RecordedProcess extends ProcessRecord {
  address: string;
}

export interface RecordedPg {
  region: string;
  dataDir: string;
  host: string;
  port: number;
  bin: string;
  log: string;
}

export interface StackState {
  version: 1;
  /** Absolute path of the config the stack was brought up with. */
  config?: string;
  /** temporal, moto, worker:<region> */
  processes: Record<string, RecordedProcess>;
  /** postgres:<service>:<region> nodes this stack started or created. */
  postgres: Record<string, RecordedPg>;
}

export function stackFile(home = stateDir()): string {
  return join(home, 'stack.json');
}

export function readState(home = stateDir()): StackState {
  try {
    const parsed = JSON.parse(readFileSync(stackFile(home), 'utf8')) as Partial<StackState>;
    return { version: 1, ...parsed, processes: parsed.processes ?? {}, postgres: parsed.postgres ?? {} };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, processes: {}, postgres: {} };
    throw new Error(
      `${stackFile(home)} is unreadable (${(err as Error).message}); stop leftover processes by hand and delete it`,
    );
  }
}

export function writeState(state: StackState, home = stateDir()): void {
  mkdirSync(home, { recursive: true });
  const file = stackFile(home);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

export class StackBusyError extends LockBusyError {
  override name = 'StackBusyError';
}

/** Serialises `up` and `down` on one state directory. A lock left by a dead process is taken over. */
export function acquireLock(home = stateDir()): () => void {
  try {
    return pidLock(
      join(home, 'stack.lock'),
      (pid) => `another \`regionshift stack\` command (pid ${pid}) is working on ${home}; wait for it to finish`,
    );
  } catch (err) {
    if (err instanceof LockBusyError) throw new StackBusyError(err.message);
    throw err;
  }
}
