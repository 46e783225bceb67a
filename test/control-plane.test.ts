// The replicated control plane on a real local stack (stack.controlPlane: replicated): one full
// Temporal server per region, the namespace global. A planned run whose namespace fails over while
// one of its steps is in flight finishes on the other cluster, each step once and none cancelled
// by the workers' renewal; then the writer region is
// lost whole (PostgreSQL, worker and Temporal cluster) and `failover --mode unplanned
// --control-plane` moves the namespace to the survivor and runs the database runbook there; the
// lost cluster comes back as a standby and catches up. An intake started at the beginning follows
// the namespace when the cluster it talks to goes, never moves a namespace whose active cluster
// answers, and, when the writer region is lost again, fails the namespace over by itself with the
// alarm it has to deliver. One stack, shared.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { loadConfig } from '../src/lib/config/load';
import type { Config, Service } from '../src/lib/config/schema';
import { killRegion } from '../src/demo/region';
import { standInSigner } from '../src/demo/approver';
import { adminClient, nodeOf } from '../src/demo/ledger';
import { runWorkflowId } from '../src/contract/runbook/ids';
import { loadServiceRunbook } from '../src/lib/runbooks';
import type { RunRecord } from '../src/contract/runbook/types';
import { approveRun, awaitRecord, buildRunInput, connect, startRun, temporalAddressFor } from '../src/lib/runs/client';
import { endpointOf, failoverControlPlane, namespaceViewAt } from '../src/lib/runs/control-plane';
import { stackCodecEnv } from '../src/stack/codec';
import { probePg } from '../src/stack/postgres';
import { liveProcess } from '../src/stack/status';
import { readState } from '../src/stack/state';
import { upReplicated } from '../src/stack/replicated';
import { writeTempStack } from '../src/stack/temp';
import { FAILOVER_VERSION_INCREMENT } from '../src/stack/control-plane';
import { killLeftovers, runCli, type CliResult, type TempStack } from './support/stack-env';
import { waitFor } from './support/wait';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runIntake, type RunningIntake } from '../src/intake/service';
import { connectFollowing } from '../src/lib/runs/client';
import type { FollowingClient } from '../src/lib/runs/following';
import { clusterComponentName } from '../src/stack/replicated';
import { isAlive, logSince } from '../src/stack/process';
import { rebuildPair } from '../src/demo/region';
import { stackUp } from '../src/stack/stack';
import type { GuardianView } from '../src/contract/guardian/types';
import { guardianWorkflowId } from '../src/contract/guardian/ids';
import { createSlackBot, type SlackBot } from '../src/slack/bot';
import { finalAnswer, slackSignature, startSlackApi, type SlackApi } from './support/slack-api';
import { SLACK_DECISION_KEY } from './support/signing';
import { ledgerPrimaryDown } from './support/alertmanager';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
// Cluster i's failover versions are i+1 (mod the increment): which cluster wrote an event.
const VERSION_OF = { [WEST]: 1, [EAST]: 2 } as const;

// The cooldown is short: the automatic run in the last test follows the CLI's unplanned run of the
// test before it by a time that depends on the machine, and the guardian counts that run too.
const POLICY = `      rpoBudgetSeconds: 60
      allowDataLoss: true
      cooldown: 10s
      approval: { planned: required, unplanned: none }
      approvalTimeout: 5m
      lagTimeout: 60s`; // the first test holds a lag wait open across a namespace move

function show(r: CliResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

interface Event {
  eventId?: unknown;
  eventType?: unknown;
  version?: unknown;
  activityTaskScheduledEventAttributes?: {
    activityId?: string | null;
    activityType?: { name?: string | null } | null;
  } | null;
  activityTaskCompletedEventAttributes?: { scheduledEventId?: unknown } | null;
  activityTaskStartedEventAttributes?: { scheduledEventId?: unknown; attempt?: number | null } | null;
}

async function history(client: Client, workflowId: string, runId: string): Promise<Event[]> {
  const h = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  return (h.events ?? []) as Event[];
}

const typeOf = (e: Event): string =>
  typeof e.eventType === 'number'
    ? (temporal.api.enums.v1.EventType[e.eventType] ?? String(e.eventType))
    : String(e.eventType);
/** The cluster whose failover version an event carries. */
const clusterOf = (e: Event): string =>
  Number(e.version) % FAILOVER_VERSION_INCREMENT === VERSION_OF[WEST] ? WEST : EAST;

let stack: TempStack;
let config: Config;
let service: Service;
// An intake as `regionshift intake` runs it: its own client follows the namespace and may fail it over.
const AM_TOKEN = 'alertmanager-bearer-token';
let intake: RunningIntake | undefined;
let intakeClient: FollowingClient | undefined;
let intakeDir: string | undefined;
const intakeLog: string[] = [];
// And a Slack bot as `regionshift slack` runs it, against a stand-in Slack API.
const SLACK_SECRET = 'test-signing-secret';
let slackApi: SlackApi | undefined;
let bot: SlackBot | undefined;
let botClient: FollowingClient | undefined;
let botUrl = '';

/** `/regionshift <text>` as Slack sends it, signed; its final answer (a slow `status` answers in two parts). */
async function slash(text: string): Promise<{ status: number; text: string }> {
  const responseUrl = slackApi!.responseUrl();
  const body = new URLSearchParams({
    team_id: 'T0TEST',
    channel_id: 'C0OPS001',
    user_id: 'UALICE01',
    user_name: 'alice',
    command: '/regionshift',
    text,
    response_url: responseUrl,
    trigger_id: '1.2.3',
    api_app_id: 'A0TEST',
  }).toString();
  const res = await fetch(botUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...slackSignature(SLACK_SECRET, body) },
    body,
  });
  const raw = await res.text();
  let said = raw;
  try {
    said = String((JSON.parse(raw) as { text?: string }).text ?? raw);
  } catch {
    // not JSON
  }
  // Generous: the bot following a moved namespace reads the status slowly, and that is not the failure.
  return finalAnswer(slackApi!, responseUrl, { status: res.status, text: said }, 60_000);
}

async function postAlarm(body: unknown): Promise<number> {
  const res = await fetch(`${intake!.server.url}/alertmanager`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${AM_TOKEN}` },
    body: JSON.stringify(body),
  });
  return res.status;
}

/** SIGKILLs the region's Temporal cluster alone (its process group), as a crash of that cluster does. */
async function killCluster(region: string): Promise<void> {
  const rec = readState(stack.home).processes[clusterComponentName(region)]!;
  try {
    process.kill(-rec.pid, 'SIGKILL');
  } catch {
    process.kill(rec.pid, 'SIGKILL');
  }
  await waitFor(`the cluster of ${region} to be gone`, async () => !isAlive(rec.pid) || undefined, 10_000, 50);
}

beforeAll(async () => {
  const files = await writeTempStack({
    prefix: 'regionshift-cp-',
    comment: 'written by test/control-plane.test.ts',
    regions: [WEST, EAST],
    policy: POLICY,
    controlPlane: 'replicated',
  });
  stack = {
    ...files,
    env: { ...process.env, REGIONSHIFT_HOME: files.home, REGIONSHIFT_CONFIG: files.configFile },
    remove: () => rmSync(files.dir, { recursive: true, force: true }),
  };
  delete stack.env.TEMPORAL_ADDRESS;
  const up = await runCli(['stack', 'up'], stack.env, 300_000);
  if (up.code !== 0) throw new Error(`stack up failed:\n${show(up)}`);
  // The test's own clients read the stack's encrypted payloads with the stack's key.
  Object.assign(process.env, stackCodecEnv(stack.home).env);
  process.env.REGIONSHIFT_HOME = stack.home;
  config = loadConfig(stack.configFile);
  service = config.services[0]!;
  delete process.env.TEMPORAL_ADDRESS;

  // The intake connects while the namespace is active in west, as one started before any failover.
  const intakeConfig: Config = structuredClone(config);
  intakeConfig.temporal.controlPlaneFailoverAfter = '3s';
  (intakeConfig.services[0] as { triggers?: unknown }).triggers = {
    alarms: [{ source: 'alertmanager', name: 'LedgerPrimaryDown', regionLabel: 'region' }],
    debounce: { failures: 1, window: '2m' },
  };
  (intakeConfig as { triggers?: unknown }).triggers = { intake: { port: 0 } };
  intakeDir = mkdtempSync(join(tmpdir(), 'regionshift-cp-intake-'));
  const log = (line: string): void => void intakeLog.push(line);
  intakeClient = await connectFollowing(intakeConfig, { failover: true, log });
  intake = await runIntake({
    journalPath: join(intakeDir, 'journal.jsonl'),
    config: intakeConfig,
    client: intakeClient,
    secrets: { alertmanager: AM_TOKEN },
    log,
  });
  slackApi = await startSlackApi();
  const slackConfig: Config = structuredClone(config);
  (slackConfig as { triggers?: unknown }).triggers = {
    // Its pollers stay out of the way: only its answers to a command are under test here.
    slack: {
      channel: 'C0RUNS01',
      port: 0,
      pollInterval: '10m',
      readinessPollInterval: '10m',
      apiUrl: slackApi.apiUrl,
    },
  };
  botClient = await connectFollowing(slackConfig);
  bot = createSlackBot({
    config: slackConfig,
    temporal: botClient,
    secrets: { botToken: 'xoxb-test', signingSecret: SLACK_SECRET, decisionKey: SLACK_DECISION_KEY },
    log: () => undefined,
  });
  botUrl = `http://127.0.0.1:${(await bot.start()).port}/slack/events`;
}, 320_000);

afterAll(async () => {
  await bot?.stop();
  await botClient?.close();
  await slackApi?.close();
  await intake?.stop();
  await intakeClient?.close();
  if (intakeDir) rmSync(intakeDir, { recursive: true, force: true });
  if (!stack) return;
  await runCli(['stack', 'down'], stack.env, 120_000);
  await killLeftovers(stack);
  stack.remove();
}, 150_000);

describe('replicated control plane', () => {
  it('stack up runs one cluster per region, the namespace global and active in the writer region; status says which', async () => {
    const r = await runCli(['stack', 'status', '--json'], stack.env);
    expect(r.code, show(r)).toBe(0);
    const s = JSON.parse(r.stdout) as {
      components: Array<{ name: string; health: string; controlPlane?: string; address: string }>;
    };
    const clusters = s.components.filter((c) => c.name.startsWith('temporal'));
    expect(clusters.map((c) => [c.name, c.health, c.controlPlane, c.address])).toEqual([
      [`temporal:${WEST}`, 'up', 'active', endpointOf(config, WEST).address],
      [`temporal:${EAST}`, 'up', 'standby', endpointOf(config, EAST).address],
    ]);
    const text = await runCli(['stack', 'status'], stack.env);
    expect(text.stdout).toMatch(new RegExp(`temporal:${EAST} .* standby of namespace default \\(active: ${WEST}\\)`));
    // Clients go to the active cluster.
    expect(await temporalAddressFor(config)).toBe(endpointOf(config, WEST).address);
    // The CLI's own view, and init on clusters already linked: nothing to add, nothing moved.
    const cp = await runCli(['control-plane', 'status', '--json'], stack.env);
    expect(cp.code, show(cp)).toBe(0);
    expect(
      (JSON.parse(cp.stdout) as { clusters: Array<{ region: string; up: boolean; active: string }> }).clusters.map(
        (c) => [c.region, c.up, c.active],
      ),
    ).toEqual([
      [WEST, true, WEST],
      [EAST, true, WEST],
    ]);
    const init = await runCli(['control-plane', 'init'], stack.env);
    expect(init.code, show(init)).toBe(0);
    expect(init.stdout).toContain(`namespace default global, active in ${WEST}; search attributes present`);
  });

  it('a planned run started on one cluster, the namespace failed over with a step in flight, finishes on the other with each step once; the step is not cancelled', async () => {
    const onWest = await connect(config);
    const runbook = await loadServiceRunbook(config, 'ledger', 'failover');
    const input = buildRunInput(config, runbook, {
      service: 'ledger',
      target: EAST,
      source: WEST,
      mode: 'planned',
      dryRun: false,
      requestedBy: 'test',
      trigger: 'test',
    });
    const started = await startRun(onWest, input);
    const workflowId = runWorkflowId('ledger');
    await waitFor(
      'the run to wait for approval',
      async () =>
        (await onWest.workflow.getHandle(workflowId, started.runId).query<RunRecord>('progress')).pendingApproval
          ?.stepId,
      60_000,
    );

    // A step in flight across the move: east replays nothing until told, and west writes first,
    // so the run's lag wait on east (with the promotion, one activity) holds it open on east's worker.
    const east = await adminClient(nodeOf(service, EAST));
    try {
      await east.query('SELECT pg_wal_replay_pause()');
      const west = await adminClient(nodeOf(service, WEST));
      await west.query(
        'CREATE TABLE IF NOT EXISTS in_flight_probe (at timestamptz); INSERT INTO in_flight_probe VALUES (now())',
      );
      await west.end();
      await approveRun(
        onWest,
        workflowId,
        { decision: 'approve', by: 'demo-oncall', reason: 'test: a step in flight across the move' },
        standInSigner(service, 'demo-oncall'),
      );
      await waitFor(
        'the lag wait to be in flight on east',
        async () =>
          (await onWest.workflow.getHandle(workflowId, started.runId).describe()).raw.pendingActivities?.some(
            (a) =>
              a.activityType?.name === 'dbPromoteAfterLag' &&
              a.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
          ) || undefined,
        60_000,
      );
    } catch (err) {
      await east.query('SELECT pg_wal_replay_resume()').catch(() => undefined);
      await east.end();
      throw err;
    }
    const eastWorker = readState(stack.home).processes[`worker:${EAST}`]!;
    const eastLogFrom = statSync(eastWorker.log).size;
    const eastLog = () => logSince(eastWorker.log, eastLogFrom);

    const moved = await failoverControlPlane(config, EAST);
    expect([moved.from, moved.to, moved.changed]).toEqual([WEST, EAST, true]);
    // West learns of the move by replication, seconds later; until then it may still take the run's
    // next workflow task itself. Approved once both say east, the run's next steps are east's.
    await waitFor(
      'both clusters to see the namespace active in east',
      async () =>
        (await Promise.all([WEST, EAST].map((r) => namespaceViewAt(config, endpointOf(config, r).address)))).every(
          (v) => v.active === EAST,
        ),
      30_000,
      200,
    );
    expect(await temporalAddressFor(config)).toBe(endpointOf(config, EAST).address);
    // East's worker renews its Workers for the move; the ones it replaces hold the lag wait, so
    // they keep running (stopping them would cancel it) until it ends.
    await waitFor(
      "east's worker to poll afresh",
      async () =>
        eastLog().includes(`worker: namespace default now active in ${EAST} (was ${WEST}): polling afresh`) ||
        undefined,
      30_000,
    );
    expect(eastLog()).not.toContain('worker: previous pollers stopped');
    await east.query('SELECT pg_wal_replay_resume()');
    await east.end();
    const onEast = await connect(config);
    // Every approval the run asks for from here on is given on east. Right after the failover the
    // new active cluster may still be applying what it was sent: retried.
    const signer = standInSigner(service, 'demo-oncall');
    const rec = await waitFor(
      'the run to finish on east',
      async () => {
        const handle = onEast.workflow.getHandle(workflowId, started.runId);
        if ((await handle.describe()).status.name !== 'RUNNING') return awaitRecord(onEast, workflowId, started.runId);
        const at = await handle.query<RunRecord>('progress');
        if (at.pendingApproval)
          await approveRun(
            onEast,
            workflowId,
            { decision: 'approve', by: 'demo-oncall', reason: 'test: planned move' },
            signer,
          );
        return undefined;
      },
      120_000,
      250,
    );
    expect(rec.status, JSON.stringify(rec.steps)).toBe('succeeded');

    const events = await history(onEast, workflowId, started.runId);
    expect(clusterOf(events[0]!)).toBe(WEST);
    expect(typeOf(events.at(-1)!)).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED');
    expect(clusterOf(events.at(-1)!)).toBe(EAST);
    // Each activity scheduled once and completed once: no step done twice across the move.
    const scheduled = events
      .filter((e) => typeOf(e) === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED')
      .map((e) => e.activityTaskScheduledEventAttributes?.activityId);
    const completed = events
      .filter((e) => typeOf(e) === 'EVENT_TYPE_ACTIVITY_TASK_COMPLETED')
      .map((e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId));
    expect(new Set(scheduled).size).toBe(scheduled.length);
    expect(new Set(completed).size).toBe(completed.length);
    expect(events.some((e) => typeOf(e) === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED' && clusterOf(e) === EAST)).toBe(true);
    // The lag wait and the promotion ran once, in their first attempt, across the renewal: not
    // cancelled, not retried.
    const lagScheduled = events.find(
      (e) =>
        typeOf(e) === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED' &&
        e.activityTaskScheduledEventAttributes?.activityType?.name === 'dbPromoteAfterLag',
    )!;
    const lagStarted = events.filter(
      (e) =>
        typeOf(e) === 'EVENT_TYPE_ACTIVITY_TASK_STARTED' &&
        String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(lagScheduled.eventId),
    );
    expect(lagStarted.map((e) => e.activityTaskStartedEventAttributes?.attempt)).toEqual([1]);
    expect(events.map(typeOf).filter((t) => /ACTIVITY_TASK_(FAILED|TIMED_OUT|CANCEL)/.test(t))).toEqual([]);
    // The Workers it replaced stopped once the lag wait was done, cleanly.
    await waitFor(
      "east's previous pollers to stop",
      async () => eastLog().includes('worker: previous pollers stopped') || undefined,
      30_000,
    );
    expect(eastLog()).not.toContain('did not stop cleanly');
    // The promotion happened once: east writes, west follows it.
    expect((await probePg(nodeOf(service, EAST))).role).toBe('primary');
    await Promise.all([onWest.connection.close(), onEast.connection.close()]);
  });

  it('the intake and the Slack bot follow the namespace when the cluster they talk to dies; the intake never moves a namespace whose active cluster answers', async () => {
    // The namespace went to east in the test before; the intake still talks to west, which forwards.
    expect(intakeClient!.address).toBe(endpointOf(config, WEST).address);
    expect(botClient!.address).toBe(endpointOf(config, WEST).address);
    const before = await namespaceViewAt(config, endpointOf(config, EAST).address);
    expect(before.active).toBe(EAST);
    await killCluster(WEST);
    try {
      // An alarm to deliver (resolved: it starts nothing), and the guardians' states on /metrics.
      expect(await postAlarm(ledgerPrimaryDown('resolved', WEST))).toBe(202);
      await intake!.journal.drained();
      expect(intakeClient!.address).toBe(endpointOf(config, EAST).address);
      const metrics = await (await fetch(`${intake!.server.url}/metrics`)).text();
      expect(metrics).toMatch(/regionshift_guardian_state\{/);
      expect(intake!.journal.stats()).toMatchObject({ pending: 0, forwarded: 1 });
      // The guardian read through the intake's client, now east's.
      const g = await intakeClient!.run((c) =>
        c.workflow.getHandle(guardianWorkflowId('ledger')).query<GuardianView>('state'),
      );
      expect(g.runsStarted).toBe(0);
      // The Slack bot, also connected to west at its start (its poller may have moved it first), answers from east.
      const said = await slash('status ledger');
      expect(said.status).toBe(200);
      expect(said.text).toContain('ledger');
      expect(said.text).not.toMatch(/Failed/);
      expect(botClient!.address).toBe(endpointOf(config, EAST).address);
      // The active cluster answered the intake: a dead passive one moves nothing.
      const after = await namespaceViewAt(config, endpointOf(config, EAST).address);
      expect([after.active, after.failoverVersion]).toEqual([EAST, before.failoverVersion]);
      expect(intakeLog.filter((l) => /control plane/.test(l))).toEqual([]);
    } finally {
      // West's cluster comes back (a standby of east), with anything else the kill stopped.
      await stackUp({ config, configFile: stack.configFile, home: stack.home });
    }
    await waitFor(
      'west to follow the namespace as a standby',
      async () =>
        (await namespaceViewAt(config, endpointOf(config, WEST).address).catch(() => undefined))?.active === EAST ||
        undefined,
      60_000,
    );
  }, 120_000);

  it('the writer region lost whole: the namespace fails over to the survivor and the unplanned run completes there; the region returns as a standby and catches up', async () => {
    // east writes and its cluster is active: lose all of it.
    const killed = await killRegion({ config, configFile: stack.configFile, home: stack.home }, service, EAST);
    expect(killed.temporal).toMatch(/SIGKILLed/);

    const r = await runCli(
      ['failover', '--service', 'ledger', '--to', WEST, '--from', EAST, '--mode', 'unplanned', '--control-plane', WEST],
      stack.env,
      240_000,
    );
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toContain(`control plane: namespace default failed over ${EAST} → ${WEST}`);
    expect(await temporalAddressFor(config)).toBe(endpointOf(config, WEST).address);

    const onWest = await connect(config);
    const workflowId = runWorkflowId('ledger');
    const desc = await onWest.workflow.getHandle(workflowId).describe();
    const rec = await awaitRecord(onWest, workflowId, desc.runId);
    expect([rec.status, rec.mode, rec.target]).toEqual(['succeeded', 'unplanned', WEST]);
    const events = await history(onWest, workflowId, desc.runId);
    expect(events.every((e) => clusterOf(e) === WEST)).toBe(true);
    expect(typeOf(events.at(-1)!)).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED');
    expect((await probePg(nodeOf(service, WEST))).role).toBe('primary');

    // east's cluster returns (its SQLite kept what it had): the namespace's standby, with the run.
    const state = readState(stack.home);
    const back = await upReplicated(
      config,
      state,
      stack.home,
      (name) => liveProcess(state, name),
      () => undefined,
    );
    expect(back.get(`temporal:${EAST}`)).toEqual({ action: 'started' });
    const west = await namespaceViewAt(config, endpointOf(config, WEST).address);
    await waitFor(
      'east to follow the namespace as a standby',
      async () => {
        const v = await namespaceViewAt(config, endpointOf(config, EAST).address);
        return v.active === WEST && v.failoverVersion === west.failoverVersion ? v : undefined;
      },
      60_000,
    );
    const { Connection, Client } = await import('@temporalio/client');
    const eastConn = await Connection.connect({ address: endpointOf(config, EAST).address });
    const onEastStandby = new Client({ connection: eastConn, namespace: 'default' });
    await waitFor(
      'the unplanned run replicated to east',
      async () => {
        const got = await history(onEastStandby, workflowId, desc.runId).catch(() => []);
        return got.length === events.length ? got : undefined;
      },
      60_000,
    );
    const r2 = await runCli(['stack', 'status', '--json'], stack.env);
    const s = JSON.parse(r2.stdout) as { components: Array<{ name: string; controlPlane?: string }> };
    expect(s.components.filter((c) => c.name.startsWith('temporal:')).map((c) => [c.name, c.controlPlane])).toEqual([
      [`temporal:${WEST}`, 'active'],
      [`temporal:${EAST}`, 'standby'],
    ]);
    await Promise.all([onWest.connection.close(), eastConn.close()]);
    // A region lost whole, failed over, then brought back and caught up: minutes when another
    // test file shares the two cores.
  }, 300_000);

  it('the writer region lost whole again, no operator: the intake with an alarm to deliver fails the namespace over to the first survivor, and the guardian runs the unplanned failover there', async () => {
    // East's worker log from here on: the planned move of the first test wrote the same lines.
    const eastWorker = readState(stack.home).processes[`worker:${EAST}`]!;
    const eastLogFrom = statSync(eastWorker.log).size;
    // A fresh pair after the test before: west writes, east streams from it; the namespace is active in west.
    const onWest = await connect(config, { address: endpointOf(config, WEST).address });
    await rebuildPair({ config, configFile: stack.configFile, home: stack.home }, onWest, service);
    await onWest.connection.close();
    expect((await probePg(nodeOf(service, EAST))).role).toBe('standby');
    const before = await namespaceViewAt(config, endpointOf(config, EAST).address);
    expect(before.active).toBe(WEST);

    const killed = await killRegion({ config, configFile: stack.configFile, home: stack.home }, service, WEST);
    expect(killed.temporal).toMatch(/SIGKILLed/);
    expect(await postAlarm(ledgerPrimaryDown('firing', WEST))).toBe(202);

    // The intake's own line once the move is made (after east says it is active).
    const line = await waitFor(
      'the intake to fail the namespace over to east',
      async () => intakeLog.find((l) => l.includes('control plane: namespace default failed over')),
      60_000,
      100,
    );
    expect(line).toMatch(new RegExp(`failed over ${WEST} → ${EAST} .*${WEST} silent \\d+ s with an alarm to deliver`));
    // It waited for the silence it was told to (3 s), saying so first.
    expect(intakeLog.find((l) => l.includes('does not answer; failing over to'))).toMatch(
      new RegExp(`cluster ${WEST} .* does not answer; failing over to ${EAST} if it stays silent`),
    );
    const moved = await namespaceViewAt(config, endpointOf(config, EAST).address);
    expect(moved.active).toBe(EAST);
    expect(moved.failoverVersion).toBeGreaterThan(before.failoverVersion);
    const journal = readFileSync(join(intakeDir!, 'journal.jsonl'), 'utf8');
    expect(journal).toContain(`"controlPlane":{"from":"${WEST}","to":"${EAST}"`);

    const onEast = await connect(config);
    const workflowId = runWorkflowId('ledger');
    const rec = await waitFor(
      'the guardian to start the unplanned failover on east and the run to finish',
      async () => {
        const desc = await onEast.workflow
          .getHandle(workflowId)
          .describe()
          .catch(() => undefined);
        const r =
          desc && desc.status.name !== 'RUNNING' ? await awaitRecord(onEast, workflowId, desc.runId) : undefined;
        if (r?.trigger.startsWith('alarm:')) return r;
        // Not yet: what there is, for the timeout's message.
        const g = await onEast.workflow
          .getHandle(guardianWorkflowId('ledger'))
          .query<GuardianView>('state')
          .then((v) =>
            v.decisions
              .slice(-3)
              .map((d) => `${d.kind}: ${d.detail}`)
              .join(' | '),
          )
          .catch((err: Error) => `not asked (${err.message})`);
        throw new Error(
          `run ${desc?.runId ?? 'none'} ${desc?.status.name ?? ''} ${r?.trigger ?? ''}; guardian: ${g}; journal: ${JSON.stringify(intake!.journal.stats())}`,
        );
      },
      180_000,
      500,
    );
    expect([rec.status, rec.mode, rec.target, rec.trigger]).toEqual([
      'succeeded',
      'unplanned',
      EAST,
      'alarm:alertmanager:LedgerPrimaryDown',
    ]);
    const events = await history(onEast, workflowId, rec.runId);
    expect(events.every((e) => clusterOf(e) === EAST)).toBe(true);
    expect((await probePg(nodeOf(service, EAST))).role).toBe('primary');
    await onEast.connection.close();

    // East's worker saw the namespace arrive and polled afresh rather than wait out the backoff
    // its failed polls had put it in; the pollers it replaced stopped once they held nothing.
    const workerLog = () => logSince(eastWorker.log, eastLogFrom);
    expect(workerLog()).toContain(`worker: namespace default now active in ${EAST} (was ${WEST}): polling afresh`);
    await waitFor(
      "east's previous pollers to stop",
      async () => workerLog().includes('worker: previous pollers stopped') || undefined,
      30_000,
    );
    expect(workerLog()).not.toContain('did not stop cleanly');
  }, 300_000);
});
