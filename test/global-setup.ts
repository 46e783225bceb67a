// Installs what the tests need and the machine may lack (the Temporal CLI and server, the moto venv,
// PostgreSQL, ssh-keygen, Prometheus and its kin, Redis, and Chromium for the test that looks at
// the Temporal UI), once, before any test file runs: `npm test` works on a fresh machine, and two
// files running at once never race for apt-get's lock. And it gives the run one temporary folder.
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTemporalServer } from '../src/stack/control-plane';
import { ensureMonitoringBins } from '../src/stack/monitoring/bins';
import { ensureRedisServer } from '../src/stack/redis';
import { ensureChromium, ensureMoto, ensurePgBin, ensureSshKeygen, ensureTemporalCli } from '../src/stack/stack';
import { provideTestBundle } from './support/workflow-bundle';

export default async function setup(): Promise<() => void> {
  const say = (line: string): void => {
    process.stderr.write(`[setup] ${line}\n`);
  };
  await ensurePgBin({ onProgress: say });
  await ensureSshKeygen({ onProgress: say });
  await ensureMoto({ onProgress: say });
  await ensureTemporalCli({ onProgress: say });
  // The replicated control plane's full server (test/control-plane.test.ts): built from source once.
  await ensureTemporalServer({ onProgress: say });
  await ensureChromium({ onProgress: say });
  await ensureMonitoringBins({ onProgress: say });
  await ensureRedisServer({ onProgress: say });
  // Every temporary folder of the run (configs, keys, PostgreSQL clusters, whole stacks, the bundle)
  // goes below one folder, removed at the end: the files' own cleanups miss some (a folder made
  // inside a test, an exit hook a worker never runs), and each run used to leave dozens in /tmp.
  // The test workers are forked after this and inherit TMPDIR, which os.tmpdir() reads; so do the
  // servers and CLIs they start. The bench runs outside vitest and keeps the system's folder.
  sweepDeadRoots(tmpdir());
  const root = mkdtempSync(join(tmpdir(), ROOT_PREFIX));
  // As /tmp is: PostgreSQL runs as its own user and must reach its data directories below.
  chmodSync(root, 0o1777);
  writeFileSync(join(root, OWNER), String(process.pid));
  process.env.TMPDIR = root;
  say('bundling the workflow code once for every test file');
  const dropBundle = await provideTestBundle();
  return () => {
    dropBundle();
    // REGIONSHIFT_KEEP_PG=1 keeps the data directories and logs for a post-mortem.
    if (process.env.REGIONSHIFT_KEEP_PG) {
      rmSync(join(root, OWNER)); // kept: no later run sweeps it
      say(`the tests' temporary folders are kept in ${root}`);
    } else rmSync(root, { recursive: true, force: true });
  };
}

const ROOT_PREFIX = 'regionshift-tests-';
/** The pid of the vitest process whose folder it is, while it runs. */
const OWNER = 'owner.pid';

/**
 * A run that was killed (a CI timeout, Ctrl-C) never reaches its teardown: the next run removes
 * its folder. Only folders whose owner is gone; another run on the machine keeps its own.
 */
function sweepDeadRoots(dir: string): void {
  for (const name of readdirSync(dir).filter((n) => n.startsWith(ROOT_PREFIX))) {
    let pid: number;
    try {
      pid = Number(readFileSync(join(dir, name, OWNER), 'utf8'));
    } catch {
      continue; // kept on purpose (REGIONSHIFT_KEEP_PG), or not one of ours
    }
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') rmSync(join(dir, name), { recursive: true, force: true });
    }
  }
}
