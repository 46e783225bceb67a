// Installs what the tests need and the machine may lack (the Temporal CLI and server, the moto venv,
// PostgreSQL, ssh-keygen, Prometheus and its kin, Redis, and Chromium for the test that looks at
// the Temporal UI), once, before any test file runs: `npm test` works on a fresh machine, and two
// files running at once never race for apt-get's lock.
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
  return provideTestBundle();
}
