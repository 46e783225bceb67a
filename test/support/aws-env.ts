// A failover rig for the AWS providers on the local stack: the Temporal dev server (the CLI binary
// the project builds), moto for RDS, CloudWatch and Route 53, one standalone PostgreSQL per region
// standing in for each Aurora cluster's writer endpoint (SQL fence, verify), and one worker per
// region plus a control worker, each of which a test can stop and start.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createRegionActivities } from '../../activities';
import { dataConverterFromEnv } from '../../src/lib/codec/env';
import type { Config } from '../../src/lib/config/schema';
import { findPgBin, initPrimary, initStandby, stop, type PgNode } from '../../src/lib/postgres/node';
import { CONTROL_TASK_QUEUE, regionTaskQueue } from '../../src/contract/runbook/ids';
import { ensureTemporalCli } from '../../src/stack/temporal';
import { startMoto, type MotoServer } from './moto';
import { freePorts } from './ports';
import { devServerOptions, installQuietRuntime, workerSet, type RegionWorkersRig } from './temporal-env';
import { startControlVersion, testWorkflowBundle } from './workflow-bundle';

export interface AwsEnv extends RegionWorkersRig {
  moto: MotoServer;
  pgBin: string;
  /** Per region, the PostgreSQL standing in for that region's Aurora writer endpoint. */
  nodes: Record<string, PgNode>;
}

export async function createAwsEnv(
  pgRegions: string[],
  makeConfig: (ctx: { address: string; motoUrl: string; nodes: Record<string, PgNode> }) => Config,
  options: { workerRegions: string[]; auroraPollMs?: number; streaming?: boolean },
): Promise<AwsEnv> {
  installQuietRuntime();
  const pgBin = findPgBin();
  if (!pgBin) throw new Error('PostgreSQL server binaries not found: install postgresql or set PG_BIN');
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-aws-'));
  chmodSync(dir, 0o755);
  // One call, so the ports differ from each other; and the databases listen before Temporal and
  // moto start, so neither can take a port chosen here for a database in the meantime.
  const [port, ...pgPorts] = (await freePorts(1 + pgRegions.length)) as [number, ...number[]];
  const nodes: Record<string, PgNode> = {};
  pgRegions.forEach(
    (region, i) => (nodes[region] = { region, dataDir: join(dir, region), port: pgPorts[i]!, host: '127.0.0.1' }),
  );
  if (options.streaming) {
    // RDS read replicas: the first region's node is the primary, the others stream from it.
    const [first, ...rest] = Object.values(nodes);
    await initPrimary(pgBin, first!);
    for (const n of rest) await initStandby(pgBin, n, first!);
  } else {
    await Promise.all(Object.values(nodes).map((n) => initPrimary(pgBin, n)));
  }
  const dataConverter = dataConverterFromEnv();
  const [env, moto] = await Promise.all([
    ensureTemporalCli().then((cli) =>
      TestWorkflowEnvironment.createLocal({
        client: { dataConverter },
        server: devServerOptions(cli, port, dir),
      }),
    ),
    startMoto(),
  ]);
  const address = `127.0.0.1:${port}`;
  const config = makeConfig({ address, motoUrl: moto.url, nodes });
  const connection = await NativeConnection.connect({ address });
  const workers = workerSet();
  const bundle = await testWorkflowBundle();
  await startControlVersion(connection, bundle, async (v) =>
    workers.run(
      'control',
      await Worker.create({ connection, dataConverter, taskQueue: CONTROL_TASK_QUEUE, workflowBundle: bundle, ...v }),
    ),
  );
  const awsEnv: AwsEnv = {
    client: env.client,
    moto,
    config,
    pgBin,
    nodes,
    async startRegion(region) {
      if (workers.has(region)) return;
      const activities = createRegionActivities(config, region, { aurora: { pollMs: options.auroraPollMs ?? 100 } });
      workers.run(
        region,
        await Worker.create({ connection, dataConverter, taskQueue: regionTaskQueue(region), activities }),
      );
    },
    stopRegion: (region) => workers.stop(region),
    async teardown() {
      await workers.stopAll();
      await connection.close().catch(() => undefined);
      await env.teardown().catch(() => undefined);
      await Promise.allSettled([moto.stop(), ...Object.values(nodes).map((n) => stop(pgBin, n, 'immediate'))]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const region of options.workerRegions) await awsEnv.startRegion(region);
  return awsEnv;
}
