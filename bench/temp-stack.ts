// The bench's own local stack: free ports, a temporary REGIONSHIFT_HOME and data directories,
// so a bench never disturbs (or is disturbed by) a stack someone is using.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load';
import type { Config } from '../src/config/schema';
import { freePorts } from '../src/stack/net';
import { stackDown, stackUp, type UpResult } from '../src/stack/stack';

export interface BenchStack {
  dir: string;
  home: string;
  configFile: string;
  config: Config;
  up(onProgress: (line: string) => void): Promise<UpResult>;
  /** Stops everything the stack started and deletes its folder. */
  destroy(): Promise<void>;
}

/** `policy` is the ledger service's policy block, as YAML flow mappings (indented by the caller). */
export async function makeBenchStack(policy: string): Promise<BenchStack> {
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-bench-'));
  // mkdtemp makes 0700; the postgres user must be able to reach the data directories inside.
  chmodSync(dir, 0o755);
  const home = join(dir, 'state');
  const [temporal, ui, moto, west, east] = (await freePorts(5)) as [number, number, number, number, number];
  const configFile = join(dir, 'regionshift.yaml');
  writeFileSync(
    configFile,
    `# written by npm run bench; deleted when it ends
temporal: { address: 127.0.0.1:${temporal}, namespace: default, uiUrl: http://127.0.0.1:${ui} }
stack: { temporalPort: ${temporal}, temporalUiPort: ${ui}, motoPort: ${moto} }
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
      ttl: 5
      endpoints: { us-west-2: db.us-west-2.regionshift.test., us-east-1: db.us-east-1.regionshift.test. }
      endpointUrl: http://127.0.0.1:${moto}
    # as in regionshift.yaml: reconcile's verify step checksums the loans too
    reconcile:
      mutable:
        - { table: loans, keyPrefix: 'loan:', updatedAt: updated_at, states: [PENDING, APPROVED, DISBURSED, COMPLETED] }
    policy:
${policy}
`,
  );
  const config = loadConfig(configFile);
  // Everything spawned from here (workers, postgres through pg_ctl) finds this stack, not the default one.
  process.env.REGIONSHIFT_HOME = home;
  process.env.REGIONSHIFT_CONFIG = configFile;
  process.env.TEMPORAL_ADDRESS = config.temporal.address;
  let destroyed: Promise<void> | undefined;
  return {
    dir, home, configFile, config,
    up: (onProgress) => stackUp({ config, configFile, home, onProgress }),
    destroy: () =>
      (destroyed ??= stackDown({ home }).then(
        () => rmSync(dir, { recursive: true, force: true }),
        (err: Error) => {
          throw new Error(`could not stop the bench stack in ${home} (${err.message}); stop it with: REGIONSHIFT_HOME=${home} regionshift stack down`);
        },
      )),
  };
}
