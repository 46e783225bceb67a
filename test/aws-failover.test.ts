// The failover runbook (runbooks/failover.yaml, unchanged) through Temporal with the AWS
// providers on the local stack: Aurora global databases and Route 53 in moto, PostgreSQL standing
// in for each cluster's writer endpoint (the database-level fence and the verify write), one
// worker per region. moto has no SwitchoverGlobalCluster or FailoverGlobalCluster, so promotion
// takes the provider's fallback, detach-and-promote (RemoveFromGlobalCluster, which moto has);
// the managed operations run through Temporal in aws-failover-managed.test.ts.
import { Client as PgClient } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegionActivities } from '../activities';
import { attemptReadWriteLogin } from '../activities/db/sql';
import { ensureTrafficRecords } from '../activities/traffic/route53';
import { Config } from '../src/lib/config/schema';
import { dsn, psql } from '../src/lib/postgres/node';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { fenceOnReturnWorkflowId } from '../src/contract/runbook/ids';
import type { RunInput, RunRecord } from '../src/contract/runbook/types';
import { chooseTargetByPolicy } from '../src/lib/runs/auto-target';
import { awaitRecord, buildRunInput, startRun, type StartRequest } from '../src/lib/runs/client';
import { primaryRegionOf } from '../src/contract/traffic/plan';
import { createAuroraOnMoto, putLag } from './support/aurora-moto';
import { createAwsEnv, type AwsEnv } from './support/aws-env';

const WEST = 'us-west-2';
const EAST = 'us-east-1';

let aws: AwsEnv;
let lagPublisher: NodeJS.Timeout | undefined;
const runbook = loadRunbook(builtinRunbookPath('failover'));

function auroraService(
  name: string,
  appUser: string,
  nodes: AwsEnv['nodes'],
  motoUrl: string,
  policy: Record<string, unknown>,
): Record<string, unknown> {
  const member = (region: string) => ({
    clusterIdentifier: `${name}-${region === WEST ? 'west' : 'east'}`,
    writerEndpoint: nodes[region]!.host,
    port: nodes[region]!.port,
    appUser,
    adminUser: 'postgres',
  });
  return {
    name,
    regions: [WEST, EAST],
    database: {
      provider: 'aurora-global',
      globalClusterIdentifier: `${name}-global`,
      regions: { [WEST]: member(WEST), [EAST]: member(EAST) },
      lagMetric: 'AuroraGlobalDBRPOLag',
      // moto takes second-resolution datapoints; Aurora publishes per minute (the default, 60).
      lagMetricPeriodSeconds: 1,
      endpointUrl: motoUrl,
    },
    traffic: {
      provider: 'route53',
      hostedZone: 'aws.regionshift.test.',
      recordName: `${name}.aws.regionshift.test.`,
      ttl: 5,
      endpoints: { [WEST]: `${name}.${WEST}.aws.regionshift.test.`, [EAST]: `${name}.${EAST}.aws.regionshift.test.` },
      endpointUrl: motoUrl,
    },
    policy: { lagTimeout: '20s', approvalTimeout: '30s', ...policy },
  };
}

beforeAll(async () => {
  aws = await createAwsEnv(
    [WEST, EAST],
    ({ address, motoUrl, nodes }) =>
      Config.parse({
        temporal: { address },
        residency: { classes: { eu: { allowedRegions: ['eu-*'] } } },
        services: [
          auroraService('ledger', 'app', nodes, motoUrl, {}),
          auroraService('orders', 'orders_app', nodes, motoUrl, {
            allowDataLoss: true,
            rpoBudgetSeconds: 5,
            approval: { planned: 'none', unplanned: 'none' },
          }),
          {
            name: 'eu-ledger',
            regions: ['eu-west-1', 'eu-central-1', EAST],
            dataResidency: { class: 'eu' },
            database: {
              provider: 'aurora-global',
              globalClusterIdentifier: 'eu-global',
              regions: {
                'eu-west-1': { clusterIdentifier: 'a' },
                'eu-central-1': { clusterIdentifier: 'b' },
                [EAST]: { clusterIdentifier: 'c' },
              },
              endpointUrl: motoUrl,
            },
            traffic: {
              provider: 'route53',
              hostedZone: 'aws.regionshift.test.',
              recordName: 'eu.aws.regionshift.test.',
              endpoints: { 'eu-west-1': 'a.', 'eu-central-1': 'b.', [EAST]: 'c.' },
              endpointUrl: motoUrl,
            },
          },
        ],
      }),
    { workerRegions: [WEST, EAST] },
  );
  for (const node of Object.values(aws.nodes)) {
    await psql(
      aws.pgBin,
      node,
      `CREATE ROLE orders_app LOGIN; CREATE TABLE writes(id serial PRIMARY KEY, by text); GRANT ALL ON writes, writes_id_seq TO app, orders_app;`,
    );
  }
  for (const name of ['ledger', 'orders']) {
    await createAuroraOnMoto(aws.moto.url, `${name}-global`, [
      { id: `${name}-west`, region: WEST },
      { id: `${name}-east`, region: EAST },
    ]);
    await ensureTrafficRecords(aws.config, name, WEST);
  }
  // What Aurora does in the secondary's region: publish its replication lag (ms) as it goes.
  const publish = () =>
    Promise.all([putLag(aws.moto.url, EAST, 'ledger-east', 0), putLag(aws.moto.url, EAST, 'orders-east', 1200)]).catch(
      () => undefined,
    );
  await publish();
  lagPublisher = setInterval(() => void publish(), 400);
});

afterAll(async () => {
  if (lagPublisher) clearInterval(lagPublisher);
  await aws?.teardown();
});

function input(req: Partial<StartRequest> & { service: string; target: string }): RunInput {
  return buildRunInput(aws.config, runbook, {
    mode: 'planned',
    dryRun: false,
    requestedBy: 'alice',
    trigger: 'test',
    ...req,
  });
}

async function run(i: RunInput): Promise<RunRecord> {
  const started = await startRun(aws.client, i);
  return awaitRecord(aws.client, started.workflowId, started.runId);
}

async function canWrite(region: string, user: string): Promise<boolean> {
  const client = new PgClient({ connectionString: dsn(aws.nodes[region]!, user), connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('INSERT INTO writes(by) VALUES ($1)', [user]);
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What the fence may change about a role: whether it logs in, and its own settings. */
async function roleOf(region: string, role: string): Promise<unknown> {
  const client = new PgClient({ connectionString: dsn(aws.nodes[region]!, 'postgres'), connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return (
      await client.query(
        `SELECT r.rolcanlogin, (SELECT array_agg(c ORDER BY c) FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE s.setrole = r.oid) AS settings
         FROM pg_roles r WHERE r.rolname = $1`,
        [role],
      )
    ).rows;
  } finally {
    await client.end();
  }
}

async function traffic(service: string) {
  return createRegionActivities(aws.config, EAST).trafficDescribe({ service });
}

describe('aurora-global database-level fence and aurora_global_db_status (PostgreSQL as the writer endpoint)', () => {
  it('fences the application role on the writer (replicated catalog setting), reports it, and unfences', async () => {
    const west = createRegionActivities(aws.config, WEST);
    const before = await roleOf(WEST, 'app');
    const fence = await west.dbFenceWrites({ service: 'ledger' });
    expect(fence).toMatchObject({ region: WEST, verified: true, alreadyFenced: false });
    expect(fence.detail).toContain('ALTER ROLE app NOLOGIN, and SET default_transaction_read_only = on');
    expect(fence.detail).toContain('a login as app asking for read-write was refused (NOLOGIN)');
    expect(await canWrite(WEST, 'app')).toBe(false);
    // The wall: a client asking for read-write (BEGIN READ WRITE and the rest) does not get in.
    const node = aws.nodes[WEST]!;
    expect(await attemptReadWriteLogin({ host: node.host, port: node.port, database: 'postgres', user: 'app' })).toBe(
      'login-refused',
    );
    expect(await west.dbDescribe({ service: 'ledger' })).toMatchObject({ role: 'primary', fenced: true });
    expect(await west.dbFenceWrites({ service: 'ledger' })).toMatchObject({ alreadyFenced: true, verified: true });
    const unfence = await west.dbUnfenceWrites({ service: 'ledger' });
    expect(unfence).toMatchObject({ unfenced: true });
    expect(await canWrite(WEST, 'app')).toBe(true);
    // Exactly as it was: LOGIN back, and the role's settings as before the fence.
    expect(await roleOf(WEST, 'app')).toEqual(before);
    expect(await west.dbDescribe({ service: 'ledger' })).toMatchObject({ fenced: false });
    // A secondary refuses writes by construction: nothing to unfence there.
    expect((await createRegionActivities(aws.config, EAST).dbUnfenceWrites({ service: 'ledger' })).detail).toContain(
      'is a secondary',
    );
  });

  it('reads lag from aurora_global_db_status() when the config names it', async () => {
    // The function as Aurora PostgreSQL documents it (columns and -1 for the primary), on the stand-in.
    await psql(
      aws.pgBin,
      aws.nodes[EAST]!,
      `CREATE FUNCTION aurora_global_db_status() RETURNS TABLE(aws_region text, highest_lsn_written bigint, durability_lag_in_msec bigint, rpo_lag_in_msec bigint, last_lag_calculation_time timestamptz, feedback_epoch int, feedback_xmin int)
      LANGUAGE sql AS $$ VALUES ('us-west-2', 100, -1, -1, now(), 0, 0), ('us-east-1', 90, 120, 350, now(), 0, 0) $$;`,
    );
    const viaSql = Config.parse({
      ...aws.config,
      services: aws.config.services.map((svc) =>
        svc.name === 'ledger' && svc.database.provider === 'aurora-global'
          ? { ...svc, database: { ...svc.database, lagMetric: 'aurora_global_db_status' } }
          : svc,
      ),
    });
    const east = createRegionActivities(viaSql, EAST);
    const state = await east.dbDescribe({ service: 'ledger' });
    expect(state).toMatchObject({ role: 'standby' });
    expect(Date.parse(state.lastHeardFromPrimaryAt!) - Date.parse(state.lastReplayedCommitAt!)).toBe(350);
    const lag = await east.dbWaitForLag({
      service: 'ledger',
      sourceLsn: new Date(Date.now() - 5_000).toISOString(),
      timeoutMs: 5_000,
    });
    expect(lag.region).toBe(EAST);
    await psql(aws.pgBin, aws.nodes[EAST]!, 'DROP FUNCTION aurora_global_db_status()');
  });
});

describe('failover runbook on AWS providers (moto + PostgreSQL writer endpoints)', () => {
  it("--to auto: the target policy picks from the topology a dry run's preflight observed", async () => {
    const choice = await chooseTargetByPolicy(aws.client, aws.config, runbook, {
      service: 'ledger',
      mode: 'planned',
      requestedBy: 'alice',
      trigger: 'test',
    });
    expect(choice.target).toBe(EAST);
    expect(choice.reason).toMatch(/us-east-1 is a healthy standby with the least lag.*us-west-2: the current writer/);
    expect(await canWrite(WEST, 'app')).toBe(true);
  });

  it('planned: fence in the database, lag from CloudWatch, promote, move Route 53 traffic, verify', async () => {
    expect(await canWrite(WEST, 'app')).toBe(true);
    const rec = await run(input({ service: 'ledger', target: EAST }));
    if (rec.status !== 'succeeded') console.error(JSON.stringify(rec, null, 2));
    expect(rec.status).toBe('succeeded');
    expect(rec.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual([
      'preflight',
      'fence',
      'confirm-lag',
      'promote',
      'shift-traffic',
      'verify',
      'rejoin',
    ]);
    expect(rec.source).toBe(WEST);
    expect(rec.topology!.find((n) => n.region === EAST)).toMatchObject({ role: 'standby', reachable: true });
    // The fence: the application role NOLOGIN, proven by a refused login, at a point in time.
    expect(rec.fence).toMatchObject({ region: WEST, verified: true, alreadyFenced: false });
    expect(rec.fence!.detail).toContain('a login as app asking for read-write was refused (NOLOGIN)');
    expect(Date.parse(rec.fence!.lsn)).toBeGreaterThan(0);
    expect(Date.parse(rec.lag!.replayedLsn)).toBeGreaterThanOrEqual(Date.parse(rec.fence!.lsn));
    expect(rec.promotion).toMatchObject({ region: EAST, promoted: true, method: 'detach-and-promote' });
    expect(rec.promotion!.detail).toContain('SwitchoverGlobalCluster is unavailable here');
    expect(rec.steps.find((s) => s.id === 'promote')!.detail).toContain('promoted by detach-and-promote');
    expect(rec.rpo).toEqual({ zeroLoss: true, estimateSeconds: 0 });
    expect(rec.verify).toMatchObject({ region: EAST, ok: true });
    expect(rec.rejoin!.detail).toContain('stays fenced');
    expect(primaryRegionOf(await traffic('ledger'))).toBe(EAST);
    // One writer: the old one refuses the application, the new one takes it.
    expect(await canWrite(WEST, 'app')).toBe(false);
    expect(await canWrite(EAST, 'app')).toBe(true);
  });

  it("unplanned with the source region's worker down: data loss acknowledged by policy within the RPO budget, old primary fenced from the target, and on return", async () => {
    await aws.stopRegion(WEST);
    try {
      const rec = await run(input({ service: 'orders', target: EAST, mode: 'unplanned' }));
      if (rec.status !== 'succeeded') console.error(JSON.stringify(rec, null, 2));
      expect(rec.status).toBe('succeeded');
      expect(rec.topology!.find((n) => n.region === WEST)).toMatchObject({ reachable: false });
      expect(rec.fence).toMatchObject({ verified: false });
      expect(rec.rpo!.estimateSeconds).toBe(1.2);
      expect(rec.dataLossAck).toMatchObject({ by: 'policy' });
      expect(rec.promotion).toMatchObject({ promoted: true, method: 'detach-and-promote' });
      // The target's worker reached the old primary's writer endpoint and fenced it there.
      expect(rec.promotion!.detail).toContain('old primary us-west-2: fenced in the database');
      expect(await canWrite(WEST, 'orders_app')).toBe(false);
      expect(await canWrite(EAST, 'orders_app')).toBe(true);
      expect(primaryRegionOf(await traffic('orders'))).toBe(EAST);
      expect(rec.fenceOnReturn?.workflowId).toBe(fenceOnReturnWorkflowId('orders', WEST));
    } finally {
      await aws.startRegion(WEST);
    }
    // The region is back: the watcher fences it (already fenced) and ends.
    const watcher = await aws.client.workflow.getHandle(fenceOnReturnWorkflowId('orders', WEST)).result();
    expect(watcher).toContain('us-west-2 was already fenced');
  });

  it("refuses, in the workflow's preflight, a run of an EU-resident service to a non-EU region started without the CLI's check", async () => {
    // As the guardian starts runs: its own RunInput, with the service's policy, never through buildRunInput.
    const svc = aws.config.services.find((x) => x.name === 'eu-ledger')!;
    const rec = await run({
      runbook,
      service: svc.name,
      regions: svc.regions,
      mode: 'unplanned',
      target: EAST,
      dryRun: false,
      policy: svc.policy,
      requestedBy: 'guardian',
      trigger: 'alarm',
    });
    expect(rec.status).toBe('failed');
    expect(rec.error).toContain('data-residency rule "eu" refuses a failover of eu-ledger to us-east-1');
    expect(rec.error).toContain('eu-*');
    expect(rec.steps[0]!.status).toBe('failed');
    expect(rec.topology).toBeUndefined();
  });
});
