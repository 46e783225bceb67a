// The guardian's decisions (debounce, recovery, cooldown, writer, target) as pure logic, and on a
// real Temporal dev server: the approval policy of the runs it starts (auto, approve,
// approve-or-proceed-after, two approvers), the health watcher (SDK-level Route 53 answers, and
// moto's GetHealthCheckStatus), and continue-as-new keeping its history bounded.
import { CreateHealthCheckCommand, Route53Client, type HealthCheckRegion } from '@aws-sdk/client-route-53';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataConverterFromEnv } from '../src/lib/codec/env';
import { Deliverer } from '../src/intake/deliver';
import { createHealthActivities } from '../activities/health';
import { startHealthWatchers } from '../src/intake/health-watchers';
import { guardianWorkflowId, healthWatcherWorkflowId, INTAKE_TASK_QUEUE } from '../src/contract/guardian/ids';
import type { AlarmSignal, GuardianSettings, GuardianView, HealthWatcherView } from '../src/contract/guardian/types';
import { runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { approveRun, awaitRecord, RefusedError } from '../src/lib/runs/client';
import { decide, initialState, undrainDue } from '../workflows/guardian';
import { startRigs } from './support/rigs';
import { runbookFromText } from './support/failover-env';
import { startMoto, type MotoServer } from './support/moto';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
import { waitFor } from './support/wait';
import { botSigner } from './support/signing';
import { testWorkflowBundle } from './support/workflow-bundle';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const REGIONS = [WEST, EAST];
const GATE = runbookFromText(
  'kind: failover\nsteps:\n  - {id: approval, approval: {reason: policy asks a person to approve this failover}, when: [approval-required]}\n',
);

/** Route 53's checker regions, as GetHealthCheckStatus names them. */
const CHECKERS: HealthCheckRegion[] = [
  'us-east-1',
  'us-west-1',
  'us-west-2',
  'eu-west-1',
  'ap-southeast-1',
  'sa-east-1',
];
const alarmRule = { source: 'alertmanager', name: 'PrimaryDown', regionLabel: 'region' };

let te: TemporalEnv;
let moto: MotoServer;
let deliverer: Deliverer;
/** Route 53 answers the fake SDK gives, per health check id. */
const healthAnswers = new Map<string, string[]>();

beforeAll(async () => {
  [te, moto] = await startRigs([
    createTemporalEnv((address) =>
      paperConfig(
        address,
        [
          {
            name: 'gated',
            regions: REGIONS,
            triggers: { alarms: [alarmRule], approval: { unplanned: { policy: 'approve', timeout: '2s' } } },
          },
          {
            name: 'proceeds',
            regions: REGIONS,
            triggers: {
              alarms: [alarmRule],
              approval: { unplanned: { policy: 'approve-or-proceed-after', after: '2s' } },
            },
          },
          {
            name: 'automatic',
            regions: REGIONS,
            triggers: { alarms: [alarmRule], approval: { unplanned: { policy: 'auto' } } },
          },
          {
            name: 'quorum',
            regions: REGIONS,
            triggers: {
              alarms: [alarmRule],
              approval: { unplanned: { policy: 'approve' } },
              approvers: { unplanned: ['UCAROL01', 'UDAVE001', 'SONCALL01'] },
              twoApprovers: { unplanned: true },
            },
          },
          {
            name: 'watched',
            regions: REGIONS,
            triggers: {
              healthChecks: { [WEST]: 'hc-west', [EAST]: 'hc-east' },
              approval: { unplanned: { policy: 'approve' } },
            },
          },
          { name: 'longlived', regions: REGIONS, policy: { cooldown: '1h' }, triggers: { alarms: [alarmRule] } },
        ],
        { healthWatcher: { interval: '300ms' } },
      ),
    ),
    startMoto(),
  ]);
  deliverer = new Deliverer({ client: te.client, config: te.config, runbook: GATE });
  await deliverer.configureAll();
  // The intake's worker, with Route 53 answered at the SDK level (moto always says Success).
  const fake = createHealthActivities(async (id) => ({
    HealthCheckObservations: (healthAnswers.get(id) ?? ['Success: HTTP Status Code 200, OK']).map((status, i) => ({
      Region: CHECKERS[i % CHECKERS.length],
      IPAddress: '198.51.100.1',
      StatusReport: { Status: status, CheckedTime: new Date() },
    })),
  }));
  await te.startWorker({ taskQueue: INTAKE_TASK_QUEUE, activities: fake });
});

afterAll(async () => {
  await Promise.allSettled([te?.teardown(), moto?.stop()]);
});

function alarm(region: string, state: AlarmSignal['state'] = 'ALARM', extra: Partial<AlarmSignal> = {}): AlarmSignal {
  const now = Date.now();
  return {
    source: 'alertmanager',
    name: 'PrimaryDown',
    region,
    severity: 'critical',
    state,
    at: now,
    receivedAt: now,
    ...extra,
  };
}

async function view(service: string): Promise<GuardianView> {
  return te.client.workflow.getHandle(guardianWorkflowId(service)).query<GuardianView>('state');
}

async function progress(service: string): Promise<RunRecord> {
  return te.client.workflow.getHandle(runWorkflowId(service)).query<RunRecord>('progress');
}

describe('guardian decisions (pure)', () => {
  const settings: GuardianSettings = {
    regions: ['us-west-2', 'us-east-1', 'eu-west-1'],
    policy: { cooldown: '5m' } as GuardianSettings['policy'],
    runbook: GATE,
    debounce: { failures: 3, window: '2m' },
    approval: { required: false, timeout: '5m', onTimeout: 'reject', approvers: [] },
  };
  const t0 = Date.parse('2025-01-01T00:00:00Z');

  it("fails over on the third failing signal within the window, from the first alarm's time", () => {
    const s = initialState();
    expect(decide(s, settings, alarm(WEST, 'ALARM', { at: t0 - 5000 }), t0).kind).toBe('none');
    expect(decide(s, settings, alarm(WEST, 'ALARM', { at: t0 }), t0 + 1000).kind).toBe('none');
    expect(s.decisions.at(-1)).toMatchObject({
      kind: 'debouncing',
      detail: '2 of 3 failing signals for us-west-2 within 2m',
      count: 1,
    });
    const v = decide(s, settings, alarm(WEST, 'ALARM', { at: t0 + 2000 }), t0 + 2000);
    expect(v).toMatchObject({
      kind: 'start',
      region: WEST,
      target: EAST,
      trigger: 'alarm:alertmanager:PrimaryDown',
      triggeredAt: t0 - 5000,
    });
  });

  it('signals outside the window do not count; a recovered alarm cancels its signals', () => {
    const s = initialState();
    decide(s, settings, alarm(WEST), t0);
    decide(s, settings, alarm(WEST), t0 + 1000);
    expect(decide(s, settings, alarm(WEST), t0 + 200_000).kind).toBe('none'); // the first two fell out of 2m
    decide(s, settings, alarm(WEST, 'OK'), t0 + 201_000);
    expect(s.decisions.at(-1)!.kind).toBe('recovered');
    decide(s, settings, alarm(WEST), t0 + 202_000);
    expect(decide(s, settings, alarm(WEST), t0 + 203_000).kind).toBe('none');
    expect(s.failing[WEST]).toHaveLength(2);
  });

  it('warnings are recorded only; a failing standby is not failed away from; cooldown holds back; target skips failing regions', () => {
    const s = initialState();
    for (let i = 0; i < 5; i++)
      expect(decide(s, settings, alarm(WEST, 'ALARM', { severity: 'warning' }), t0 + i).kind).toBe('none');
    expect(s.decisions).toEqual([expect.objectContaining({ kind: 'warning', count: 5 })]);
    for (let i = 0; i < 3; i++) decide(s, settings, alarm(EAST), t0 + i);
    expect(s.decisions.at(-1)).toMatchObject({ kind: 'not-writer' });
    s.lastRun = { workflowId: 'regionshift-x', status: 'aborted', endedAt: new Date(t0).toISOString() };
    for (let i = 0; i < 3; i++) decide(s, settings, alarm(WEST), t0 + 10 + i);
    expect(s.blocked).toMatchObject({ kind: 'cooldown' });
    expect(s.blocked!.detail).toContain('lasts until 2025-01-01T00:05:00.000Z');
    // After the cooldown, with us-east-1 failing too, the next region in order is eu-west-1.
    const later = t0 + 300_001;
    decide(s, settings, alarm(EAST), later);
    decide(s, settings, alarm(WEST), later);
    decide(s, settings, alarm(WEST), later + 1);
    expect(decide(s, settings, alarm(WEST), later + 2)).toMatchObject({ kind: 'start', target: 'eu-west-1' });
  });

  it('with a drain runbook, a failing region that is not the writer is drained once; its OK starts the healthy period', () => {
    const s = initialState();
    const drainable = { ...settings, drainRunbook: GATE, undrainRunbook: GATE, undrainAfter: '30s' };
    for (let i = 0; i < 2; i++) decide(s, drainable, alarm(EAST, 'ALARM', { at: t0 + i }), t0 + i);
    expect(decide(s, drainable, alarm(EAST, 'ALARM', { at: t0 + 2 }), t0 + 2)).toMatchObject({
      kind: 'start',
      action: 'drain',
      region: EAST,
      target: EAST,
      triggeredAt: t0,
    });
    s.drained = {
      [EAST]: {
        workflowId: 'regionshift-x',
        runId: 'r1',
        region: EAST,
        before: { recordName: 'x.', records: [] },
        after: { recordName: 'x.', records: [] },
      },
    };
    for (let i = 3; i < 6; i++) decide(s, drainable, alarm(EAST, 'ALARM', { at: t0 + i }), t0 + i);
    expect(s.decisions.at(-1)).toMatchObject({ kind: 'already-drained', region: EAST });
    expect(undrainDue(s, drainable)).toBeUndefined();
    decide(s, drainable, alarm(EAST, 'OK', { at: t0 + 10 }), t0 + 10);
    expect(undrainDue(s, drainable)).toEqual({ region: EAST, at: t0 + 10 + 30_000 });
    // Failing again cancels the healthy period.
    decide(s, drainable, alarm(EAST, 'ALARM', { at: t0 + 20 }), t0 + 20);
    expect(undrainDue(s, drainable)).toBeUndefined();
  });

  it('an alarm state older than the one it has is not believed (deliveries arrive out of order)', () => {
    const s = initialState();
    decide(s, settings, alarm(WEST, 'ALARM', { at: t0 }), t0);
    decide(s, settings, alarm(WEST, 'OK', { at: t0 + 20 }), t0 + 1);
    decide(s, settings, alarm(WEST, 'ALARM', { at: t0 + 10 }), t0 + 2); // sent before the OK, arrived after it
    expect(s.alarms[0]).toMatchObject({ state: 'OK', count: 3 });
    expect(s.failing[WEST]).toEqual([]);
  });

  it("probe alarms count only when a quorum of the other regions' vantage points agree; the guardian says why it held back", () => {
    const q = { ...settings, debounce: { failures: 2, window: '2m' } };
    const probe = (vantage: string, extra: Partial<AlarmSignal> = {}) =>
      alarm(WEST, 'ALARM', { name: 'RegionshiftEndpointUnreachable', vantage, ...extra });
    const s = initialState();
    // One vantage point (us-east-1) cut off from the writer, repeating: never enough.
    for (let i = 0; i < 4; i++)
      expect(decide(s, q, probe(EAST, { at: t0 + i }), t0 + i, { quorum: true }).kind).toBe('none');
    expect(s.decisions.at(-1)).toMatchObject({
      kind: 'no-quorum',
      region: WEST,
      count: 4,
      detail:
        '1 of 2 vantage points (us-east-1) cannot reach us-west-2; 2 must agree, and eu-west-1 report no failure: treated as a partition, not an outage; no failover',
    });
    // The second vantage point agrees: a failover, its RTO counted from the failure the probes saw.
    const v = decide(s, q, probe('eu-west-1', { at: t0 + 5, since: t0 - 3000 }), t0 + 5, { quorum: true });
    expect(v).toMatchObject({
      kind: 'start',
      action: 'failover',
      region: WEST,
      target: EAST,
      triggeredAt: t0 - 3000,
      trigger: 'alarm:alertmanager:RegionshiftEndpointUnreachable',
    });
    expect((v as { detail: string }).detail).toContain('vantage points agreeing: eu-west-1, us-east-1');

    // A vantage point that recovers takes back only its own signals.
    const r = initialState();
    decide(r, q, probe(EAST, { at: t0 }), t0, { quorum: true });
    decide(r, q, alarm(WEST, 'OK', { name: 'RegionshiftEndpointUnreachable', vantage: EAST, at: t0 + 1 }), t0 + 1, {
      quorum: true,
    });
    expect(decide(r, q, probe('eu-west-1', { at: t0 + 2 }), t0 + 2, { quorum: true }).kind).toBe('none');
    expect(r.decisions.at(-1)).toMatchObject({ kind: 'no-quorum' });

    // triggers.quorum: 1 trusts any single vantage point; without the patch (old histories), vantage is ignored.
    expect(
      decide(initialState(), { ...q, quorum: 1, debounce: { failures: 1, window: '2m' } }, probe(EAST), t0, {
        quorum: true,
      }).kind,
    ).toBe('start');
    const old = initialState();
    decide(old, q, probe(EAST), t0);
    expect(decide(old, q, probe(EAST), t0 + 1).kind).toBe('start');
  });

  it('never picks a target the data-residency class forbids', () => {
    const s = initialState();
    const eu = {
      ...settings,
      regions: ['eu-west-1', 'us-east-1', 'eu-central-1'],
      allowedTargets: ['eu-west-1', 'eu-central-1'],
    };
    for (let i = 0; i < 2; i++) decide(s, eu, alarm('eu-west-1'), t0 + i);
    expect(decide(s, eu, alarm('eu-west-1'), t0 + 2)).toMatchObject({ kind: 'start', target: 'eu-central-1' });
    const only = { ...eu, allowedTargets: ['eu-west-1'] };
    const s2 = initialState();
    for (let i = 0; i < 3; i++) decide(s2, only, alarm('eu-west-1'), t0 + i);
    expect(s2.decisions.at(-1)).toMatchObject({
      kind: 'no-target',
      detail: 'no region to fail over to from eu-west-1 (data residency allows eu-west-1)',
    });
  });
});

describe('guardian on Temporal', () => {
  it('approval timeout follows the policy: approve rejects, approve-or-proceed-after proceeds, auto has no gate', async () => {
    await Promise.all(
      ['gated', 'proceeds', 'automatic'].map((s) => deliverer.deliver(s, [alarm(WEST), alarm(WEST), alarm(WEST)])),
    );
    for (const s of ['gated', 'proceeds', 'automatic'])
      await waitFor(`the run of ${s}`, () => te.client.workflow.getHandle(runWorkflowId(s)).describe());
    const [gated, proceeds, automatic] = await Promise.all(
      ['gated', 'proceeds', 'automatic'].map((s) => awaitRecord(te.client, runWorkflowId(s))),
    );
    expect(gated).toMatchObject({
      status: 'failed',
      mode: 'unplanned',
      requestedBy: 'guardian',
      target: EAST,
      trigger: 'alarm:alertmanager:PrimaryDown',
    });
    expect(gated!.error).toBe(
      'no approval within 2s (policy asks a person to approve this failover); policy rejects on timeout',
    );
    expect(proceeds).toMatchObject({
      status: 'succeeded',
      approvals: [expect.objectContaining({ by: 'timeout', decision: 'timeout' })],
    });
    expect(proceeds!.steps[0]).toMatchObject({ status: 'done', detail: 'approved by timeout' });
    expect(automatic).toMatchObject({ status: 'succeeded', approvals: [] });
    expect(automatic!.steps[0]).toMatchObject({ status: 'skipped' });
    // Each guardian heard its run end: the cooldown runs from there.
    const v = await waitFor('the run end reaching the guardian', async () =>
      (await view('gated')).lastRun ? view('gated') : undefined,
    );
    expect(v).toMatchObject({ lastRun: { status: 'failed' }, inCooldown: true, runsStarted: 1 });
  });

  it('two distinct approvers, signed by the Slack bot; the requester (the guardian) and strangers are refused; groups count', async () => {
    await deliverer.deliver('quorum', [alarm(WEST), alarm(WEST), alarm(WEST)]);
    const id = runWorkflowId('quorum');
    await waitFor('the approval gate', async () => (await progress('quorum')).pendingApproval);
    await expect(approveRun(te.client, id, { by: 'guardian', decision: 'approve' }, botSigner())).rejects.toThrow(
      /guardian requested this run and cannot approve it/,
    );
    await expect(approveRun(te.client, id, { by: 'UMALLORY', decision: 'approve' }, botSigner())).rejects.toThrow(
      RefusedError,
    );
    await expect(approveRun(te.client, id, { by: 'UMALLORY', decision: 'approve' }, botSigner())).rejects.toThrow(
      /UMALLORY may not approve runs of quorum/,
    );
    await expect(approveRun(te.client, id, { by: 'UCAROL01', decision: 'approve' }, botSigner())).resolves.toBe(
      'approval 1 of 2 by UCAROL01; waiting for another approver',
    );
    await expect(approveRun(te.client, id, { by: 'UCAROL01', decision: 'approve' }, botSigner())).rejects.toThrow(
      /UCAROL01 has already approved/,
    );
    expect((await progress('quorum')).pendingApproval).toMatchObject({ approvedBy: ['UCAROL01'], quorum: 2 });
    await expect(
      approveRun(te.client, id, { by: 'UERIN001', decision: 'approve', groups: ['SONCALL01'] }, botSigner()),
    ).resolves.toBe('approved by UERIN001');
    const rec = await awaitRecord(te.client, id);
    expect(rec.status).toBe('succeeded');
    expect(rec.approvals.map((a) => a.by)).toEqual(['UCAROL01', 'UERIN001']);
  });

  it('health watcher: failing Route 53 checks (SDK-level answers) become alarms, three polls start the failover; recovery is announced', async () => {
    healthAnswers.set('hc-west', [
      'Failure: Connection timed out.',
      'Failure: Connection timed out.',
      'Success: HTTP Status Code 200, OK',
      'Failure: Connection refused.',
      'Failure: Connection refused.',
      'Failure: Connection refused.',
    ]);
    expect(await startHealthWatchers(te.client, te.config)).toEqual([healthWatcherWorkflowId('watched')]);
    const rec = await waitFor('the run the health watcher triggers', () => progress('watched'), 20_000, 200);
    expect(rec).toMatchObject({ trigger: 'alarm:route53:hc-west', target: EAST, mode: 'unplanned' });
    const watcher = te.client.workflow.getHandle(healthWatcherWorkflowId('watched'));
    expect((await watcher.query<HealthWatcherView>('health')).last[WEST]).toMatchObject({
      verdict: 'failing',
      healthy: 1,
      total: 6,
    });
    expect((await watcher.query<HealthWatcherView>('health')).last[EAST]).toMatchObject({ verdict: 'healthy' });
    healthAnswers.delete('hc-west');
    await waitFor(
      'the recovery',
      async () => (await watcher.query<HealthWatcherView>('health')).failing.length === 0,
      10_000,
      200,
    );
    const v = await waitFor('the OK reaching the guardian', async () => {
      const g = await view('watched');
      return g.alarms.find((a) => a.key === 'route53:hc-west:us-west-2')?.state === 'OK' ? g : undefined;
    });
    expect(v.runsStarted).toBe(1);
    await te.client.workflow.getHandle(healthWatcherWorkflowId('watched')).terminate('test over');
  });

  it('health watcher activity against moto: GetHealthCheckStatus answers, the verdict is healthy', async () => {
    const r53 = new Route53Client({
      region: 'us-east-1',
      endpoint: moto.url,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    const hc = await r53.send(
      new CreateHealthCheckCommand({
        CallerReference: `test-${Date.now()}`,
        HealthCheckConfig: {
          Type: 'HTTPS',
          FullyQualifiedDomainName: 'db.us-west-2.regionshift.test',
          Port: 443,
          ResourcePath: '/health',
        },
      }),
    );
    const observations = await createHealthActivities().route53HealthCheckStatus({
      healthCheckId: hc.HealthCheck!.Id!,
      endpointUrl: moto.url,
    });
    expect(observations.length).toBeGreaterThan(0);
    expect(observations[0]!.status).toMatch(/^Success/);
    const { healthVerdict } = await import('../src/contract/guardian/health-verdict');
    expect(healthVerdict(observations, 0.18).verdict).toBe('healthy');
  });

  it('continues as new with its history bounded, keeping what it knows', async () => {
    const small = new Deliverer({
      client: te.client,
      config: te.config,
      runbook: GATE,
      settingsExtra: { maxHistoryEvents: 50 },
    });
    await small.configureAll(); // a running guardian takes new settings from `configure` only
    // Warnings never start a run: 120 one-by-one signals only grow the guardian's history.
    for (let i = 0; i < 120; i++)
      await small.deliver('longlived', [alarm(WEST, 'ALARM', { severity: 'warning', name: `Warn${i % 7}` })]);
    const v = await waitFor('all 120 alarms processed', async () => {
      const g = await view('longlived');
      return g.received === 120 && g.generation >= 2 ? g : undefined;
    });
    expect(v.historyLength).toBeLessThan(100);
    expect(v.alarms.filter((a) => a.name.startsWith('Warn')).reduce((n, a) => n + a.count, 0)).toBe(120);
    expect(v.decisions.at(-1)).toMatchObject({ kind: 'warning' });
  });

  it('guardian and run histories replay deterministically with the current code', async () => {
    const ids = [
      guardianWorkflowId('gated'),
      guardianWorkflowId('quorum'),
      guardianWorkflowId('watched'),
      runWorkflowId('quorum'),
      runWorkflowId('proceeds'),
    ];
    const histories = await Promise.all(
      ids.map(async (workflowId) => ({
        workflowId,
        history: await te.client.workflow.getHandle(workflowId).fetchHistory(),
      })),
    );
    const results = [];
    // Replay decodes the histories as the workers wrote them: with the environment's codec.
    for await (const r of Worker.runReplayHistories(
      { workflowBundle: await testWorkflowBundle(), dataConverter: dataConverterFromEnv() },
      histories,
    ))
      results.push(r);
    expect(results.map((r) => `${r.workflowId} ${r.error ? String(r.error) : 'ok'}`)).toEqual(
      ids.map((id) => `${id} ok`),
    );
  });
});
