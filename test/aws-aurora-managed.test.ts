// The Aurora provider's managed switchover and failover, which moto does not implement, against
// test/support/rds-sim.ts: the real @aws-sdk/client-rds over HTTP, answered with RDS Query XML by
// a state machine that walks the documented FailoverState transitions.
import { ApplicationFailure } from '@temporalio/common';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuroraActivities, type AuroraOptions } from '../activities/db/aurora/index';
import { Config } from '../src/lib/config/schema';
import { auroraDatabase } from './support/aurora-fixture';
import { startRdsSim, type RdsSim, type RdsSimOptions } from './support/rds-sim';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const EU = 'eu-west-1';
const FAST: AuroraOptions = { pollMs: 20, waitBudgetMs: 10_000 };

let sim: RdsSim | undefined;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function setup(
  over: Partial<RdsSimOptions> = {},
  db: Record<string, unknown> = {},
): Promise<{ sim: RdsSim; config: Config }> {
  sim = await startRdsSim({
    globalId: 'ledger-global',
    clusters: [
      { id: 'ledger-west', region: WEST, engineVersion: '15.4', instances: 2 },
      { id: 'ledger-east', region: EAST, engineVersion: '15.4', instances: 1 },
      { id: 'ledger-eu', region: EU, engineVersion: '15.4', instances: 1 },
    ],
    phaseMs: 60,
    ...over,
  });
  const config = Config.parse({
    services: [
      {
        name: 'ledger',
        regions: [WEST, EAST, EU],
        database: auroraDatabase(sim.url, { [WEST]: 'ledger-west', [EAST]: 'ledger-east', [EU]: 'ledger-eu' }, db),
        traffic: {
          provider: 'route53',
          hostedZone: 'z.test.',
          recordName: 'ledger.z.test.',
          endpoints: { [WEST]: 'w.', [EAST]: 'e.', [EU]: 'u.' },
        },
      },
    ],
  });
  return { sim, config };
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('aurora-global managed switchover (planned)', () => {
  it("switches over in the primary's region, walks pending → switching-over → cleared, and converges on a second call", async () => {
    const { sim, config } = await setup();
    const east = createAuroraActivities(config, EAST, FAST);
    const before = await east.dbDescribe({ service: 'ledger' });
    expect(before).toMatchObject({
      region: EAST,
      reachable: true,
      role: 'standby',
      streamingFrom: sim.arnOf('ledger-west'),
    });

    const seen = new Set<string>();
    const watcher = setInterval(() => {
      const s = sim.failoverStatus();
      if (s) seen.add(s);
    }, 10);
    const result = await east.dbPromote({ service: 'ledger', mode: 'planned', source: WEST });
    clearInterval(watcher);

    expect(result).toMatchObject({
      region: EAST,
      promoted: true,
      alreadyPrimary: false,
      method: 'switchover',
      dataLossAllowed: false,
    });
    expect([...seen]).toEqual(['pending', 'switching-over']);
    expect(sim.accepted.SwitchoverGlobalCluster).toBe(1);
    // Sent to the current primary's region although the worker is east's.
    expect(sim.log.filter((l) => l.action === 'SwitchoverGlobalCluster').map((l) => l.region)).toEqual([WEST]);
    expect(sim.log.find((l) => l.action === 'SwitchoverGlobalCluster')!.params.TargetDbClusterIdentifier).toBe(
      sim.arnOf('ledger-east'),
    );
    expect(sim.writer()).toBe('ledger-east');
    expect(sim.members()).toContainEqual({ cluster: 'ledger-west', isWriter: false });

    // A retry (or a second run) finds the work done and does not issue it again.
    const again = await createAuroraActivities(config, EAST, FAST).dbPromote({
      service: 'ledger',
      mode: 'planned',
      source: WEST,
    });
    expect(again).toMatchObject({ promoted: false, alreadyPrimary: true });
    expect(sim.accepted.SwitchoverGlobalCluster).toBe(1);

    // The old primary is a secondary of the new one: rejoin converges without doing anything.
    const rejoin = await createAuroraActivities(config, WEST, FAST).dbRejoinAsStandby({
      service: 'ledger',
      primaryRegion: EAST,
    });
    expect(rejoin).toMatchObject({ rejoined: false, streamingFrom: sim.arnOf('ledger-east') });
    expect(rejoin.detail).toContain('Aurora demoted it');
    expect(await createAuroraActivities(config, WEST, FAST).dbDescribe({ service: 'ledger' })).toMatchObject({
      role: 'standby',
      streamingFrom: sim.arnOf('ledger-east'),
    });
  });

  it('a throttled switchover is retried with backoff by the SDK and issued once', async () => {
    const { sim, config } = await setup();
    sim.throttle('SwitchoverGlobalCluster', 2);
    const result = await createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'planned' });
    expect(result).toMatchObject({ promoted: true, method: 'switchover' });
    expect(sim.log.filter((l) => l.action === 'SwitchoverGlobalCluster')).toHaveLength(3);
    expect(sim.accepted.SwitchoverGlobalCluster).toBe(1);
  });

  it("throttling past the SDK's attempts is a retryable failure, and the retry issues the operation once", async () => {
    const { sim, config } = await setup();
    sim.throttle('SwitchoverGlobalCluster', 4);
    const failure = await failureOf(
      createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'planned' }),
    );
    expect(failure.nonRetryable).toBe(false);
    expect(failure.type).toBe('Throttled');
    expect(failure.message).toContain('SwitchoverGlobalCluster');
    expect(sim.accepted.SwitchoverGlobalCluster).toBeUndefined();
    const retried = await createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'planned' });
    expect(retried).toMatchObject({ promoted: true, method: 'switchover' });
    expect(sim.accepted.SwitchoverGlobalCluster).toBe(1);
  });

  it('refuses permanent problems with a message that says what to do, issuing nothing', async () => {
    const { sim, config } = await setup({
      clusters: [
        { id: 'ledger-west', region: WEST, engineVersion: '15.4', instances: 2 },
        { id: 'ledger-east', region: EAST, engineVersion: '14.9', instances: 1 },
        { id: 'ledger-eu', region: EU, engineVersion: '15.4', instances: 0 },
      ],
    });
    const version = await failureOf(
      createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'planned' }),
    );
    expect(version).toMatchObject({ nonRetryable: true, type: 'EngineVersionMismatch' });
    expect(version.message).toMatch(/14\.9.*15\.4.*same major and minor version.*unplanned failover/);

    const headless = await failureOf(
      createAuroraActivities(config, EU, FAST).dbPromote({ service: 'ledger', mode: 'unplanned' }),
    );
    expect(headless).toMatchObject({ nonRetryable: true, type: 'HeadlessSecondary' });
    expect(headless.message).toContain('aws rds create-db-instance --db-cluster-identifier ledger-eu');

    // What AWS says wins over what we checked: an InvalidGlobalClusterStateFault from the API.
    sim.failNext(
      'FailoverGlobalCluster',
      'InvalidGlobalClusterStateFault',
      'Global cluster ledger-global is being modified.',
    );
    const state = await failureOf(
      createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'unplanned' }),
    );
    expect(state).toMatchObject({ nonRetryable: true, type: 'InvalidGlobalClusterState' });
    expect(state.message).toContain('aws rds describe-global-clusters --global-cluster-identifier ledger-global');

    const missing = Config.parse({
      ...config,
      services: [
        { ...config.services[0]!, database: { ...config.services[0]!.database, globalClusterIdentifier: 'nope' } },
      ],
    });
    const notFound = await failureOf(
      createAuroraActivities(missing, EAST, FAST).dbPromote({ service: 'ledger', mode: 'planned' }),
    );
    expect(notFound).toMatchObject({ nonRetryable: true, type: 'GlobalClusterNotFound' });
    expect(notFound.message).toContain('globalClusterIdentifier');

    expect(sim.accepted.SwitchoverGlobalCluster ?? 0).toBe(0);
    expect(sim.accepted.FailoverGlobalCluster ?? 0).toBe(0);
    expect(sim.writer()).toBe('ledger-west');
  });

  it('a switchover Aurora cancels midway fails the planned step and never falls back to detaching', async () => {
    const { sim, config } = await setup();
    sim.setOutcome('cancel');
    const failure = await failureOf(
      createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'planned' }),
    );
    expect(failure).toMatchObject({ nonRetryable: true, type: 'OperationCancelled' });
    expect(failure.message).toMatch(
      /cancelled the switchover.*cancelling.*us-west-2 is still the writer.*never falls back/,
    );
    expect(sim.accepted.RemoveFromGlobalCluster).toBeUndefined();
    expect(sim.writer()).toBe('ledger-west');
  });

  it('refuses while a switchover to another cluster is under way', async () => {
    const { sim, config } = await setup({ phaseMs: 2_000 });
    sim.startOperation('switchover', 'ledger-eu');
    const failure = await failureOf(
      createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'planned' }),
    );
    expect(failure).toMatchObject({ nonRetryable: true, type: 'OtherOperationInProgress' });
    expect(failure.message).toContain(sim.arnOf('ledger-eu'));
  });
});

describe('aurora-global managed failover (unplanned)', () => {
  it("fails over in the target's region with the primary's region down, records IsDataLossAllowed, then preserves the old primary's snapshot", async () => {
    const { sim, config } = await setup();
    sim.setRegionDown(WEST, true);
    const seen = new Set<string>();
    const watcher = setInterval(() => {
      const s = sim.failoverStatus();
      if (s) seen.add(s);
    }, 10);
    const result = await createAuroraActivities(config, EAST, FAST).dbPromote({
      service: 'ledger',
      mode: 'unplanned',
      source: WEST,
    });
    clearInterval(watcher);
    expect(result).toMatchObject({ promoted: true, method: 'failover', dataLossAllowed: true });
    expect([...seen]).toEqual(['pending', 'failing-over']);
    const call = sim.log.find((l) => l.action === 'FailoverGlobalCluster')!;
    expect(call).toMatchObject({
      region: EAST,
      params: { AllowDataLoss: 'true', TargetDbClusterIdentifier: sim.arnOf('ledger-east') },
    });
    expect(sim.writer()).toBe('ledger-east');

    // The old primary's worker, once its region answers: the snapshot is not there until Aurora takes it.
    const since = new Date(Date.now() - 1000).toISOString();
    const west = createAuroraActivities(config, WEST, FAST);
    sim.setRegionDown(WEST, false);
    const early = await failureOf(west.dbPreserve({ service: 'ledger', since }));
    expect(early).toMatchObject({ nonRetryable: false, type: 'SnapshotNotYet' });
    sim.recoverRegion(WEST);
    const kept = await west.dbPreserve({ service: 'ledger', since });
    expect(kept).toMatchObject({ preserved: true });
    expect(kept.source).toMatch(/^rds:unplanned-global-failover-ledger-west-/);
    expect(kept.copy).toMatch(/^regionshift-preserved-ledger-west-\d{12}$/);
    expect(sim.snapshots(WEST)).toContain(kept.copy);
    const again = await west.dbPreserve({ service: 'ledger', since });
    expect(again.detail).toContain('already copied');
    expect(sim.accepted.CopyDBClusterSnapshot).toBe(1);
    // Back, the old primary is a secondary: its fence holds by construction.
    expect(await west.dbFenceWrites({ service: 'ledger' })).toMatchObject({ alreadyFenced: true, verified: true });
  });

  it('a slow failover outlasts a crashed attempt; the next attempt waits on it and does not issue it twice', async () => {
    const { sim, config } = await setup({ phaseMs: 700 });
    // The first attempt gives up (as a worker that dies would) while the failover is pending.
    const first = await failureOf(
      createAuroraActivities(config, EAST, { pollMs: 20, waitBudgetMs: 200 }).dbPromote({
        service: 'ledger',
        mode: 'unplanned',
      }),
    );
    expect(first).toMatchObject({ nonRetryable: false, type: 'PromotionInProgress' });
    expect(first.message).toContain('does not issue it again');
    expect(sim.failoverStatus()).toBeDefined();
    const second = await createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'unplanned' });
    expect(second).toMatchObject({ alreadyPrimary: true, dataLossAllowed: true });
    expect(sim.accepted.FailoverGlobalCluster).toBe(1);
    expect(sim.writer()).toBe('ledger-east');
  });

  it('a failover that fails midway falls back to detach-and-promote, and says so', async () => {
    const { sim, config } = await setup();
    sim.setOutcome('cancel');
    const result = await createAuroraActivities(config, EAST, FAST).dbPromote({
      service: 'ledger',
      mode: 'unplanned',
      source: WEST,
    });
    expect(result).toMatchObject({ promoted: true, method: 'detach-and-promote' });
    expect(result.detail).toMatch(/cancelled the failover.*detached and promoted instead/);
    expect(result.detail).toMatch(/old primary us-west-2: no writerEndpoint or edge fence configured/);
    expect(result.detail).toContain('secondaries eu-west-1 stay read-only members');
    expect(sim.accepted.FailoverGlobalCluster).toBe(1);
    expect(sim.accepted.RemoveFromGlobalCluster).toBe(1);
    expect(sim.members().map((m) => m.cluster)).toEqual(['ledger-west', 'ledger-eu']);
    // The detached cluster is a standalone writer.
    expect(await createAuroraActivities(config, EAST, FAST).dbDescribe({ service: 'ledger' })).toMatchObject({
      role: 'primary',
    });
    // Converges: a retry finds it detached and does nothing more.
    const again = await createAuroraActivities(config, EAST, FAST).dbPromote({
      service: 'ledger',
      mode: 'unplanned',
      source: WEST,
    });
    expect(again).toMatchObject({ alreadyPrimary: true });
    expect(sim.accepted.RemoveFromGlobalCluster).toBe(1);
  });

  it('with fallback none, a cancelled failover fails the step naming the setting', async () => {
    const { sim, config } = await setup({}, { fallback: 'none' });
    sim.setOutcome('cancel');
    const failure = await failureOf(
      createAuroraActivities(config, EAST, FAST).dbPromote({ service: 'ledger', mode: 'unplanned' }),
    );
    expect(failure).toMatchObject({ nonRetryable: true, type: 'OperationCancelled' });
    expect(failure.message).toContain('database.fallback: detach-and-promote');
    expect(sim.accepted.RemoveFromGlobalCluster).toBeUndefined();
  });
});
