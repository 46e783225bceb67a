// A light rig for the trigger-side tests: the Temporal dev server (the CLI binary the project
// builds, with the project's search attributes), a control worker running the project's
// workflows, and a service config whose databases are never contacted (the runbooks these tests
// pass have approval steps only, so no region worker is needed).
import { approverEntries, decisionActivities } from './signing';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { dataConverterFromEnv } from '../../src/lib/codec/env';
import { Config } from '../../src/lib/config/schema';
import { CONTROL_TASK_QUEUE } from '../../src/contract/runbook/ids';
import { ensureTemporalCli } from '../../src/stack/temporal';
import { SA } from '../../workflows/search-attributes';
import { freePort } from './ports';
import { startControlVersion, testWorkflowBundle, type TestBundle } from './workflow-bundle';

export function installQuietRuntime(): void {
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // already installed by another rig in this process
  }
}

/** The dev server as every rig here runs it: the project's CLI binary and search attributes, its SQLite file in `dir`. */
export function devServerOptions(temporalCli: string, port: number, dir: string) {
  return {
    executable: { type: 'existing-path' as const, path: temporalCli },
    ip: '127.0.0.1',
    port,
    ui: false,
    dbFilename: join(dir, 'temporal.sqlite'),
    searchAttributes: Object.values(SA),
  };
}

/** Named workers, each stoppable on its own (a region's worker host dying) and all at teardown. */
export interface WorkerSet {
  has(name: string): boolean;
  run(name: string, worker: Worker): void;
  /** Shuts the worker down and waits for it; nothing when it is not running. */
  stop(name: string): Promise<void>;
  stopAll(): Promise<void>;
}

export function workerSet(): WorkerSet {
  const workers = new Map<string, { worker: Worker; done: Promise<void> }>();
  return {
    has: (name) => workers.has(name),
    run(name, worker) {
      workers.set(name, { worker, done: worker.run() });
    },
    async stop(name) {
      const w = workers.get(name);
      if (!w) return;
      workers.delete(name);
      w.worker.shutdown();
      await w.done;
    },
    async stopAll() {
      // A test may have shut one down itself (a deploy removing a version).
      for (const w of workers.values()) if (w.worker.getState() === 'RUNNING') w.worker.shutdown();
      await Promise.allSettled([...workers.values()].map((w) => w.done));
    },
  };
}

/** A rig with one activity worker per region, which a test stops and starts. */
export interface RegionWorkersRig {
  client: Client;
  config: Config;
  /** Starts (or restarts) the region's activity worker. */
  startRegion(region: string): Promise<void>;
  /** Stops the region's activity worker, as if its host died (in-flight tasks are left to time out). */
  stopRegion(region: string): Promise<void>;
  teardown(): Promise<void>;
}

export interface TemporalEnv {
  env: TestWorkflowEnvironment;
  client: Client;
  address: string;
  connection: NativeConnection;
  config: Config;
  /** The project's workflows, bundled once: a worker given it starts without running webpack again. */
  workflowBundle: TestBundle;
  /** Starts another worker on the shared connection; stopped at teardown. */
  startWorker(options: Omit<WorkerOptions, 'connection'>): Promise<Worker>;
  teardown(): Promise<void>;
}

/** A config with services whose providers are never called in these tests. */
export function paperConfig(
  address: string,
  services: { name: string; regions: string[]; policy?: Record<string, unknown>; triggers?: unknown }[],
  triggers?: unknown,
): Config {
  const config = Config.parse({
    temporal: { address },
    services: services.map((s) => ({
      name: s.name,
      regions: s.regions,
      database: {
        provider: 'postgres-streaming',
        regions: Object.fromEntries(
          s.regions.map((r, i) => [r, { host: '127.0.0.1', port: 1 + i, dataDir: `/nonexistent/${s.name}-${r}` }]),
        ),
      },
      traffic: {
        provider: 'route53',
        hostedZone: 'regionshift.test.',
        recordName: `${s.name}.regionshift.test.`,
        endpoints: Object.fromEntries(s.regions.map((r) => [r, `db.${r}.regionshift.test.`])),
      },
      // Someone must be able to give a required approval (approvalProblems); carol, with her own key.
      policy: { approvers: approverEntries('carol'), ...(s.policy ?? {}) },
    })),
  });
  // triggers are set after parsing so this works whether or not schema.ts has the fields yet.
  services.forEach((s, i) => {
    if (s.triggers !== undefined) (config.services[i] as { triggers?: unknown }).triggers = s.triggers;
  });
  if (triggers !== undefined) (config as { triggers?: unknown }).triggers = triggers;
  return config;
}

export interface TemporalEnvOptions {
  /** Serve the Web UI on this port (off when absent), with this codec endpoint when given. */
  ui?: { port: number; codecEndpoint?: string };
  /** Start the unversioned control worker (default true); false for a test that runs its own versions. */
  controlWorker?: boolean;
}

export async function createTemporalEnv(
  makeConfig: (address: string) => Config,
  opts: TemporalEnvOptions = {},
): Promise<TemporalEnv> {
  installQuietRuntime();
  const temporalCli = await ensureTemporalCli();
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-temporal-'));
  const port = await freePort();
  // Outside the global setup, bundling takes as long as the server takes to start: do both at once.
  const bundling = testWorkflowBundle();
  bundling.catch(() => undefined); // awaited below; a server that fails to start must not leave it unhandled
  // Clients and workers use the codec the environment asks for, as the CLI and workers do.
  const dataConverter = dataConverterFromEnv();
  const env = await TestWorkflowEnvironment.createLocal({
    client: { dataConverter },
    server: {
      ...devServerOptions(temporalCli, port, dir),
      ...(opts.ui ? { ui: true, uiPort: opts.ui.port } : {}),
      ...(opts.ui?.codecEndpoint ? { extraArgs: ['--ui-codec-endpoint', opts.ui.codecEndpoint] } : {}),
    },
  });
  let workflowBundle: TestBundle;
  try {
    workflowBundle = await bundling;
  } catch (err) {
    await env.teardown().catch(() => undefined);
    throw err;
  }
  const address = `127.0.0.1:${port}`;
  const connection = await NativeConnection.connect({ address });
  const workers = workerSet();
  let started = 0;
  const startWorker = async (options: Omit<WorkerOptions, 'connection'>): Promise<Worker> => {
    const worker = await Worker.create({ connection, dataConverter, ...options });
    workers.run(`worker-${++started}`, worker);
    return worker;
  };
  const config = makeConfig(address);
  if (opts.controlWorker !== false) {
    await startControlVersion(connection, workflowBundle, (v) =>
      startWorker({ taskQueue: CONTROL_TASK_QUEUE, workflowBundle, activities: decisionActivities(config), ...v }),
    );
  }
  return {
    env,
    client: env.client,
    address,
    connection,
    config,
    workflowBundle,
    startWorker,
    async teardown() {
      await workers.stopAll();
      await connection.close().catch(() => undefined);
      await env.teardown().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
