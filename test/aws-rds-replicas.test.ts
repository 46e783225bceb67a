// The failover runbook (runbooks/failover.yaml, unchanged) for an rds-postgres-replicas service
// with three regions, planned then unplanned, through Temporal: RDS in moto (behind
// test/support/rds-replicas-proxy.ts, which adds the documented promotion and duplicate-identifier
// behaviour moto lacks), and a real
// PostgreSQL per region standing in for each instance, with real streaming replication: the
// west node the primary, the others its replicas. What RDS does to the databases behind the API
// (the promoted replica leaves recovery, a new replica streams from its source) the proxy's hook
// does to the stand-ins.
import {
  DescribeDBInstancesCommand,
  ListTagsForResourceCommand,
  CreateDBInstanceCommand,
  CreateDBInstanceReadReplicaCommand,
  type DBInstance,
} from '@aws-sdk/client-rds';
import { Client as PgClient } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegionActivities } from '../activities';
import { regionOfArn } from '../activities/aws/clients';
import { ensureTrafficRecords } from '../activities/traffic/route53';
import { Config } from '../src/lib/config/schema';
import { parseYaml } from '../src/lib/config/load';
import { dsn, psql, rejoinAsStandby, start, stop } from '../src/lib/postgres/node';
import { fenceOnReturnWorkflowId } from '../src/contract/runbook/ids';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { awaitRecord, buildRunInput, startRun } from '../src/lib/runs/client';
import { primaryRegionOf } from '../src/contract/traffic/plan';
import { createReconcileActivities } from '../activities/reconcile';
import { rdsOn } from './support/aurora-moto';
import { createAwsEnv, type AwsEnv } from './support/aws-env';
import { problemsOf } from './support/config-problems';
import { startRdsReplicasProxy, type RdsReplicasProxy } from './support/rds-replicas-proxy';
import { waitFor } from './support/wait';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const EU = 'eu-west-1';
const REGIONS = [WEST, EAST, EU];
const ID: Record<string, string> = { [WEST]: 'ledger-west', [EAST]: 'ledger-east', [EU]: 'ledger-eu' };

let aws: AwsEnv;
let proxy: RdsReplicasProxy;
const runbook = loadRunbook(builtinRunbookPath('failover'));

function serviceConfig(nodes: AwsEnv['nodes'], rdsUrl: string, motoUrl: string): Record<string, unknown> {
  return {
    name: 'ledger',
    regions: REGIONS,
    database: {
      provider: 'rds-postgres-replicas',
      regions: Object.fromEntries(
        REGIONS.map((r) => [r, { instanceIdentifier: ID[r], endpoint: nodes[r]!.host, port: nodes[r]!.port }]),
      ),
      lagSource: 'sql',
      endpointUrl: rdsUrl,
    },
    traffic: {
      provider: 'route53',
      hostedZone: 'rds.regionshift.test.',
      recordName: 'ledger.rds.regionshift.test.',
      ttl: 5,
      endpoints: Object.fromEntries(REGIONS.map((r) => [r, `ledger.${r}.rds.regionshift.test.`])),
      endpointUrl: motoUrl,
    },
    // Unplanned: a lost tail within the budget is accepted by policy (the run records it).
    policy: {
      lagTimeout: '20s',
      approval: { planned: 'none', unplanned: 'none' },
      allowDataLoss: true,
      rpoBudgetSeconds: 600,
    },
  };
}

/** The instances of a region as AWS would show them (through the proxy). */
async function instances(region: string): Promise<DBInstance[]> {
  const rds = rdsOn(proxy.url, region);
  try {
    return (await rds.send(new DescribeDBInstancesCommand({}))).DBInstances ?? [];
  } finally {
    rds.destroy();
  }
}

async function canWrite(region: string): Promise<boolean> {
  const client = new PgClient({ connectionString: dsn(aws.nodes[region]!, 'app'), connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('INSERT INTO writes(by) VALUES ($1)', [region]);
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const MUTATIONS = ['PromoteReadReplica', 'ModifyDBInstance', 'CreateDBInstanceReadReplica', 'DeleteDBInstance'];
const counts = (): Record<string, number> =>
  Object.fromEntries(MUTATIONS.flatMap((a) => REGIONS.map((r) => [`${a} ${r}`, proxy.accepted(a, r)])));

beforeAll(async () => {
  proxy = await startRdsReplicasProxy();
  aws = await createAwsEnv(
    REGIONS,
    ({ address, motoUrl, nodes }) => {
      proxy.upstream = motoUrl;
      return Config.parse({ temporal: { address }, services: [serviceConfig(nodes, proxy.url, motoUrl)] });
    },
    { workerRegions: REGIONS, streaming: true },
  );
  proxy.onAccepted = async (action, region, params) => {
    const node = aws.nodes[region]!;
    if (action === 'PromoteReadReplica') await psql(aws.pgBin, node, 'SELECT pg_promote()');
    if (action === 'CreateDBInstanceReadReplica')
      await rejoinAsStandby(aws.pgBin, node, aws.nodes[regionOfArn(params.SourceDBInstanceIdentifier!)!]!);
  };
  await psql(
    aws.pgBin,
    aws.nodes[WEST]!,
    'CREATE TABLE writes(id serial PRIMARY KEY, by text); GRANT ALL ON writes, writes_id_seq TO app;',
  );
  // The instances as Terraform's replicate_source_db makes them, straight in moto.
  const west = rdsOn(aws.moto.url, WEST);
  const created = await west.send(
    new CreateDBInstanceCommand({
      DBInstanceIdentifier: ID[WEST],
      Engine: 'postgres',
      DBInstanceClass: 'db.m6g.large',
      MasterUsername: 'postgres',
      MasterUserPassword: 'not-a-secret',
      AllocatedStorage: 20,
    }),
  );
  west.destroy();
  for (const r of [EAST, EU]) {
    const rds = rdsOn(aws.moto.url, r);
    await rds.send(
      new CreateDBInstanceReadReplicaCommand({
        DBInstanceIdentifier: ID[r],
        SourceDBInstanceIdentifier: created.DBInstance!.DBInstanceArn,
      }),
    );
    rds.destroy();
  }
  await ensureTrafficRecords(aws.config, 'ledger', WEST);
});

afterAll(async () => {
  await aws?.teardown();
  await proxy?.close();
});

describe('rds-postgres-replicas', () => {
  it('planned failover of three regions: promotion in the target, replicas re-created from it, the old primary kept; lost answers are never re-issued', async () => {
    expect(await canWrite(WEST)).toBe(true);
    // Each of these is taken by RDS and its answer lost, as if the worker crashed right after sending it.
    for (const action of ['PromoteReadReplica', 'ModifyDBInstance', 'CreateDBInstanceReadReplica'])
      proxy.loseAnswerOnce(action);
    const started = await startRun(
      aws.client,
      buildRunInput(aws.config, runbook, {
        service: 'ledger',
        target: EAST,
        mode: 'planned',
        dryRun: false,
        requestedBy: 'alice',
        trigger: 'test',
      }),
    );
    const rec = await awaitRecord(aws.client, started.workflowId, started.runId);
    if (rec.status !== 'succeeded') console.error(JSON.stringify(rec, null, 2));
    expect(rec.status).toBe('succeeded');
    expect(rec.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual([
      'preflight',
      'fence',
      'confirm-lag',
      'promote',
      'shift-traffic',
      'verify',
      'repoint-standbys',
      'rejoin',
    ]);
    // The fence: NOLOGIN proven by a refused read-write login, at a WAL position the target replayed.
    expect(rec.fence).toMatchObject({ region: WEST, verified: true });
    expect(rec.fence!.detail).toContain('a login as app asking for read-write was refused (NOLOGIN)');
    expect(rec.lag!.replayedLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(rec.promotion).toMatchObject({ region: EAST, method: 'promote-read-replica' });
    // The fence replicated to the replica with the catalog; the promotion took it down there.
    expect(rec.promotion!.detail).toContain('lifted the fence that replicated here');
    expect(rec.verify).toMatchObject({ region: EAST, ok: true });
    expect(primaryRegionOf(await createRegionActivities(aws.config, EAST).trafficDescribe({ service: 'ledger' }))).toBe(
      EAST,
    );

    // What AWS shows: east standalone, west and eu new replicas of it, the replaced instances kept.
    const eastArn = (await instances(EAST)).find((i) => i.DBInstanceIdentifier === ID[EAST])!.DBInstanceArn!;
    expect(
      (await instances(EAST)).find((i) => i.DBInstanceIdentifier === ID[EAST])!.ReadReplicaSourceDBInstanceIdentifier,
    ).toBeUndefined();
    for (const r of [WEST, EU]) {
      const now = await instances(r);
      expect(now.find((i) => i.DBInstanceIdentifier === ID[r])!.ReadReplicaSourceDBInstanceIdentifier).toBe(eastArn);
      const kept = now.find((i) => i.DBInstanceIdentifier === `${ID[r]}-retired-1`);
      expect(kept, `${r}: the replaced instance is kept`).toBeDefined();
      const rds = rdsOn(proxy.url, r);
      const tags =
        (await rds.send(new ListTagsForResourceCommand({ ResourceName: kept!.DBInstanceArn! }))).TagList ?? [];
      rds.destroy();
      expect(tags).toContainEqual({ Key: 'regionshift:retired-from', Value: ID[r] });
    }
    expect(
      (await instances(WEST)).find((i) => i.DBInstanceIdentifier === `${ID[WEST]}-retired-1`)!
        .ReadReplicaSourceDBInstanceIdentifier,
    ).toBeUndefined();
    expect(rec.rejoin).toMatchObject({ region: WEST, rejoined: true, how: 'reclone', streamingFrom: eastArn });
    expect(rec.standbys).toEqual([{ region: EU, followed: true, how: 'reclone' }]);

    // Nothing was issued twice, though three answers were lost; nothing was deleted.
    const after = counts();
    expect(after).toMatchObject({
      [`PromoteReadReplica ${EAST}`]: 1,
      [`ModifyDBInstance ${WEST}`]: 1,
      [`ModifyDBInstance ${EU}`]: 1,
      [`CreateDBInstanceReadReplica ${WEST}`]: 1,
      [`CreateDBInstanceReadReplica ${EU}`]: 1,
    });
    expect(
      Object.entries(after)
        .filter(([k]) => k.startsWith('DeleteDBInstance'))
        .every(([, n]) => n === 0),
    ).toBe(true);

    // One writer, and real replication from it to the re-created replicas.
    expect(await canWrite(EAST)).toBe(true);
    expect(await canWrite(WEST)).toBe(false);
    for (const r of [WEST, EU]) {
      await waitFor(
        `${r} replaying east's write`,
        async () =>
          (await psql(aws.pgBin, aws.nodes[r]!, `SELECT count(*) FROM writes WHERE by = '${EAST}'`)).trim() === '1',
        20_000,
      );
    }

    // A second run of each step, as after a crash once it had finished: it finds the work done and issues nothing.
    const east = createRegionActivities(aws.config, EAST, { rds: { pollMs: 100 } });
    expect(await east.dbPromote({ service: 'ledger', mode: 'planned', source: WEST })).toMatchObject({
      promoted: false,
      alreadyPrimary: true,
    });
    expect(
      await createRegionActivities(aws.config, WEST).dbRejoinAsStandby({ service: 'ledger', primaryRegion: EAST }),
    ).toMatchObject({ rejoined: false, how: 'already' });
    expect(await createRegionActivities(aws.config, EU).dbFollowWriter({ service: 'ledger' })).toMatchObject({
      rejoined: false,
      how: 'already',
      streamingFrom: eastArn,
    });
    expect(counts()).toEqual(after);
    // The old primary is a replica now: there is nothing to unfence, and it says so.
    expect((await createRegionActivities(aws.config, WEST).dbUnfenceWrites({ service: 'ledger' })).detail).toContain(
      'is a read replica of',
    );
  });

  it("unplanned failover with the primary's region dead: promotion in the target, the other replica re-created from it, the old primary kept as it is and fenced on return", async () => {
    // East writes (the planned run made it the primary); its last write reaches west, then the region dies.
    await psql(aws.pgBin, aws.nodes[EAST]!, `INSERT INTO writes(by) VALUES ('last before the outage')`);
    await waitFor(
      "west replaying east's last write",
      async () =>
        (
          await psql(aws.pgBin, aws.nodes[WEST]!, `SELECT count(*) FROM writes WHERE by = 'last before the outage'`)
        ).trim() === '1',
      20_000,
    );
    await aws.stopRegion(EAST);
    await stop(aws.pgBin, aws.nodes[EAST]!, 'immediate');
    const before = counts();
    const eastBefore = (await instances(EAST)).map((i) => ({
      id: i.DBInstanceIdentifier,
      source: i.ReadReplicaSourceDBInstanceIdentifier,
    }));
    // Lost answers in the unplanned path too: each retry describes first and waits, never re-issues.
    for (const action of ['PromoteReadReplica', 'CreateDBInstanceReadReplica']) proxy.loseAnswerOnce(action);

    const started = await startRun(
      aws.client,
      buildRunInput(aws.config, runbook, {
        service: 'ledger',
        target: WEST,
        mode: 'unplanned',
        dryRun: false,
        requestedBy: 'alice',
        trigger: 'test',
      }),
    );
    const rec = await awaitRecord(aws.client, started.workflowId, started.runId);
    if (rec.status !== 'succeeded') console.error(JSON.stringify(rec, null, 2));
    expect(rec.status).toBe('succeeded');
    expect(rec.source).toBe(EAST);
    expect(rec.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual([
      'preflight',
      'fence',
      'promote',
      'shift-traffic',
      'verify',
      'repoint-standbys',
      'fence-on-return',
      'handoff',
    ]);
    expect(rec.fence).toMatchObject({ region: EAST, verified: false });
    expect(rec.dataLossAck).toMatchObject({ by: 'policy' });
    expect(rec.promotion).toMatchObject({ region: WEST, promoted: true, method: 'promote-read-replica' });
    expect(rec.promotion!.detail).toContain('old primary us-east-1: not reachable to fence');
    expect(rec.verify).toMatchObject({ region: WEST, ok: true });
    expect(primaryRegionOf(await createRegionActivities(aws.config, WEST).trafficDescribe({ service: 'ledger' }))).toBe(
      WEST,
    );
    expect(rec.standbys).toEqual([{ region: EU, followed: true, how: 'reclone' }]);
    expect(rec.reconcile).toMatchObject({ required: true, oldPrimary: EAST });

    // What AWS shows: west standalone; eu a new replica of west, the one it replaced renamed and kept.
    const westArn = (await instances(WEST)).find((i) => i.DBInstanceIdentifier === ID[WEST])!.DBInstanceArn!;
    expect(
      (await instances(WEST)).find((i) => i.DBInstanceIdentifier === ID[WEST])!.ReadReplicaSourceDBInstanceIdentifier,
    ).toBeUndefined();
    const eu = await instances(EU);
    expect(eu.find((i) => i.DBInstanceIdentifier === ID[EU])!.ReadReplicaSourceDBInstanceIdentifier).toBe(westArn);
    const replaced = eu.find((i) => i.DBInstanceIdentifier === `${ID[EU]}-retired-2`);
    expect(replaced, 'eu: the replica of the dead primary is kept').toBeDefined();
    const rds = rdsOn(proxy.url, EU);
    const tags =
      (await rds.send(new ListTagsForResourceCommand({ ResourceName: replaced!.DBInstanceArn! }))).TagList ?? [];
    rds.destroy();
    expect(tags).toContainEqual({ Key: 'regionshift:retired-from', Value: ID[EU] });
    // The old primary is the evidence for reconciliation: not renamed, not re-created, not deleted.
    expect(
      (await instances(EAST)).map((i) => ({
        id: i.DBInstanceIdentifier,
        source: i.ReadReplicaSourceDBInstanceIdentifier,
      })),
    ).toEqual(eastBefore);

    // Each call once, though two answers were lost; nothing in the dead region, nothing deleted.
    const delta = Object.fromEntries(
      Object.entries(counts())
        .map(([k, n]) => [k, n - before[k]!])
        .filter(([, n]) => n !== 0),
    );
    expect(delta).toEqual({
      [`PromoteReadReplica ${WEST}`]: 1,
      [`ModifyDBInstance ${EU}`]: 1,
      [`CreateDBInstanceReadReplica ${EU}`]: 1,
    });

    // One writer, replicated to the re-created replica.
    expect(await canWrite(WEST)).toBe(true);
    await psql(aws.pgBin, aws.nodes[WEST]!, `INSERT INTO writes(by) VALUES ('first after the failover')`);
    await waitFor(
      "eu replaying west's write",
      async () =>
        (
          await psql(aws.pgBin, aws.nodes[EU]!, `SELECT count(*) FROM writes WHERE by = 'first after the failover'`)
        ).trim() === '1',
      20_000,
    );

    // The region comes back as it died, its old primary writable; the watcher fences it and ends.
    await start(aws.pgBin, aws.nodes[EAST]!);
    expect(await canWrite(EAST)).toBe(true);
    await aws.startRegion(EAST);
    const watcher = await aws.client.workflow.getHandle(fenceOnReturnWorkflowId('ledger', EAST)).result();
    expect(watcher).toMatch(/^us-east-1 fenced at /);
    expect(await canWrite(EAST)).toBe(false);
    expect(
      (await instances(EAST)).find((i) => i.DBInstanceIdentifier === ID[EAST])!.ReadReplicaSourceDBInstanceIdentifier,
    ).toBeUndefined();
  });

  it('refuses reconciliation (and so failback) once, naming what to do, instead of retrying it for ever', async () => {
    const failback = createReconcileActivities(aws.config, WEST).failbackCheck({
      service: 'ledger',
      reconciliationId: 'r1',
    });
    await expect(failback).rejects.toMatchObject({
      nonRetryable: true,
      type: 'ReconcileConfig',
      message: expect.stringContaining(
        'service ledger uses rds-postgres-replicas: regionshift reconciles by SQL on postgres-streaming and aurora-global only',
      ),
    });
  });

  it('refuses a config with a bad instance identifier or a missing region, naming the field', () => {
    const yaml = (id: string, regions: string) => `temporal: { address: 127.0.0.1:7233 }
services:
  - name: ledger
    regions: [us-west-2, us-east-1]
    database:
      provider: rds-postgres-replicas
      regions:
${regions.replace('ID', id)}
    traffic: { provider: route53, hostedZone: z., recordName: r.z., endpoints: { us-west-2: a., us-east-1: b. } }
`;
    const both =
      '        us-west-2: { instanceIdentifier: ID, endpoint: west.example }\n        us-east-1: { instanceIdentifier: ledger-east, endpoint: east.example }';
    const bad = problemsOf(() => parseYaml('regionshift.yaml', yaml('ledger--west', both), Config));
    expect(bad.join('\n')).toMatch(
      /regionshift\.yaml:8: .*us-west-2.*instanceIdentifier: an RDS DB instance identifier/,
    );
    const missing = problemsOf(() =>
      parseYaml(
        'regionshift.yaml',
        yaml('ledger-west', '        us-west-2: { instanceIdentifier: ID, endpoint: west.example }'),
        Config,
      ),
    );
    expect(missing.join('\n')).toContain('no entry for region us-east-1');
  });
});
