// A whole failover rig made of real parts: the Temporal dev server (the CLI binary the project
// builds), a PostgreSQL primary and streaming standby, moto for Route 53, and one worker per
// region plus a control worker, each of which a test can stop and start on its own. Like
// workers/region.ts, every worker runs http.call (activities/http.ts) too.
import { approverEntries, decisionActivities } from './signing';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, Worker } from '@temporalio/worker';
import { Pool } from 'pg';
import { createRegionActivities, type RegionActivityOptions } from '../../activities';
import { createHttpActivities } from '../../activities/http';
import { ensureTrafficRecords } from '../../activities/traffic/route53';
import { dataConverterFromEnv } from '../../src/lib/codec/env';
import { Config } from '../../src/lib/config/schema';
import { dsn, PG_APP_ROLE, psql, type PgNode } from '../../src/lib/postgres/node';
import { builtinRunbookPath, loadRunbook } from '../../src/lib/runbooks';
import { parseYaml } from '../../src/lib/config/load';
import { Runbook } from '../../src/contract/runbook/schema';
import { CONTROL_TASK_QUEUE, regionTaskQueue } from '../../src/contract/runbook/ids';
import type { RunbookDoc, RunInput } from '../../src/contract/runbook/types';
import { buildRunInput, type StartRequest } from '../../src/lib/runs/client';
import { ensureTemporalCli } from '../../src/stack/temporal';
import { createPgCluster, type PgPair } from './pg-pair';
import { freePort } from './ports';
import { startMoto, type MotoServer } from './moto';
import { devServerOptions, installQuietRuntime, workerSet, type RegionWorkersRig } from './temporal-env';
import { startControlVersion, testWorkflowBundle } from './workflow-bundle';

export const SERVICE = 'ledger';

export interface FailoverEnv extends RegionWorkersRig {
  env: TestWorkflowEnvironment;
  pg: PgPair;
  moto: MotoServer;
  nodes: Record<string, PgNode>;
  /** Restarts the Temporal dev server on the same port and SQLite file. */
  restartTemporal(): Promise<void>;
  input(req: Partial<StartRequest> & { target: string }, runbook?: RunbookDoc): RunInput;
  /** A pool of application-role connections to a region's database. */
  appPool(region: string): Pool;
  /** Whether the application role can write in the region right now (a real INSERT). */
  isWritable(region: string): Promise<boolean>;
}

export function runbookFromText(text: string): RunbookDoc {
  const loaded = parseYaml('test-runbook.yaml', text, Runbook);
  return { ...loaded.value, hash: loaded.hash, file: loaded.file };
}

export interface FailoverEnvOptions {
  /** The service's regions, writer first; each gets a PostgreSQL node (the others stream from the first). Default: us-west-2, us-east-1. */
  regions?: string[];
  /** More of the service's config (its `triggers`, say). */
  service?: Record<string, unknown>;
}

export async function createFailoverEnv(
  policy: Record<string, unknown> = {},
  activityOptions: RegionActivityOptions = {},
  envOptions: FailoverEnvOptions = {},
): Promise<FailoverEnv> {
  installQuietRuntime();
  const temporalCli = await ensureTemporalCli();
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-temporal-'));
  const port = await freePort();
  const serverOptions = devServerOptions(temporalCli, port, dir);
  // Clients and workers use the codec the environment asks for, as the CLI and workers do.
  const dataConverter = dataConverterFromEnv();
  let env = await TestWorkflowEnvironment.createLocal({ server: serverOptions, client: { dataConverter } });
  const [cluster, moto] = await Promise.all([
    createPgCluster(envOptions.regions ?? ['us-west-2', 'us-east-1']),
    startMoto(),
  ]);
  const pg: PgPair = { ...cluster, primary: cluster.nodes[0]!, standby: cluster.nodes[1]! };
  const nodes = Object.fromEntries(cluster.nodes.map((n) => [n.region, n]));
  const config = Config.parse({
    temporal: { address: `127.0.0.1:${port}` },
    services: [
      {
        name: SERVICE,
        regions: cluster.nodes.map((n) => n.region),
        database: {
          provider: 'postgres-streaming',
          regions: Object.fromEntries(
            Object.values(nodes).map((n) => [
              n.region,
              { host: n.host, port: n.port, dataDir: n.dataDir, pgBin: pg.bin },
            ]),
          ),
        },
        traffic: {
          provider: 'route53',
          hostedZone: 'regionshift.test.',
          recordName: 'ledger.regionshift.test.',
          ttl: 5,
          endpoints: Object.fromEntries(Object.keys(nodes).map((r) => [r, `db.${r}.regionshift.test.`])),
          endpointUrl: moto.url,
        },
        // Approvers named by the test get their own SSH keys (support/signing.ts); carol by default.
        policy: {
          lagTimeout: '20s',
          approvalTimeout: '30s',
          ...policy,
          approvers: approverEntries(...((policy.approvers as string[] | undefined) ?? ['carol'])),
        },
        ...envOptions.service,
      },
    ],
  });
  await ensureTrafficRecords(config, SERVICE, pg.primary.region);
  await psql(
    pg.bin,
    pg.primary,
    'CREATE TABLE writable_probe(id uuid PRIMARY KEY); GRANT ALL ON writable_probe TO app;',
  );

  const connection = await NativeConnection.connect({ address: `127.0.0.1:${port}` });
  const workers = workerSet();
  const bundle = await testWorkflowBundle();
  await startControlVersion(connection, bundle, async (v) =>
    workers.run(
      'control',
      await Worker.create({
        connection,
        dataConverter,
        taskQueue: CONTROL_TASK_QUEUE,
        workflowBundle: bundle,
        activities: { ...decisionActivities(config), ...createHttpActivities('control') },
        ...v,
      }),
    ),
  );

  const pools = new Map<string, Pool>();
  const fe: FailoverEnv = {
    env,
    client: env.client,
    pg,
    moto,
    config,
    nodes,
    async startRegion(region) {
      if (workers.has(region)) return;
      workers.run(
        region,
        await Worker.create({
          connection,
          dataConverter,
          taskQueue: regionTaskQueue(region),
          activities: { ...createRegionActivities(config, region, activityOptions), ...createHttpActivities(region) },
        }),
      );
    },
    stopRegion: (region) => workers.stop(region),
    async restartTemporal() {
      await env.teardown();
      env = await TestWorkflowEnvironment.createLocal({ server: serverOptions, client: { dataConverter } });
      fe.env = env;
      fe.client = env.client;
    },
    input(req, runbook = loadRunbook(builtinRunbookPath('failover'))) {
      return buildRunInput(config, runbook, {
        service: SERVICE,
        mode: 'planned',
        dryRun: false,
        requestedBy: 'alice',
        trigger: 'test',
        ...req,
      });
    },
    appPool(region) {
      let pool = pools.get(region);
      if (!pool) {
        pool = new Pool({ connectionString: dsn(nodes[region]!, PG_APP_ROLE), max: 4, connectionTimeoutMillis: 2000 });
        pool.on('error', () => undefined); // fenced or stopped servers end sessions; the queries report it
        pools.set(region, pool);
      }
      return pool;
    },
    async isWritable(region) {
      try {
        await fe.appPool(region).query('INSERT INTO writable_probe VALUES ($1)', [randomUUID()]);
        return true;
      } catch {
        return false;
      }
    },
    async teardown() {
      for (const pool of pools.values()) await pool.end().catch(() => undefined);
      await workers.stopAll();
      await connection.close().catch(() => undefined);
      await env.teardown().catch(() => undefined);
      await Promise.allSettled([pg.teardown(), moto.stop()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const region of Object.keys(nodes)) await fe.startRegion(region);
  return fe;
}

// --- added for reconciliation and failback tests ---------------------------------------------

/**
 * Cuts the standby off from its primary (replication falls behind): its WAL receiver stops and
 * nothing the primary writes from now on reaches it. The standby stays a standby.
 */
export async function partitionStandby(fe: FailoverEnv, region: string): Promise<void> {
  const node = fe.nodes[region]!;
  await psql(fe.pg.bin, node, "ALTER SYSTEM SET primary_conninfo = ''");
  await psql(fe.pg.bin, node, 'SELECT pg_reload_conf()');
  const deadline = Date.now() + 20_000;
  while ((await psql(fe.pg.bin, node, 'SELECT count(*) FROM pg_stat_wal_receiver')).trim() !== '0') {
    if (Date.now() > deadline) throw new Error(`the WAL receiver of ${region} did not stop`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface WorkerProcess {
  pid: number;
  /** SIGKILL to the worker's process group: a crash, mid-task. */
  kill(): Promise<void>;
}

/**
 * Runs the region's activity worker as a separate process (the built CLI, as the local stack
 * does) so that a test can SIGKILL it mid-activity. Stop the in-process worker of the region
 * first (fe.stopRegion), or both poll the same task queue.
 */
export async function spawnRegionWorker(fe: FailoverEnv, region: string): Promise<WorkerProcess> {
  const { spawn } = await import('node:child_process');
  const { writeFileSync } = await import('node:fs');
  const file = join(mkdtempSync(join(tmpdir(), 'regionshift-worker-')), 'regionshift.json');
  writeFileSync(file, JSON.stringify(fe.config));
  const child = spawn(
    process.execPath,
    [
      join(__dirname, '..', '..', 'bin', 'regionshift.js'),
      'worker',
      '--region',
      region,
      '--no-control',
      '--config',
      file,
    ],
    {
      env: { ...process.env, TEMPORAL_ADDRESS: fe.config.temporal.address },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const deadline = Date.now() + 60_000;
  while (!out.includes('regionshift worker ready')) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`the ${region} worker process did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  return {
    pid: child.pid!,
    async kill() {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    },
  };
}
