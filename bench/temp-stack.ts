// The bench's own local stack: free ports, a temporary REGIONSHIFT_HOME and data directories,
// so a bench never disturbs (or is disturbed by) a stack someone is using.
import { rmSync } from 'node:fs';
import { loadConfig } from '../src/lib/config/load';
import type { Config } from '../src/lib/config/schema';
import { stackDown, stackUp, type UpResult } from '../src/stack/stack';
import { writeTempStack, type TempStackOptions } from '../src/stack/temp';

/** Where a stack finds itself: set by makeBenchStack (and the detection bench) for the one it makes. */
const STACK_ENV = ['REGIONSHIFT_HOME', 'REGIONSHIFT_CONFIG', 'TEMPORAL_ADDRESS'];

/**
 * Runs a section that points the environment at a stack of its own, then puts back what the
 * shared stack had: those variables and any `more` the body sets.
 */
export async function withStackEnv<T>(body: () => Promise<T>, more: string[] = []): Promise<T> {
  const saved = [...STACK_ENV, ...more].map((k) => [k, process.env[k]] as const);
  try {
    return await body();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

export interface BenchStack {
  dir: string;
  home: string;
  configFile: string;
  config: Config;
  up(onProgress: (line: string) => void): Promise<UpResult>;
  /** Stops everything the stack started and deletes its folder. */
  destroy(): Promise<void>;
}

/**
 * `policy` is the ledger service's policy block, as YAML flow mappings (indented by the caller);
 * `layout` names its regions (writer first) and weights when they are not the pair's.
 */
export async function makeBenchStack(
  policy: string,
  layout: Pick<TempStackOptions, 'regions' | 'weights' | 'moreServices' | 'extra' | 'controlPlane'> = {},
): Promise<BenchStack> {
  const { dir, home, configFile } = await writeTempStack({
    prefix: 'regionshift-bench-',
    comment: 'written by npm run bench; deleted when it ends',
    policy,
    ttl: 5,
    approver: 'bench-oncall',
    ...layout,
    // As in regionshift.yaml: reconcile's verify step checksums the loans too.
    serviceExtra: [
      '    reconcile:',
      '      mutable:',
      "        - { table: loans, keyPrefix: 'loan:', updatedAt: updated_at, states: [PENDING, APPROVED, DISBURSED, COMPLETED] }",
    ].join('\n'),
  });
  const config = loadConfig(configFile);
  // Everything spawned from here (workers, postgres through pg_ctl) finds this stack, not the default one.
  process.env.REGIONSHIFT_HOME = home;
  process.env.REGIONSHIFT_CONFIG = configFile;
  // Replicated: clients find the active cluster and workers their own region's (no one address).
  if (layout.controlPlane === 'replicated') delete process.env.TEMPORAL_ADDRESS;
  else process.env.TEMPORAL_ADDRESS = config.temporal.address;
  let destroyed: Promise<void> | undefined;
  return {
    dir,
    home,
    configFile,
    config,
    up: (onProgress) => stackUp({ config, configFile, home, onProgress }),
    destroy: () =>
      (destroyed ??= stackDown({ home }).then(
        () => rmSync(dir, { recursive: true, force: true }),
        (err: Error) => {
          throw new Error(
            `could not stop the bench stack in ${home} (${err.message}); stop it with: REGIONSHIFT_HOME=${home} regionshift stack down`,
          );
        },
      )),
  };
}
