// The alarm intake over real HTTP into real guardians on the Temporal dev server, with the real
// failover runbook against a real PostgreSQL pair and moto: SNS signatures (a certificate made at
// test time), EventBridge and Alertmanager authentication, debounce, an alarm storm that starts
// exactly one run, and the cooldown that holds back the next one and says so in `status`.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { statusCommand } from '../src/cli/status';
import { guardianWorkflowId } from '../src/contract/guardian/ids';
import { mapAlarm } from '../src/intake/mapping';
import { parseAlertmanager } from '../src/intake/parse';
import { runIntake, type RunningIntake } from '../src/intake/service';
import type { GuardianView } from '../src/contract/guardian/types';
import { runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { abortRun, approveRun, awaitRecord, startRun } from '../src/lib/runs/client';
import { startRigs } from './support/rigs';
import { createFailoverEnv, SERVICE, type FailoverEnv } from './support/failover-env';
import { cloudWatchAlarm, createSnsFixture, type SnsFixture } from './support/sns-fixture';
import { waitFor } from './support/wait';
import { signerFor } from './support/signing';
import { readinessScheduleId } from '../src/lib/readiness';
import { ledgerPrimaryDown } from './support/alertmanager';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const EB_SECRET = 'eventbridge-shared-secret';
const AM_TOKEN = 'alertmanager-bearer-token';

let fe: FailoverEnv;
let sns: SnsFixture;
let intake: RunningIntake;
const logs: string[] = [];
let dir: string;

beforeAll(async () => {
  [fe, sns] = await startRigs([
    createFailoverEnv({ approvers: ['carol', 'dave'], cooldown: '5m' }),
    createSnsFixture(),
  ]);
  (fe.config.services[0] as { triggers?: unknown }).triggers = {
    alarms: [
      { source: 'sns', name: 'ledger-west-5xx', region: WEST },
      { source: 'sns', name: 'ledger-west-disk', region: WEST, severity: 'warning' },
      { source: 'eventbridge', name: 'ledger-west-latency', region: WEST },
      { source: 'alertmanager', name: 'LedgerPrimaryDown', regionLabel: 'region', labels: { team: 'ledger' } },
    ],
    debounce: { failures: 3, window: '2m' },
    approval: { unplanned: { policy: 'approve', timeout: '60s' } },
  };
  (fe.config as { triggers?: unknown }).triggers = { intake: { port: 0 } };
  dir = mkdtempSync(join(tmpdir(), 'regionshift-intake-test-'));
  intake = await runIntake({
    journalPath: join(dir, 'journal.jsonl'),
    config: fe.config,
    client: fe.client,
    secrets: { eventbridge: EB_SECRET, alertmanager: AM_TOKEN },
    snsUrlAllowed: sns.urlAllowed,
    log: (line) => logs.push(line),
  });
});

afterAll(async () => {
  await intake?.stop();
  await Promise.allSettled([fe?.teardown(), sns?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function post(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${intake.server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': path === '/sns' ? 'text/plain; charset=UTF-8' : 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const amHeaders = { authorization: `Bearer ${AM_TOKEN}` };
function alertmanager(status: 'firing' | 'resolved', region = WEST): unknown {
  return ledgerPrimaryDown(status, region, { team: 'ledger' });
}

async function guardian(): Promise<GuardianView> {
  return fe.client.workflow.getHandle(guardianWorkflowId(SERVICE)).query<GuardianView>('state');
}

async function runCount(): Promise<number> {
  const list = fe.client.workflow.list({ query: `WorkflowType = 'runbook' AND RegionshiftService = '${SERVICE}'` });
  let n = 0;
  for await (const _ of list) n++;
  return n;
}

async function status(): Promise<string> {
  const file = join(dir, 'regionshift.yaml');
  // The parsed config is plain JSON, and JSON is YAML; `status` needs no triggers section.
  const { triggers: _t, ...config } = fe.config as typeof fe.config & { triggers?: unknown };
  writeFileSync(
    file,
    JSON.stringify({
      ...config,
      services: config.services.map(
        ({ triggers: _s, ...s }: (typeof config.services)[number] & { triggers?: unknown }) => s,
      ),
    }),
  );
  const out: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((line: unknown) => void out.push(String(line)));
  try {
    expect(await statusCommand(['--config', file, SERVICE])).toBe(0);
  } finally {
    spy.mockRestore();
  }
  return out.join('\n');
}

describe('SNS', () => {
  it('confirms a signed subscription (version 1) by GETting SubscribeURL; refuses a SubscribeURL that is not an SNS host', async () => {
    const ok = await post('/sns', sns.subscriptionConfirmation({ version: '1' }));
    expect(ok).toMatchObject({ status: 200, body: { confirmed: true } });
    expect(sns.confirmations).toHaveLength(1);
    expect(sns.confirmations[0]).toContain('Action=ConfirmSubscription');

    const evil = await post(
      '/sns',
      sns.subscriptionConfirmation({ subscribeUrl: 'http://127.0.0.2:9/confirm?Token=x' }),
    );
    expect(evil.status).toBe(403);
    expect(String(evil.body.error)).toContain('SubscribeURL http://127.0.0.2:9 is not an SNS host of AWS');
    expect(sns.confirmations).toHaveLength(1);
  });

  it('accepts signed CloudWatch alarm notifications, signature versions 1 and 2, and hands them to the guardian', async () => {
    const v1 = await post(
      '/sns',
      sns.notification(cloudWatchAlarm('ledger-west-5xx', 'OK'), {
        version: '1',
        subject: 'OK: "ledger-west-5xx" in US West (Oregon)',
      }),
    );
    expect(v1).toMatchObject({
      status: 202,
      body: { accepted: 1, delivered: [{ service: SERVICE, region: WEST, alarm: 'ledger-west-5xx', state: 'OK' }] },
    });
    const v2 = await post('/sns', sns.notification(cloudWatchAlarm('ledger-west-disk', 'ALARM'), { version: '2' }));
    expect(v2).toMatchObject({ status: 202, body: { accepted: 1 } });
    const g = await waitFor('both alarms at the guardian', async () =>
      (await guardian()).received >= 2 ? guardian() : undefined,
    );
    expect(g.alarms.map((a) => `${a.key} ${a.state} ${a.severity}`).sort()).toEqual([
      'sns:ledger-west-5xx:us-west-2 OK critical',
      'sns:ledger-west-disk:us-west-2 ALARM warning',
    ]);
    // A notification that is not a CloudWatch alarm, or an alarm no service maps, is answered but ignored.
    expect(await post('/sns', sns.notification('hello'))).toMatchObject({ status: 200, body: { accepted: 0 } });
    expect(await post('/sns', sns.notification(cloudWatchAlarm('someone-elses-alarm', 'ALARM')))).toMatchObject({
      status: 200,
      body: { accepted: 0 },
    });
  });

  it('rejects tampered, wrongly hosted, stale, unsigned and unknown-version messages with 4xx and a log line, delivering nothing', async () => {
    const before = (await guardian()).received;
    logs.length = 0;
    const tampered = {
      ...sns.notification(cloudWatchAlarm('ledger-west-5xx', 'ALARM')),
      Message: JSON.stringify(cloudWatchAlarm('ledger-west-5xx', 'ALARM', new Date(0))),
    };
    const wrongHost = sns.notification(cloudWatchAlarm('ledger-west-5xx', 'ALARM'), {
      certUrl: `http://localhost:${sns.port}/SimpleNotificationService-test.pem`,
    });
    const stale = sns.notification(cloudWatchAlarm('ledger-west-5xx', 'ALARM'), {
      timestamp: new Date(Date.now() - 2 * 3600_000),
    });
    const { Signature: _s, ...unsigned } = sns.notification(cloudWatchAlarm('ledger-west-5xx', 'ALARM'));
    const v3 = sns.resign({ ...sns.notification(cloudWatchAlarm('ledger-west-5xx', 'ALARM')), SignatureVersion: '3' });
    const results = await Promise.all(
      [tampered, wrongHost, stale, unsigned, v3, 'not json'].map((m) => post('/sns', m)),
    );
    expect(results.map((r) => r.status)).toEqual([403, 403, 403, 403, 403, 400]);
    expect(String(results[0]!.body.error)).toContain('signature does not verify');
    expect(String(results[1]!.body.error)).toContain('SigningCertURL http://localhost');
    expect(String(results[2]!.body.error)).toContain('stale message');
    expect(String(results[3]!.body.error)).toContain('unsigned');
    expect(String(results[4]!.body.error)).toContain('unsupported SignatureVersion "3"');
    expect(logs.filter((l) => l.startsWith('intake: rejected'))).toHaveLength(6);
    expect(logs.join('\n')).toMatch(/intake: rejected .* POST \/sns: 403 sns: stale message/);
    await new Promise((r) => setTimeout(r, 300));
    expect((await guardian()).received).toBe(before);
  });
});

describe('EventBridge and Alertmanager', () => {
  it('EventBridge needs the shared secret header; Alertmanager the bearer token', async () => {
    const event = {
      version: '0',
      id: 'b7f1',
      'detail-type': 'CloudWatch Alarm State Change',
      source: 'aws.cloudwatch',
      account: '123456789012',
      time: new Date().toISOString(),
      region: WEST,
      resources: ['arn:aws:cloudwatch:us-west-2:123456789012:alarm:ledger-west-latency'],
      detail: {
        alarmName: 'ledger-west-latency',
        state: { value: 'OK', reason: 'back to normal', timestamp: new Date().toISOString().replace('Z', '+0000') },
        previousState: { value: 'ALARM' },
      },
    };
    expect((await post('/eventbridge', event)).status).toBe(401);
    expect((await post('/eventbridge', event, { 'x-regionshift-secret': 'wrong' })).status).toBe(401);
    expect(await post('/eventbridge', event, { 'x-regionshift-secret': EB_SECRET })).toMatchObject({
      status: 202,
      body: { accepted: 1 },
    });
    expect(
      (
        await post(
          '/eventbridge',
          { ...event, 'detail-type': 'EC2 Instance State-change Notification' },
          { 'x-regionshift-secret': EB_SECRET },
        )
      ).status,
    ).toBe(400);

    expect((await post('/alertmanager', alertmanager('resolved'))).status).toBe(401);
    expect((await post('/alertmanager', alertmanager('resolved'), { authorization: 'Bearer nope' })).status).toBe(401);
    expect(await post('/alertmanager', alertmanager('resolved'), amHeaders)).toMatchObject({
      status: 202,
      body: { accepted: 1, delivered: [{ state: 'OK' }] },
    });
    expect(logs.filter((l) => /rejected .* (401|400)/.test(l)).length).toBeGreaterThanOrEqual(5);
  });
});

describe('probe alerts from the local stack', () => {
  it('carry their vantage point (vantageLabel) and when the failure began (failing_since) to the guardian', () => {
    const config = {
      services: [
        {
          name: 'ledger',
          regions: [WEST, EAST, 'eu-west-1'],
          triggers: {
            alarms: [
              {
                source: 'alertmanager',
                name: 'RegionshiftEndpointUnreachable',
                regionLabel: 'probe_to',
                vantageLabel: 'probe_from',
                labels: { service: 'ledger' },
              },
            ],
          },
        },
      ],
    } as unknown as Parameters<typeof mapAlarm>[0];
    const now = Date.parse('2026-12-04T17:00:00Z');
    const alert = (status: string, failingSince: string) => ({
      alerts: [
        {
          status,
          startsAt: '2026-12-04T16:59:57Z',
          endsAt: '2026-12-04T17:00:00Z',
          labels: { alertname: 'RegionshiftEndpointUnreachable', probe_from: EAST, probe_to: WEST, service: 'ledger' },
          annotations: { summary: 'us-east-1 cannot reach ledger in us-west-2', failing_since: failingSince },
        },
      ],
    });
    // Go's template prints the sample value as a float in exponent form.
    const [firing] = parseAlertmanager(alert('firing', '1.796403594571e+09'), now);
    expect(firing).toMatchObject({ state: 'ALARM', at: Date.parse('2026-12-04T16:59:57Z'), since: 1796403594571 });
    expect(mapAlarm(config, firing!, now)).toEqual([
      {
        service: 'ledger',
        signal: expect.objectContaining({ region: WEST, vantage: EAST, since: 1796403594571, severity: 'critical' }),
      },
    ]);
    // No good probe in the window (the annotation is empty), or resolved: no `since`.
    expect(parseAlertmanager(alert('firing', ''), now)[0]).not.toHaveProperty('since');
    expect(parseAlertmanager(alert('resolved', '1.796403594571e+09'), now)[0]).not.toHaveProperty('since');
  });
});

describe('guardian decisions through the intake', () => {
  it('debounce: below the threshold starts nothing, and a recovered alarm does not count', async () => {
    expect((await post('/alertmanager', alertmanager('firing'), amHeaders)).status).toBe(202);
    expect((await post('/alertmanager', alertmanager('firing'), amHeaders)).status).toBe(202);
    let g = await waitFor('two failing signals', async () =>
      (await guardian()).failing[0]?.count === 2 ? guardian() : undefined,
    );
    expect(g.decisions.at(-1)).toMatchObject({
      kind: 'debouncing',
      detail: '2 of 3 failing signals for us-west-2 within 2m',
    });
    expect(await post('/alertmanager', alertmanager('resolved'), amHeaders)).toMatchObject({ status: 202 });
    expect((await post('/alertmanager', alertmanager('firing'), amHeaders)).status).toBe(202);
    g = await waitFor('the recovery and one new signal', async () =>
      (await guardian()).decisions.at(-1)?.detail.startsWith('1 of 3') ? guardian() : undefined,
    );
    expect(g.failing).toEqual([expect.objectContaining({ region: WEST, count: 1 })]);
    expect(g.decisions.map((d) => d.kind)).toContain('recovered');
    expect(await runCount()).toBe(0);
    expect(g.runsStarted).toBe(0);
  });

  it('alarm storm: 1,000 deliveries in a burst start exactly one run; the rest are attached to it', async () => {
    const before = (await guardian()).received;
    const started = Date.now();
    const statuses: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < 1000) {
          next++;
          statuses.push((await post('/alertmanager', alertmanager('firing'), amHeaders)).status);
        }
      }),
    );
    const elapsed = Date.now() - started;
    expect(statuses.filter((s) => s === 202)).toHaveLength(1000);
    const g = await waitFor('all 1,000 at the guardian', async () =>
      (await guardian()).received === before + 1000 && (await guardian()).current ? guardian() : undefined,
    );
    expect(g.runsStarted).toBe(1);
    const rec = await waitFor('the run at its approval gate', async () => {
      const r = await fe.client.workflow.getHandle(runWorkflowId(SERVICE)).query<RunRecord>('progress');
      return r.pendingApproval && (r.alarms?.[0]?.count ?? 0) >= 999 ? r : undefined;
    });
    expect(rec).toMatchObject({
      mode: 'unplanned',
      target: EAST,
      source: WEST,
      requestedBy: 'guardian',
      trigger: 'alarm:alertmanager:LedgerPrimaryDown',
    });
    expect(rec.steps[0]).toMatchObject({ id: 'preflight', status: 'done' });
    // The threshold was crossed by the storm's second alarm: it and the 998 after it are on the record.
    expect(rec.alarms).toEqual([
      expect.objectContaining({
        trigger: 'alarm:alertmanager:LedgerPrimaryDown',
        region: WEST,
        state: 'ALARM',
        count: 999,
      }),
    ]);
    await new Promise((r) => setTimeout(r, 1000)); // visibility catches up
    expect(await runCount()).toBe(1);
    console.log(
      `storm: 1,000 deliveries in ${elapsed} ms (${Math.round(1000 / (elapsed / 1000))}/s), ${intake.deliverer.signalsSent} signals so far`,
    );
    // The guardian is the requester: it cannot approve; a stranger cannot either.
    await expect(
      approveRun(fe.client, runWorkflowId(SERVICE), { by: 'mallory', decision: 'approve' }, signerFor('mallory')),
    ).rejects.toThrow(/mallory may not approve runs of ledger/);
  });

  it('a second failure inside the cooldown starts nothing and `status` says so; a manual run is still allowed', async () => {
    await abortRun(
      fe.client,
      runWorkflowId(SERVICE),
      { by: 'carol', reason: 'false alarm: the load balancer, not the database' },
      signerFor('carol'),
    );
    await expect(awaitRecord(fe.client, runWorkflowId(SERVICE))).resolves.toMatchObject({ status: 'aborted' });
    await waitFor('the guardian hearing the end', async () => ((await guardian()).inCooldown ? true : undefined));
    for (let i = 0; i < 3; i++)
      expect((await post('/alertmanager', alertmanager('firing'), amHeaders)).status).toBe(202);
    const g = await waitFor('the cooldown decision', async () => ((await guardian()).blocked ? guardian() : undefined));
    expect(g.blocked!.detail).toMatch(
      /automatic failover of us-west-2 held back: cooldown 5m after the last run \(regionshift-ledger, aborted at .*\) lasts until .*; a manual run is still allowed/,
    );
    expect(g.runsStarted).toBe(1);
    expect(await runCount()).toBe(1);

    const text = await status();
    expect(text).toContain('COOLDOWN until');
    expect(text).toContain('no automatic failover (last run regionshift-ledger aborted');
    expect(text).toMatch(/held back at .*: automatic failover of us-west-2 held back/);
    expect(text).toContain('alarms during the run: alarm:alertmanager:LedgerPrimaryDown [us-west-2] ALARM ×999');

    const manual = await startRun(
      fe.client,
      fe.input({ target: EAST, dryRun: true, requestedBy: 'carol', trigger: 'cli' }),
    );
    expect(manual.started).toBe(true);
    await expect(awaitRecord(fe.client, manual.workflowId, manual.runId)).resolves.toMatchObject({
      status: 'succeeded',
      dryRun: true,
    });
  });
});

describe('readiness', () => {
  it("the intake makes each service's readiness schedule as it starts", async () => {
    const desc = await fe.client.schedule.getHandle(readinessScheduleId(SERVICE)).describe();
    expect(desc.spec.intervals?.[0]?.every).toBe(30 * 60_000);
    expect(desc.action).toMatchObject({ type: 'startWorkflow', workflowType: 'readiness' });
  });
});

describe('the CLI', () => {
  it('`regionshift intake` serves the endpoints from a YAML config with triggers, and stops on SIGTERM', async () => {
    const file = join(dir, 'with-triggers.yaml');
    // Its own journal: never the checkout's state dir, which a running local stack's intake holds locked.
    writeFileSync(
      file,
      JSON.stringify({
        ...fe.config,
        triggers: { intake: { port: 0, journal: { path: join(dir, 'cli-journal.jsonl') } } },
      }),
    );
    const child = spawn(
      process.execPath,
      [join(__dirname, '..', 'bin', 'regionshift.js'), 'intake', '--config', file],
      {
        env: { ...process.env, REGIONSHIFT_ALERTMANAGER_TOKEN: AM_TOKEN, TEMPORAL_ADDRESS: fe.config.temporal.address },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const url = await waitFor(
        'the intake to be ready',
        async () => /regionshift intake ready: (http:\/\/[0-9.:]+)/.exec(out)?.[1],
        30_000,
      );
      expect(out).toContain('eventbridge endpoint refuses everything until REGIONSHIFT_EVENTBRIDGE_SECRET is set');
      const res = await fetch(`${url}/alertmanager`, {
        method: 'POST',
        headers: { authorization: `Bearer ${AM_TOKEN}` },
        body: JSON.stringify(alertmanager('resolved')),
      });
      expect(res.status).toBe(202);
      expect((await fetch(`${url}/eventbridge`, { method: 'POST', body: '{}' })).status).toBe(401);
      // Its /metrics: the intake's own, and the Temporal SDK's (its worker's polls and slots).
      const metrics = await waitFor(
        'the SDK metrics in the intake /metrics',
        async () => {
          const text = await (await fetch(`${url}/metrics`)).text();
          return /^temporal_worker_task_slots_available\{/m.test(text) ? text : undefined;
        },
        30_000,
        500,
      );
      expect(metrics).toMatch(/^regionshift_intake_alarms_total\{endpoint="alertmanager",outcome="accepted"\} 1$/m);
      expect(metrics).toMatch(/^temporal_\w+\{[^}]*task_queue="regionshift\.intake"/m);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, out).toBe(0);
  });
});
