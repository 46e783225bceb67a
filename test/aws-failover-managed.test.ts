// An unplanned failover through Temporal with Aurora's managed FailoverGlobalCluster, which moto
// lacks: RDS (and the lag metric) from test/support/rds-sim.ts, Route 53 from moto, the unchanged
// runbooks/failover.yaml. The primary's region is down (its worker and its RDS endpoint); the
// target's worker is restarted while the failover is in progress, and the retried promotion waits
// on it instead of issuing it again. When the region is back, fence-on-return finds the old
// primary demoted and keeps the snapshot Aurora took of it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTrafficRecords } from '../activities/traffic/route53';
import { Config } from '../src/lib/config/schema';
import { auroraDatabase } from './support/aurora-fixture';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { fenceOnReturnWorkflowId, runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { awaitRecord, buildRunInput, startRun } from '../src/lib/runs/client';
import { handoffOf } from '../src/lib/runs/reconcile';
import { createAwsEnv, type AwsEnv } from './support/aws-env';
import { startRdsSim, type RdsSim } from './support/rds-sim';

const WEST = 'us-west-2';
const EAST = 'us-east-1';

let aws: AwsEnv;
let sim: RdsSim;

beforeAll(async () => {
  sim = await startRdsSim({
    globalId: 'ledger-global',
    clusters: [
      { id: 'ledger-west', region: WEST, engineVersion: '15.4', instances: 2 },
      { id: 'ledger-east', region: EAST, engineVersion: '15.4', instances: 2 },
    ],
    phaseMs: 1_500,
  });
  sim.setLag('ledger-east', 800);
  aws = await createAwsEnv(
    [],
    ({ address, motoUrl }) =>
      Config.parse({
        temporal: { address },
        services: [
          {
            name: 'ledger',
            regions: [WEST, EAST],
            database: auroraDatabase(
              sim.url,
              { [WEST]: 'ledger-west', [EAST]: 'ledger-east' },
              { lagMetricPeriodSeconds: 1 },
            ),
            traffic: {
              provider: 'route53',
              hostedZone: 'managed.regionshift.test.',
              recordName: 'ledger.managed.regionshift.test.',
              ttl: 5,
              endpoints: { [WEST]: 'w.managed.regionshift.test.', [EAST]: 'e.managed.regionshift.test.' },
              endpointUrl: motoUrl,
            },
            policy: { allowDataLoss: true, rpoBudgetSeconds: 5, approval: { planned: 'none', unplanned: 'none' } },
          },
        ],
      }),
    { workerRegions: [WEST, EAST], auroraPollMs: 100 },
  );
  await ensureTrafficRecords(aws.config, 'ledger', WEST);
});

afterAll(async () => {
  await aws?.teardown();
  await sim?.close();
});

async function progress(): Promise<RunRecord> {
  return aws.client.workflow.getHandle(runWorkflowId('ledger')).query<RunRecord>('progress');
}

describe('unplanned failover with FailoverGlobalCluster through Temporal', () => {
  it("fails over in the target's region, survives a worker restart mid-operation, then fences and preserves on return", async () => {
    await aws.stopRegion(WEST);
    sim.setRegionDown(WEST, true);
    const input = buildRunInput(aws.config, loadRunbook(builtinRunbookPath('failover')), {
      service: 'ledger',
      target: EAST,
      mode: 'unplanned',
      dryRun: false,
      requestedBy: 'alice',
      trigger: 'test',
    });
    const started = await startRun(aws.client, input);

    // The failover is pending: the target's worker goes away and comes back.
    const deadline = Date.now() + 30_000;
    while (!sim.failoverStatus()) {
      if (Date.now() > deadline) throw new Error(`no failover started; run at ${(await progress()).currentStep}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await aws.stopRegion(EAST);
    await aws.startRegion(EAST);

    const rec = await awaitRecord(aws.client, started.workflowId, started.runId);
    if (rec.status !== 'succeeded') console.error(JSON.stringify(rec, null, 2));
    expect(rec.status).toBe('succeeded');
    expect(rec.fence).toMatchObject({ verified: false });
    expect(rec.rpo!.estimateSeconds).toBe(0.8);
    expect(rec.dataLossAck).toMatchObject({ by: 'policy' });
    expect(rec.promotion).toMatchObject({ region: EAST, promoted: true, method: 'failover', dataLossAllowed: true });
    expect(sim.accepted.FailoverGlobalCluster).toBe(1);
    expect(
      sim.log.filter((l) => l.action === 'FailoverGlobalCluster').map((l) => [l.region, l.params.AllowDataLoss]),
    ).toEqual([[EAST, 'true']]);
    expect(sim.writer()).toBe('ledger-east');
    expect(rec.verify).toMatchObject({ ok: true });
    expect(rec.verify!.detail).toContain('API check only');
    expect(rec.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual([
      'preflight',
      'fence',
      'promote',
      'shift-traffic',
      'verify',
      'fence-on-return',
      'handoff',
    ]);
    // What reconciliation dates an Aurora divergence by: the failure time (the run's start, no
    // trigger time here) and the lag AuroraGlobalDBRPOLag showed before promotion.
    const handoff = handoffOf(rec);
    expect(handoff.divergence).toMatchObject({
      failedAt: rec.startedAt,
      lagMs: 800,
      lagObservedAt: rec.promotion!.before.lastHeardFromPrimaryAt,
    });

    // The region comes back: Aurora snapshots the old primary and demotes it; its worker answers.
    sim.recoverRegion(WEST);
    await aws.startRegion(WEST);
    const watcher = await aws.client.workflow.getHandle(fenceOnReturnWorkflowId('ledger', WEST)).result();
    expect(watcher).toContain('us-west-2 was already fenced');
    expect(watcher).toMatch(
      /copied rds:unplanned-global-failover-ledger-west-\S+ → regionshift-preserved-ledger-west-\d{12}/,
    );
    expect(sim.snapshots(WEST).filter((id) => id.startsWith('regionshift-preserved-'))).toHaveLength(1);
  });
});
