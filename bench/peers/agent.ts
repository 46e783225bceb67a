// Running a peer tool's programs the way its packages expect: as the postgres user (the tools
// and PostgreSQL refuse root), each long-running agent in its own process group with its
// output in a log, and every one of them stopped again, bounded in time.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { chownSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive } from '../../src/stack/process';
import { sleep } from '../../src/stack/wait';
import { toolPids } from './procs';

export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface RunAs {
  uid: number;
  gid: number;
}

export function postgresUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0)
    throw new Error(
      'running as root and there is no postgres user to run the peer tools as (apt-get install postgresql creates one)',
    );
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** A temporary folder the postgres user owns (the tools write their state and config there). */
export function ownedTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const user = postgresUser();
  if (user) chownSync(dir, user.uid, user.gid);
  return dir;
}

export function ownedDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const user = postgresUser();
  if (user) chownSync(path, user.uid, user.gid);
  return path;
}

export function writeOwned(path: string, text: string, mode = 0o600): void {
  writeFileSync(path, text, { mode });
  const user = postgresUser();
  if (user) chownSync(path, user.uid, user.gid);
}

/** A one-shot command as postgres; its output on failure says what went wrong. */
export function runAs(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<string> {
  const user = postgresUser();
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env, timeout: timeoutMs, ...(user ?? {}), maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const detail = `${stderr}\n${stdout}`.trim().split('\n').slice(-4).join(' | ');
          reject(new Error(`${file.split('/').pop()} ${args.join(' ')} failed: ${detail || err.message}`));
        } else resolve(stdout + stderr);
      },
    );
  });
}

export interface Agent {
  name: string;
  pid: number;
  log: string;
}

/** Starts a long-running program as postgres, in its own process group, output to `log`. */
export async function startAgent(
  name: string,
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  log: string,
): Promise<Agent> {
  const user = postgresUser();
  const fd = openSync(log, 'a');
  try {
    if (user) chownSync(log, user.uid, user.gid);
    const child = spawn(file, args, { env, detached: true, stdio: ['ignore', fd, fd], ...(user ?? {}) });
    await new Promise<void>((ok, fail) => {
      child.once('spawn', ok);
      child.once('error', (e) => fail(new Error(`cannot start ${name} (${file}): ${e.message}`)));
    });
    child.unref();
    return { name, pid: child.pid!, log };
  } finally {
    closeSync(fd);
  }
}

export function logTail(log: string, lines = 3): string {
  try {
    return readFileSync(log, 'utf8').trim().split('\n').slice(-lines).join(' | ');
  } catch {
    return '(no log)';
  }
}

/** SIGKILLs the agent and every process under it except PostgreSQL's (a crash of the tool only). */
export function killAgent(agent: Agent): void {
  for (const pid of toolPids([agent.pid])) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** SIGTERM to the agent's group, SIGKILL after `graceMs`: the bench never leaves one running. */
export async function stopAgent(agent: Agent, graceMs = 10_000): Promise<void> {
  if (!isAlive(agent.pid)) return;
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-agent.pid, s);
    } catch {
      try {
        process.kill(agent.pid, s);
      } catch {
        // gone
      }
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(agent.pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(agent.pid)) signal('SIGKILL');
  for (const pid of toolPids([agent.pid])) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** pg_ctl stop -m immediate on a data directory, when a server runs there: what a crash does. */
export async function crashServer(dataDir: string, env: NodeJS.ProcessEnv): Promise<void> {
  await runAs(join(PG_BIN, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '30'], env, 40_000).catch(
    () => undefined,
  );
}

/** The folder goes once nothing of ours runs in it any more. */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
