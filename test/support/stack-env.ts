// A throw-away local stack for tests: free ports, a temporary REGIONSHIFT_HOME and PostgreSQL
// data directories under os.tmpdir(), so a test never touches a developer's running stack.
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { freePorts } from './ports';

export const REPO = resolve(__dirname, '..', '..');

export interface TempStack {
  dir: string;
  home: string;
  configFile: string;
  temporalPort: number;
  uiPort: number;
  motoPort: number;
  pg: Record<'us-west-2' | 'us-east-1', { port: number; dataDir: string }>;
  /** Environment for the CLI and for anything that must find this stack. */
  env: NodeJS.ProcessEnv;
  remove(): void;
}

export async function makeTempStack(): Promise<TempStack> {
  // mkdtemp makes the folder 0700; the postgres user must be able to traverse it.
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-stack-'));
  chmodSync(dir, 0o755);
  const home = join(dir, 'state');
  const [temporalPort, uiPort, motoPort, west, east] = (await freePorts(5)) as [number, number, number, number, number];
  const pg = {
    'us-west-2': { port: west, dataDir: join(dir, 'pg', 'ledger-us-west-2') },
    'us-east-1': { port: east, dataDir: join(dir, 'pg', 'ledger-us-east-1') },
  };
  const configFile = join(dir, 'regionshift.yaml');
  writeFileSync(
    configFile,
    `temporal:
  address: 127.0.0.1:${temporalPort}
  namespace: default
  uiUrl: http://127.0.0.1:${uiPort}
stack:
  temporalPort: ${temporalPort}
  temporalUiPort: ${uiPort}
  motoPort: ${motoPort}
services:
  - name: ledger
    regions: [us-west-2, us-east-1]
    database:
      provider: postgres-streaming
      regions:
        us-west-2: { host: 127.0.0.1, port: ${west}, dataDir: pg/ledger-us-west-2 }
        us-east-1: { host: 127.0.0.1, port: ${east}, dataDir: pg/ledger-us-east-1 }
    traffic:
      provider: route53
      hostedZone: regionshift.test.
      recordName: ledger.regionshift.test.
      endpoints:
        us-west-2: db.us-west-2.regionshift.test.
        us-east-1: db.us-east-1.regionshift.test.
      endpointUrl: http://127.0.0.1:${motoPort}
`,
  );
  const env = { ...process.env, REGIONSHIFT_HOME: home, REGIONSHIFT_CONFIG: configFile };
  return {
    dir, home, configFile, temporalPort, uiPort, motoPort, pg, env,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (`node bin/regionshift.js ...`) as a user would. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 240_000): Promise<CliResult> {
  return new Promise((ok) => {
    execFile(process.execPath, [join(REPO, 'bin', 'regionshift.js'), ...args], { env, cwd: REPO, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      ok({ code, stdout, stderr });
    });
  });
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
      found.push({ pid: Number(entry), cmd: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim() });
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
