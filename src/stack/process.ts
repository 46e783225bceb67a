// Background processes of the local stack: spawned detached (own process group, output to a
// log file) so they outlive the CLI, and recognised later by pid *and* by what they are, so a
// pid the kernel reused for something else is never signalled.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { sleep } from './wait';

export interface ProcessRecord {
  pid: number;
  /** What was spawned: argv[0] is the executable exactly as passed to spawn. */
  argv: string[];
  /** Kernel start time (clock ticks after boot, /proc/<pid>/stat field 22); a reused pid has another. */
  startTime?: number;
  log: string;
  /** Size of the log before the process started: readiness lines are looked for after it. */
  logOffset: number;
  startedAt: string;
}

interface ProcStat {
  state: string;
  startTime: number;
}

function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    const startTime = Number(fields[19]);
    if (!state || !Number.isFinite(startTime)) return undefined;
    return { state, startTime };
  } catch {
    return undefined;
  }
}

/** Alive = exists and is not a zombie (an exited child nobody reaped yet still has a pid). */
export function isAlive(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

export function cmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (raw === '') return undefined;
    const parts = raw.split('\0');
    if (parts[parts.length - 1] === '') parts.pop();
    return parts;
  } catch {
    return undefined;
  }
}

/**
 * True when `rec.pid` is still the process we started: same kernel start time and a command
 * line ending with the argv we spawned (a script's interpreter may come first, as with
 * `python3 .../moto_server ...`).
 */
export function isOurs(rec: Pick<ProcessRecord, 'pid' | 'argv' | 'startTime'>): boolean {
  const stat = procStat(rec.pid);
  if (!stat || stat.state === 'Z' || stat.state === 'X') return false;
  if (rec.startTime !== undefined && stat.startTime !== rec.startTime) return false;
  const live = cmdline(rec.pid);
  if (!live || live.length < rec.argv.length) return false;
  const tail = live.slice(live.length - rec.argv.length);
  return tail.every((arg, i) => arg === rec.argv[i]);
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Start `argv` in its own process group with stdout and stderr appended to `log`. */
export async function spawnDetached(
  argv: string[],
  opts: { log: string; env?: NodeJS.ProcessEnv; cwd?: string },
): Promise<ProcessRecord> {
  const [file, ...args] = argv;
  if (!file) throw new Error('spawnDetached: empty argv');
  mkdirSync(dirname(opts.log), { recursive: true });
  const logOffset = fileSize(opts.log);
  const fd = openSync(opts.log, 'a');
  try {
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`cannot start ${file}: ${err.message}`)));
    });
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`cannot start ${file}: no pid`);
    return {
      pid,
      argv,
      startTime: procStat(pid)?.startTime,
      log: opts.log,
      logOffset,
      startedAt: new Date().toISOString(),
    };
  } finally {
    closeSync(fd);
  }
}

/** What a log gained since `offset` (the current run's output). */
export function logSince(path: string, offset: number): string {
  try {
    const buf = readFileSync(path);
    return buf.subarray(Math.min(offset, buf.length)).toString('utf8');
  } catch {
    return '';
  }
}

const ERROR_LINE = /error|cannot|can't|could not|fail|fatal|panic|refused|denied|in use|not found|no such/i;

/**
 * The lines of a log that explain a failure, for an error message: the last lines that look
 * like an error (a stack trace's last lines rarely say what went wrong), else the last lines.
 */
export function logTail(path: string, offset = 0, lines = 2): string {
  const all = logSince(path, offset)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-30);
  const errors = all.filter((l) => ERROR_LINE.test(l));
  return (errors.length ? errors : all)
    .slice(-lines)
    .map((l) => (l.length > 300 ? `${l.slice(0, 300)}…` : l))
    .join(' | ');
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Live (non-zombie) processes in a process group: field 5 of /proc/<pid>/stat is the group. */
function groupExists(pgid: number): boolean {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return false;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true;
    } catch {
      // exited while we looked
    }
  }
  return false;
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

export type StopOutcome = 'stopped' | 'killed' | 'not running' | 'not ours';

/**
 * SIGTERM to the process group, then SIGKILL after `timeoutMs`. Nothing is signalled unless
 * the pid is still the process we started.
 */
export async function stopProcess(rec: ProcessRecord, timeoutMs = 15_000): Promise<StopOutcome> {
  if (!isAlive(rec.pid)) return 'not running';
  if (!isOurs(rec)) return 'not ours';
  signalGroup(rec.pid, 'SIGTERM');
  let outcome: StopOutcome = 'stopped';
  if (!(await waitGone(rec.pid, timeoutMs))) {
    signalGroup(rec.pid, 'SIGKILL');
    outcome = 'killed';
    await waitGone(rec.pid, 5_000);
  }
  // Children the leader left behind in its group (it was ours, so its group is too).
  const deadline = Date.now() + 2_000;
  while (groupExists(rec.pid) && Date.now() < deadline) await sleep(100);
  if (groupExists(rec.pid)) signalGroup(rec.pid, 'SIGKILL');
  return outcome;
}
