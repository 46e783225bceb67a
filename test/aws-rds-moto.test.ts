// The aurora-global provider against moto over real HTTP, for the RDS and CloudWatch calls moto
// implements: DescribeGlobalClusters, DescribeDBClusters, RemoveFromGlobalCluster,
// Describe/CopyDBClusterSnapshot, ListMetrics/GetMetricData. moto answers SwitchoverGlobalCluster
// and FailoverGlobalCluster with an HTML 500 (not implemented), which is exactly the "managed
// operation unavailable" case the provider falls back from; test/aws-aurora-managed.test.ts
// covers the managed operations themselves.
//
// moto quirks met here (none of them AWS behaviour): RemoveFromGlobalCluster only works when sent
// to us-east-1 (where moto keeps global clusters), so the target here is us-east-1; a detached
// cluster keeps its GlobalClusterIdentifier in DescribeDBClusters (the provider reads membership
// from DescribeGlobalClusters instead); DescribeGlobalClusters ignores its filter.
import { DescribeDBClusterSnapshotsCommand, DescribeGlobalClustersCommand } from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAuroraActivities } from '../activities/db/aurora/index';
import { createRegionActivities } from '../activities';
import { Config } from '../src/lib/config/schema';
import { auroraDatabase } from './support/aurora-fixture';
import { createAuroraOnMoto, createUnplannedFailoverSnapshot, putLag, rdsOn } from './support/aurora-moto';
import { startMoto, type MotoServer } from './support/moto';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const FAST = { pollMs: 20, waitBudgetMs: 5_000 };

let moto: MotoServer;

beforeAll(async () => {
  moto = await startMoto();
});

afterAll(async () => {
  await moto?.stop();
});

beforeEach(async () => {
  await moto.reset();
});

function configFor(db: Record<string, unknown> = {}): Config {
  return Config.parse({
    services: [
      {
        name: 'ledger',
        regions: [WEST, EAST],
        database: auroraDatabase(
          moto.url,
          { [WEST]: 'ledger-west', [EAST]: 'ledger-east' },
          { lagMetricPeriodSeconds: 1, ...db },
        ),
        traffic: {
          provider: 'route53',
          hostedZone: 'z.test.',
          recordName: 'ledger.z.test.',
          endpoints: { [WEST]: 'w.', [EAST]: 'e.' },
        },
      },
      // A second service on the same workers, on self-managed PostgreSQL: dispatch keeps them apart.
      {
        name: 'billing',
        regions: [WEST, EAST],
        database: {
          provider: 'postgres-streaming',
          regions: {
            [WEST]: { host: '127.0.0.1', port: 1, dataDir: '/nonexistent/w' },
            [EAST]: { host: '127.0.0.1', port: 2, dataDir: '/nonexistent/e' },
          },
        },
        traffic: {
          provider: 'route53',
          hostedZone: 'z.test.',
          recordName: 'billing.z.test.',
          endpoints: { [WEST]: 'w.', [EAST]: 'e.' },
        },
      },
    ],
  });
}

async function setupGlobal(): Promise<Record<string, string>> {
  const { arns } = await createAuroraOnMoto(moto.url, 'ledger-global', [
    { id: 'ledger-west', region: WEST },
    { id: 'ledger-east', region: EAST },
  ]);
  return arns;
}

describe('aurora-global on moto', () => {
  it('describes each region from its own worker: writer, secondary, and the lag CloudWatch has', async () => {
    const arns = await setupGlobal();
    const config = configFor();
    await putLag(moto.url, EAST, 'ledger-east', 1500, new Date(Date.now() - 2_000));
    const west = await createRegionActivities(config, WEST).dbDescribe({ service: 'ledger' });
    const east = await createRegionActivities(config, EAST).dbDescribe({ service: 'ledger' });
    expect(west).toMatchObject({ region: WEST, reachable: true, role: 'primary' });
    expect(east).toMatchObject({ region: EAST, reachable: true, role: 'standby', streamingFrom: arns[WEST] });
    // RPO evidence: replayed commits trail what the secondary last heard by the metric's lag.
    expect(Date.parse(east.lastHeardFromPrimaryAt!) - Date.parse(east.lastReplayedCommitAt!)).toBe(1500);

    // The other service on the same worker goes to the postgres provider, whose node is not there.
    const billing = await createRegionActivities(config, EAST).dbDescribe({ service: 'billing' });
    expect(billing).toMatchObject({ region: EAST, reachable: false });
  });

  it('waits for lag from CloudWatch: done once a datapoint after the fence shows it replicated', async () => {
    await setupGlobal();
    const east = createAuroraActivities(configFor(), EAST, FAST);
    const fencedAt = new Date(Date.now() - 3_000);
    // Before the fence, or after it but still behind: not enough.
    await putLag(moto.url, EAST, 'ledger-east', 0, new Date(fencedAt.getTime() - 10_000));
    await putLag(moto.url, EAST, 'ledger-east', 2_500, new Date(fencedAt.getTime() + 1_000));
    const timeout = await east
      .dbWaitForLag({ service: 'ledger', sourceLsn: fencedAt.toISOString(), timeoutMs: 300 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(timeout).toBeInstanceOf(ApplicationFailure);
    expect((timeout as ApplicationFailure).type).toBe('LagTimeout');
    expect((timeout as ApplicationFailure).message).toContain('2500 ms behind');
    // A newer datapoint whose replicated-through time (at − lag) is past the fence.
    const waiting = east.dbWaitForLag({ service: 'ledger', sourceLsn: fencedAt.toISOString(), timeoutMs: 10_000 });
    await putLag(moto.url, EAST, 'ledger-east', 200, new Date(fencedAt.getTime() + 2_000));
    const lag = await waiting;
    expect(Date.parse(lag.replayedLsn)).toBeGreaterThanOrEqual(fencedAt.getTime());
  });

  it('older Aurora MySQL: waits on AuroraGlobalDBReplicationLag, and ignores the other metric', async () => {
    await setupGlobal();
    const east = createAuroraActivities(
      configFor({ engine: 'aurora-mysql', lagMetric: 'AuroraGlobalDBReplicationLag' }),
      EAST,
      FAST,
    );
    const fencedAt = new Date(Date.now() - 3_000);
    // A datapoint under the RPO-lag name says nothing about this cluster's configured metric.
    await putLag(moto.url, EAST, 'ledger-east', 0, new Date(fencedAt.getTime() + 2_000), 'AuroraGlobalDBRPOLag');
    const timeout = await east
      .dbWaitForLag({ service: 'ledger', sourceLsn: fencedAt.toISOString(), timeoutMs: 300 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((timeout as ApplicationFailure).type).toBe('LagTimeout');
    await putLag(
      moto.url,
      EAST,
      'ledger-east',
      100,
      new Date(fencedAt.getTime() + 2_000),
      'AuroraGlobalDBReplicationLag',
    );
    const lag = await east.dbWaitForLag({ service: 'ledger', sourceLsn: fencedAt.toISOString(), timeoutMs: 10_000 });
    expect(Date.parse(lag.replayedLsn)).toBeGreaterThanOrEqual(fencedAt.getTime());
  });

  it('planned and unplanned promotion fall back to detach-and-promote where the managed operation is unavailable', async () => {
    const arns = await setupGlobal();
    const east = createAuroraActivities(configFor(), EAST, FAST);
    const result = await east.dbPromote({ service: 'ledger', mode: 'unplanned', source: WEST });
    expect(result).toMatchObject({ region: EAST, promoted: true, method: 'detach-and-promote' });
    expect(result.detail).toMatch(/FailoverGlobalCluster is unavailable here/);
    const g = await rdsOn(moto.url, EAST).send(
      new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: 'ledger-global' }),
    );
    expect(g.GlobalClusters![0]!.GlobalClusterMembers!.map((m) => m.DBClusterArn)).toEqual([arns[WEST]]);
    expect(await east.dbDescribe({ service: 'ledger' })).toMatchObject({ role: 'primary' });
    // Converged: nothing is sent again.
    expect(await east.dbPromote({ service: 'ledger', mode: 'unplanned', source: WEST })).toMatchObject({
      alreadyPrimary: true,
    });
    // The old primary stays the writer of the old global cluster: it cannot rejoin in place, and says how to.
    const rejoin = await createAuroraActivities(configFor(), WEST, FAST).dbRejoinAsStandby({
      service: 'ledger',
      primaryRegion: EAST,
    });
    expect(rejoin).toMatchObject({ rejoined: false });
    expect(rejoin.detail).toContain('Create a global database from us-east-1');
    // Without a way to fence it, fence-on-return says what to do instead of pretending.
    const fence = await createAuroraActivities(configFor(), WEST, FAST)
      .dbFenceWrites({ service: 'ledger' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((fence as ApplicationFailure).type).toBe('CannotFence');
    expect((fence as ApplicationFailure).message).toContain('writerEndpoint');
  });

  it('with fallback none, an unavailable switchover fails the step naming the setting', async () => {
    await setupGlobal();
    const err = await createAuroraActivities(configFor({ fallback: 'none' }), EAST, FAST)
      .dbPromote({ service: 'ledger', mode: 'planned' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'ManagedOperationUnavailable', nonRetryable: true });
    expect((err as Error).message).toContain('SwitchoverGlobalCluster is not available');
  });

  it('preserves the unplanned-failover snapshot as a manual copy, once', async () => {
    await setupGlobal();
    const since = new Date(Date.now() - 60_000).toISOString();
    const west = createAuroraActivities(configFor({ preserveSnapshotPrefix: 'keep' }), WEST, FAST);
    const early = await west.dbPreserve({ service: 'ledger', since }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(early).toMatchObject({ type: 'SnapshotNotYet', nonRetryable: false });
    const source = await createUnplannedFailoverSnapshot(moto.url, WEST, 'ledger-west');
    const kept = await west.dbPreserve({ service: 'ledger', since });
    expect(kept).toMatchObject({ preserved: true, source });
    expect(kept.copy).toMatch(/^keep-ledger-west-\d{12}$/);
    const listed = await rdsOn(moto.url, WEST).send(
      new DescribeDBClusterSnapshotsCommand({ DBClusterIdentifier: 'ledger-west' }),
    );
    expect(listed.DBClusterSnapshots!.map((s) => s.DBClusterSnapshotIdentifier)).toContain(kept.copy);
    const again = await west.dbPreserve({ service: 'ledger', since });
    expect(again.detail).toContain('already copied');
  });
});
