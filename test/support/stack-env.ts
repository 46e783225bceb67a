// A throw-away local stack for tests: free ports, a temporary REGIONSHIFT_HOME and PostgreSQL
// data directories under os.tmpdir(), so a test never touches a developer's running stack.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeTempStack, type TempStackFiles, type TempStackOptions } from '../../src/stack/temp';
import { waitFor } from './wait';

export const REPO = resolve(__dirname, '..', '..');

export interface TempStack extends TempStackFiles {
  /** Environment for the CLI and for anything that must find this stack. */
  env: NodeJS.ProcessEnv;
  remove(): void;
}

/** The ledger's regions and weights as the test wants them; default two regions, the writer 100, no monitoring. */
export async function makeTempStack(
  opts: Pick<
    TempStackOptions,
    'regions' | 'weights' | 'monitoring' | 'policy' | 'serviceExtra' | 'app' | 'controlPlane'
  > = {},
): Promise<TempStack> {
  const files = await writeTempStack({
    prefix: 'regionshift-stack-',
    comment: 'written by a test (test/support/stack-env.ts)',
    ...opts,
  });
  const env = { ...process.env, REGIONSHIFT_HOME: files.home, REGIONSHIFT_CONFIG: files.configFile };
  return { ...files, env, remove: () => rmSync(files.dir, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (`node bin/regionshift.js ...`) as a user would. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 240_000): Promise<CliResult> {
  return new Promise((ok) => {
    execFile(
      process.execPath,
      [join(REPO, 'bin', 'regionshift.js'), ...args],
      { env, cwd: REPO, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        ok({ code, stdout, stderr });
      },
    );
  });
}

export interface CliWorker {
  child: ChildProcess;
  /** Everything it has printed so far, stdout and stderr. */
  output(): string;
}

/** `regionshift worker <args>` as a deploy starts it; returned once it says it is ready. */
export async function startCliWorker(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 90_000): Promise<CliWorker> {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'regionshift.js'), 'worker', ...args], {
    cwd: REPO,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  await waitFor(
    `regionshift worker ${args.join(' ')} to say it is ready`,
    async () => {
      if (child.exitCode !== null) throw new Error(`regionshift worker exited ${child.exitCode}:\n${out}`);
      return out.includes('regionshift worker ready');
    },
    timeoutMs,
    100,
  );
  return { child, output: () => out };
}

/**
 * Live processes started for this stack: everything the CLI spawns inherits REGIONSHIFT_HOME
 * (temporal, moto, workers, and postgres through pg_ctl), so /proc/<pid>/environ tells them
 * apart from a developer's own stack.
 */
export function processesOf(stack: TempStack): Array<{ pid: number; cmd: string }> {
  const needle = `REGIONSHIFT_HOME=${stack.home}`;
  const found: Array<{ pid: number; cmd: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (!environ.includes(needle)) continue;
      found.push({
        pid: Number(entry),
        cmd: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim(),
      });
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Last resort after `stack down` in a failed run: nothing of this stack may outlive the tests. */
export async function killLeftovers(stack: TempStack): Promise<string[]> {
  const left = processesOf(stack);
  for (const p of left) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  return left.map((p) => `${p.pid} ${p.cmd}`);
}
