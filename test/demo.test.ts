// `regionshift demo --json` end to end on a throw-away four-region local stack (us-west-2 40,
// us-east-1 30, eu-west-1 20, ap-southeast-1 10): planned failovers away and back under write load
// lose nothing and every standby follows the writer; ap-southeast-1 (not the writer) is killed,
// drained, brought back and undrained with the records exactly as before; the home region is
// killed and the unplanned failover brings writes back in the other region; the home region
// returns, reconciliation accounts for every write it acknowledged, failback brings the service
// home with zero loss and the original traffic; and the one JSON object says all of it. The stack
// runs its monitoring and the shipped config's triggers: the drain, the undrain and the unplanned
// failover are started by the guardian from the alerts, never by the demo. The stack runs the
// demo's banking application, and the ledger's own runbooks (the shipped runbooks/ledger-*.yaml,
// on this stack's port) tell it the new primary: after every run its writes are in the writer.
// Then the demo once more on a replicated control plane (two regions, one Temporal cluster each):
// the home region's cluster dies with it, and the stack's own intake fails the namespace over
// before the guardian can start the unplanned failover.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shippedLedgerTriggers } from '../src/stack/temp';
import { killLeftovers, makeTempStack, processesOf, runCli, type CliResult, type TempStack } from './support/stack-env';

interface Step {
  id: string;
  status: string;
  startedAt: string | null;
  endedAt: string | null;
}
interface DemoRegion {
  region: string;
  role: string;
  streamingFrom?: string;
}
interface Detection {
  killedAt: string;
  runStartedAt: string;
  detectedMs: number;
  rtoFromKillMs: number | null;
}
interface AppFollow {
  primary: string;
  toldWith: string | null;
  lastWrite: { id: string; region: string } | null;
  inWriter: boolean;
}
interface Run {
  runId: string;
  workflowId: string;
  mode: string;
  requestedBy: string;
  trigger: string;
  detection: Detection | null;
  source: string;
  target: string;
  status: string;
  steps: Step[];
  rtoMs: number;
  clientRtoMs: number | null;
  lostWrites: number;
  writesAcked: number;
  approvals: { stepId: string; by: string; decision: string }[];
  regionsAfter: DemoRegion[];
  app: AppFollow | null;
  uiUrl: string;
}
interface Drain {
  runId: string;
  workflowId: string;
  kind: string;
  region: string;
  status: string;
  writer: string | null;
  requestedBy: string;
  trigger: string;
  detection: Detection | null;
  steps: Step[];
  trafficBefore: Record<string, number | string>;
  trafficAfter: Record<string, number | string>;
  regionsAfter: DemoRegion[];
  uiUrl: string;
}
interface Reconciliation {
  status: string;
  oldRegion: string;
  newRegion: string;
  transactions: Record<string, number>;
  rows: Record<string, number>;
  transactionsReapplied: number;
  entriesReapplied: number;
  casesOpened: number;
  casesOpen: number;
  casesResolved: unknown[];
  verified: boolean;
  missingBefore: number;
  missingAfter: number;
  steps: Step[];
}
interface Failback {
  status: string;
  source: string;
  target: string;
  rpo: { lostWrites: number; writesAcked: number; zeroLoss: boolean };
  trafficBefore: Record<string, number | string>;
  trafficAfter: Record<string, number | string>;
  override: unknown;
  regionsAfter: DemoRegion[];
  app: AppFollow | null;
  runId: string;
  steps: (Step & { detail?: string })[];
}
interface Component {
  name: string;
  health: string;
  role?: string;
}

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const EU = 'eu-west-1';
const AP = 'ap-southeast-1';
const REGIONS = [WEST, EAST, EU, AP];
const WEIGHTS = { [WEST]: 40, [EAST]: 30, [EU]: 20, [AP]: 10 };
// The reference design's records: EU clients by geolocation, in front of the weights (traffic keys of the service).
const EU_FRONT = `      geolocation: [{ location: { continent: EU }, region: ${EU} }]\n      weightedRecordName: weighted.ledger.regionshift.test.`;
const PLANNED_STEPS = [
  'preflight',
  'fence',
  'confirm-lag',
  'promote',
  'tell-app',
  'shift-traffic',
  'verify',
  'repoint-standbys',
  'rejoin',
];

/** Every region that is up is the writer or streams from it. */
function expectFollowing(regions: DemoRegion[], writer: string, what: string): void {
  expect(regions.map((r) => r.region).sort(), what).toEqual([...REGIONS].sort());
  for (const r of regions) {
    if (r.region === writer) expect(r, `${what}: the writer`).toMatchObject({ role: 'primary' });
    else if (r.role !== 'down')
      expect(r, `${what}: ${r.region}`).toMatchObject({ role: 'standby', streamingFrom: writer });
  }
}

let stack: TempStack;
let demo: CliResult;
let runs: Run[];
let drains: Drain[];
let reconciliations: Reconciliation[];
let failback: Failback;
let backInService: Drain | null;

function show(r: CliResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

function isIso(s: string | null): boolean {
  return typeof s === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(s) && new Date(s).toISOString() === s;
}

beforeAll(async () => {
  const shipped = shippedLedgerTriggers();
  stack = await makeTempStack({
    regions: REGIONS,
    weights: WEIGHTS,
    monitoring: true,
    app: true,
    policy: shipped.policy,
    serviceExtra: `${EU_FRONT}\n${shipped.serviceExtra}`,
  });
  demo = await runCli(['demo', '--json'], stack.env, 420_000);
  try {
    ({ runs, drains, reconciliations, failback, backInService } = JSON.parse(demo.stdout) as {
      runs: Run[];
      drains: Drain[];
      reconciliations: Reconciliation[];
      failback: Failback;
      backInService: Drain | null;
    });
  } catch {
    throw new Error(`demo --json did not print one JSON object:\n${show(demo)}`);
  }
}, 440_000);

afterAll(async () => {
  if (!stack) return;
  const down = await runCli(['stack', 'down'], stack.env);
  const left = await killLeftovers(stack);
  if (left.length)
    console.error(`demo test: killed leftovers after \`stack down\` (${show(down)}):\n${left.join('\n')}`);
  stack.remove();
});

describe('regionshift demo --json', () => {
  it('prints exactly one JSON object on stdout and exits 0', () => {
    expect(demo.code, show(demo)).toBe(0);
    expect(demo.stdout.trim().split('\n'), 'stdout holds one line of JSON').toHaveLength(1);
    expect(demo.stderr).toContain(`Temporal UI: http://127.0.0.1:${stack.uiPort}`);
    expect(runs.map((r) => r.mode)).toEqual(['planned', 'planned', 'unplanned']);
  });

  it('planned failover us-west-2 → us-east-1 under load: succeeded, no acknowledged write lost, every standby follows us-east-1', () => {
    const planned = runs[0]!;
    expect(planned).toMatchObject({
      mode: 'planned',
      source: WEST,
      target: EAST,
      status: 'succeeded',
      lostWrites: 0,
      requestedBy: 'demo',
      trigger: 'demo',
      detection: null,
    });
    expect(planned.writesAcked, 'the load wrote through us-west-2 before the failover').toBeGreaterThan(0);
    expect(planned.rtoMs).toBeGreaterThan(0);
    expect(planned.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual(PLANNED_STEPS);
    expectFollowing(planned.regionsAfter, EAST, 'after the planned failover');
    expect(
      planned.regionsAfter.every((r) => r.role !== 'down'),
      'all four databases up',
    ).toBe(true);
  });

  it('planned failover back us-east-1 → us-west-2 under load: succeeded, no acknowledged write lost, every standby follows us-west-2', () => {
    const back = runs[1]!;
    expect(back).toMatchObject({ mode: 'planned', source: EAST, target: WEST, status: 'succeeded', lostWrites: 0 });
    expect(back.writesAcked, 'the load wrote through us-east-1 in between').toBeGreaterThan(0);
    expect(back.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual(PLANNED_STEPS);
    expectFollowing(back.regionsAfter, WEST, 'after the planned failover back');
  });

  it('ap-southeast-1 lost: drained by the guardian from the alerts to the others by their weights, the writer untouched; back and undrained to the records exactly as before', () => {
    expect(drains.map((d) => [d.kind, d.region, d.status])).toEqual([
      ['drain', AP, 'succeeded'],
      ['undrain', AP, 'succeeded'],
    ]);
    const [drain, undrain] = drains as [Drain, Drain];
    expect(drain.writer).toBe(WEST);
    // Nobody started either: the drain came from the probe alerts, the undrain from the guardian's health clock.
    expect(drain.requestedBy).toBe('guardian');
    expect(drain.trigger).toMatch(/^alarm:alertmanager:RegionshiftEndpointUnreachable$/);
    expect(drain.detection!.detectedMs, 'the drain started after the kill, once the alerts agreed').toBeGreaterThan(0);
    expect(undrain).toMatchObject({ requestedBy: 'guardian', trigger: `health:${AP}` });
    // A failover moves traffic away from its source (docs/traffic.md): away and back leaves
    // us-east-1's 30 spread over 40/20/10 by largest remainder, 57/0/29/14.
    // EU clients stay on eu-west-1 throughout, by geolocation in front of the weights.
    expect(drain.trafficBefore).toEqual({ [WEST]: 57, [EAST]: 0, [EU]: 29, [AP]: 14, 'continent:EU': EU });
    // ap-southeast-1's 14 over 57/29: 9.28 and 4.72 → 9 + 5 (the larger remainder takes the odd one).
    expect(drain.trafficAfter).toEqual({ [WEST]: 66, [EAST]: 0, [EU]: 34, [AP]: 0, 'continent:EU': EU });
    expect(drain.regionsAfter.find((r) => r.region === AP)?.role, 'ap-southeast-1 was down while drained').toBe('down');
    expectFollowing(drain.regionsAfter, WEST, 'while ap-southeast-1 is drained');
    expect(undrain.trafficBefore).toEqual(drain.trafficAfter);
    expect(undrain.trafficAfter).toEqual(drain.trafficBefore);
    expectFollowing(undrain.regionsAfter, WEST, 'after the undrain');
    expect(
      undrain.regionsAfter.find((r) => r.region === AP),
      'ap-southeast-1 back as a standby',
    ).toMatchObject({ role: 'standby', streamingFrom: WEST });
    for (const d of drains)
      expect(d.uiUrl).toBe(
        `http://127.0.0.1:${stack.uiPort}/namespaces/default/workflows/${d.workflowId}/${d.runId}/history`,
      );
  });

  it('unplanned failover from the killed us-west-2 to us-east-1: started by the guardian from the alerts, approved by the demo on-call, RTO from the kill including detection', () => {
    const unplanned = runs[2]!;
    expect(unplanned).toMatchObject({
      mode: 'unplanned',
      source: WEST,
      target: EAST,
      status: 'succeeded',
      requestedBy: 'guardian',
    });
    // Started by the alert path: Prometheus's probe alert, through Alertmanager and the intake.
    expect(unplanned.trigger).toMatch(/^alarm:alertmanager:RegionshiftEndpointUnreachable$/);
    // The RTO counts from the failure, so it holds the detection (kill → the guardian's run started) …
    const d = unplanned.detection!;
    expect(d.detectedMs, 'the run started after the kill').toBeGreaterThan(0);
    expect(unplanned.rtoMs).toBeGreaterThan(d.detectedMs);
    // … and is within a second of kill → writes verified (the alert's last good probe is up to a
    // scrape before the kill; the step's end is stamped a workflow task after the RTO is taken).
    expect(d.rtoFromKillMs).not.toBeNull();
    expect(Math.abs(unplanned.rtoMs - d.rtoFromKillMs!)).toBeLessThan(1_500);
    // Replication was cut a second before the kill: what us-west-2 acknowledged since is not in us-east-1.
    expect(unplanned.lostWrites).toBeGreaterThan(0);
    expect(unplanned.lostWrites).toBeLessThanOrEqual(unplanned.writesAcked);
    expect(unplanned.writesAcked, 'the load wrote through us-west-2 before the kill').toBeGreaterThan(0);
    expect(unplanned.clientRtoMs, 'writes were accepted in us-east-1 after the failover').not.toBeNull();
    // The policy gate and the data-loss gate (the dead region could not be fenced).
    expect(unplanned.approvals.map((a) => [a.stepId, a.by, a.decision])).toEqual([
      ['approval', 'demo-oncall', 'approve'],
      ['promote', 'demo-oncall', 'approve'],
    ]);
    expect(unplanned.steps.find((s) => s.id === 'fence-on-return')?.status).toBe('done');
    expect(unplanned.steps.find((s) => s.id === 'repoint-standbys')?.status).toBe('done');
    expect(unplanned.regionsAfter.find((r) => r.region === WEST)?.role, 'us-west-2 is dead').toBe('down');
    expectFollowing(unplanned.regionsAfter, EAST, 'after the unplanned failover');
  });

  it('reconciliation: counts per class, entries re-applied, cases opened; no acknowledged write unaccounted for', () => {
    expect(reconciliations).toHaveLength(1);
    const rc = reconciliations[0]!;
    expect(rc).toMatchObject({
      status: 'succeeded',
      oldRegion: WEST,
      newRegion: EAST,
      verified: true,
      missingAfter: 0,
    });
    expect(rc.steps.map((s) => [s.id, s.status])).toEqual([
      ['preserve', 'done'],
      ['classify', 'done'],
      ['apply', 'done'],
      ['verify', 'done'],
      ['report', 'done'],
    ]);
    expect(Object.keys(rc.transactions).sort()).toEqual([
      'identical',
      'only-new',
      'only-old',
      'replicated',
      'same-id-different-payload',
    ]);
    expect(Object.keys(rc.rows).length).toBeGreaterThan(0);
    // Every write us-west-2 acknowledged that us-east-1 lacked is one reconciliation found lost.
    expect(rc.transactions['only-old']).toBeGreaterThanOrEqual(rc.missingBefore);
    expect(rc.missingBefore).toBe(runs[2]!.lostWrites);
    expect(rc.transactionsReapplied + rc.casesOpened).toBeGreaterThanOrEqual(rc.transactions['only-old']!);
    expect(rc.transactionsReapplied).toBeGreaterThan(0);
    expect(rc.entriesReapplied).toBe(2 * rc.transactionsReapplied);
    expect(rc.casesOpened).toBe(rc.casesResolved.length);
  });

  it('failback to us-west-2: zero RPO, traffic as before the failover', () => {
    expect(failback).toMatchObject({ status: 'succeeded', source: EAST, target: WEST, override: null });
    expect(failback.rpo).toMatchObject({ lostWrites: 0, zeroLoss: true });
    expect(failback.rpo.writesAcked, 'the load wrote through us-east-1 during the failback').toBeGreaterThan(0);
    expect(failback.trafficAfter).toEqual(failback.trafficBefore);
    expect(failback.trafficAfter, 'as the undrain left them').toEqual(drains[1]!.trafficAfter);
    expect(failback.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual([
      'check-reconciliation',
      'preflight',
      'rejoin-old-primary',
      'fence',
      'confirm-lag',
      'promote',
      'tell-app',
      'restore-traffic',
      'verify',
      'repoint-standbys',
      'rejoin',
    ]);
    expectFollowing(failback.regionsAfter, WEST, 'after the failback');
    expect(
      failback.regionsAfter.every((r) => r.role !== 'down'),
      'all four databases up',
    ).toBe(true);
  });

  it('us-east-1, left without traffic by the records the failback restored, undrained by the on-call to the configured shares', () => {
    expect(failback.trafficAfter[EAST]).toBe(0);
    expect(backInService).toMatchObject({
      kind: 'undrain',
      region: EAST,
      status: 'succeeded',
      writer: WEST,
      requestedBy: 'demo',
      trafficBefore: failback.trafficAfter,
      trafficAfter: { ...WEIGHTS, 'continent:EU': EU },
    });
    expect(backInService!.steps.find((s) => s.id === 'undrain')).toMatchObject({ status: 'done' });
    expect(demo.stderr).toContain(`us-east-1 back into service: the records the failback restored give it no traffic`);
  });

  it("the banking application follows every run: told by its tell-app step with the run's Idempotency-Key, its last write in the new writer's database", () => {
    const moves = [...runs.map((r) => [r, r.source] as const), [failback, EAST] as const];
    expect(moves.map(([r]) => r.target)).toEqual([EAST, WEST, EAST, WEST]);
    for (const [run, from] of moves) {
      const what = `${from} → ${run.target} (${run.runId})`;
      expect(run.app, what).toEqual({
        primary: run.target,
        toldWith: `regionshift:${run.runId}:tell-app`,
        lastWrite: { id: expect.any(String), region: run.target },
        inWriter: true,
      });
      // Told from a control worker, so the dead us-west-2 of the unplanned run could not stop it.
      expect(
        (run.steps as (Step & { detail?: string })[]).find((s) => s.id === 'tell-app'),
        what,
      ).toMatchObject({ status: 'done', detail: `POST → 200: now writing to ${run.target} (was ${from})` });
    }
  });

  it('the application answers a repeated Idempotency-Key with its first answer and does not move back', async () => {
    const url = `http://127.0.0.1:${stack.appPort}`;
    const first = runs[0]!;
    const again = await fetch(`${url}/primary`, {
      method: 'POST',
      headers: { 'Idempotency-Key': `regionshift:${first.runId}:tell-app`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ primary: EAST, run: first.runId }),
    });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.text()).toBe(`now writing to ${EAST} (was ${WEST})\n`);
    const status = (await (await fetch(`${url}/status`)).json()) as {
      primary: string;
      told: { key: string; primary: string; run?: string }[];
    };
    expect(status.primary, 'still where the failback left it').toBe(WEST);
    expect(status.told.map((t) => [t.primary, t.run])).toEqual([
      [EAST, runs[0]!.runId],
      [WEST, runs[1]!.runId],
      [EAST, runs[2]!.runId],
      [WEST, failback.runId],
    ]);
    const noKey = await fetch(`${url}/primary`, { method: 'POST', body: JSON.stringify({ primary: EAST }) });
    expect([noKey.status, await noKey.text()]).toEqual([400, 'an Idempotency-Key header is required\n']);
    const unknown = await fetch(`${url}/primary`, {
      method: 'POST',
      headers: { 'Idempotency-Key': 'test:unknown-region' },
      body: JSON.stringify({ primary: 'mars-1' }),
    });
    expect([unknown.status, await unknown.text()]).toEqual([
      422,
      `primary "mars-1" is not a region of ledger (${REGIONS.join(', ')})\n`,
    ]);
  });

  it("every run carries its id, steps with ISO timestamps, and its page in this stack's Temporal UI", () => {
    for (const run of [...runs, ...drains, ...reconciliations, failback] as Run[]) {
      expect(run.runId).toMatch(/^[0-9a-f-]{36}$/);
      expect(run.uiUrl).toBe(
        `http://127.0.0.1:${stack.uiPort}/namespaces/default/workflows/${run.workflowId}/${run.runId}/history`,
      );
      expect(run.steps.length).toBeGreaterThan(0);
      for (const step of run.steps) {
        expect(step).toHaveProperty('id');
        expect(step).toHaveProperty('status');
        if (step.status === 'skipped') continue;
        expect(isIso(step.startedAt), `${run.mode} ${step.id} startedAt ${step.startedAt}`).toBe(true);
        expect(isIso(step.endedAt), `${run.mode} ${step.id} endedAt ${step.endedAt}`).toBe(true);
      }
    }
  });

  it('leaves the stack running as it started: us-west-2 primary, the three others its streaming standbys, four workers', async () => {
    const r = await runCli(['stack', 'status', '--json'], stack.env);
    const components = (JSON.parse(r.stdout) as { components: Component[] }).components;
    const c = (name: string) => components.find((x) => x.name === name);
    expect(c(`postgres:ledger:${WEST}`)).toMatchObject({ health: 'up', role: 'primary' });
    for (const region of [EAST, EU, AP])
      expect(c(`postgres:ledger:${region}`), region).toMatchObject({ health: 'up', role: 'standby' });
    for (const region of REGIONS) expect(c(`worker:${region}`)?.health, `worker:${region}`).toBe('up');
    expect(c('temporal')?.health).toBe('up');
    expect(c('app:ledger')).toMatchObject({ health: 'up', detail: `writing to ${WEST}` });
  });

  it('stack down stops everything of ours', async () => {
    const down = await runCli(['stack', 'down'], stack.env);
    expect(down.code, show(down)).toBe(0);
    // The killed worker may linger as a zombie for a moment; processesOf skips zombies.
    expect(processesOf(stack)).toEqual([]);
    for (const region of REGIONS) {
      const pidFile = `${stack.pg[region]!.dataDir}/postmaster.pid`;
      expect(() => readFileSync(pidFile), `${region} postmaster.pid`).toThrow();
    }
  });
});

describe('regionshift demo --json on a replicated control plane (two regions, a Temporal cluster each)', () => {
  let rs: TempStack;
  let out: CliResult;
  let result: { ok: boolean; runs: Run[]; failback: Failback };

  beforeAll(async () => {
    const shipped = shippedLedgerTriggers();
    rs = await makeTempStack({
      regions: [WEST, EAST],
      weights: { [WEST]: 60, [EAST]: 40 },
      monitoring: true,
      app: true,
      policy: shipped.policy,
      serviceExtra: shipped.serviceExtra,
      controlPlane: 'replicated',
    });
    delete rs.env.TEMPORAL_ADDRESS;
    // The intake moves the namespace after 10 s of silence instead of the default 60 s: the test's time.
    const yaml = readFileSync(rs.configFile, 'utf8').replace(
      /^(temporal: \{.*) \}$/m,
      '$1, controlPlaneFailoverAfter: 10s }',
    );
    writeFileSync(rs.configFile, yaml);
    out = await runCli(['demo', '--json'], rs.env, 420_000);
    try {
      result = JSON.parse(out.stdout) as typeof result;
    } catch {
      throw new Error(`demo --json did not print one JSON object:\n${show(out)}`);
    }
  }, 440_000);

  afterAll(async () => {
    if (!rs) return;
    await runCli(['stack', 'down'], rs.env);
    await killLeftovers(rs);
    rs.remove();
  }, 150_000);

  it('runs start to finish: the intake fails the namespace over, the guardian fails the ledger over, failback loses nothing', async () => {
    expect(out.code, show(out)).toBe(0);
    expect(result.ok).toBe(true);
    expect(out.stderr).toMatch(/temporal: process group \d+ SIGKILLed/);
    const unplanned = result.runs.find((r) => r.mode === 'unplanned')!;
    expect(unplanned).toMatchObject({
      status: 'succeeded',
      source: WEST,
      target: EAST,
      trigger: 'alarm:alertmanager:RegionshiftEndpointUnreachable',
    });
    expect(result.failback).toMatchObject({ status: 'succeeded', target: WEST, rpo: { lostWrites: 0 } });
    // The stack's intake, not the demo or a person, moved the namespace to the surviving cluster.
    const intakeLog = readFileSync(join(rs.home, 'logs', 'intake.log'), 'utf8');
    expect(intakeLog).toMatch(
      new RegExp(`intake: control plane: namespace default failed over ${WEST} → ${EAST} .*with an alarm to deliver`),
    );
    // Its worker (the SDK's metrics, the health watchers' activities) went to the cluster its calls follow.
    expect(intakeLog).toMatch(/intake: its worker now polls 127\.0\.0\.1:\d+, the cluster its calls follow/);
    const cp = await runCli(['control-plane', 'status', '--json'], rs.env);
    expect(
      (JSON.parse(cp.stdout) as { clusters: Array<{ region: string; up: boolean; active: string }> }).clusters.map(
        (c) => [c.region, c.up, c.active],
      ),
    ).toEqual([
      [WEST, true, EAST],
      [EAST, true, EAST],
    ]);
  });
});
