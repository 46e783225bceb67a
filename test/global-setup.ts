// Installs what the tests need and the machine may lack (the Temporal CLI and server, the moto venv,
// PostgreSQL, ssh-keygen, Prometheus and its kin, Redis, and Chromium for the test that looks at
// the Temporal UI), once, before any test file runs: `npm test` works on a fresh machine, and two
// files running at once never race for apt-get's lock.
import { mkdtempSync, rmSync } from 'node:fs';
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
  say('bundling the workflow code once for every test file');
  const dropBundle = await provideTestBundle();
  // Every temporary folder the tests make (configs, keys, whole stacks) lands in one folder of
  // this run, removed at the end: the files' own cleanups miss some (a folder made inside a test,
  // an exit hook a worker thread never runs), and each run used to leave dozens in /tmp.
  // The test workers start after this and inherit TMPDIR; os.tmpdir() reads it.
  const root = mkdtempSync(join(tmpdir(), 'regionshift-tests-'));
  process.env.TMPDIR = root;
  return () => {
    dropBundle();
    // REGIONSHIFT_KEEP_PG=1 keeps the data directories and logs for a post-mortem.
    if (process.env.REGIONSHIFT_KEEP_PG) say(`the tests' temporary folders are kept in ${root}`);
    else rmSync(root, { recursive: true, force: true });
  };
}
