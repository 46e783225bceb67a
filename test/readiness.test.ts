// Failover readiness on real parts: a PostgreSQL writer and streaming standby, a worker per
// region, Route 53 in moto, and the service's Temporal Schedule running the evaluation, which runs
// the failover runbook dry toward each possible target. A healthy pair passes, per target too; a
// stopped standby fails it, the evaluation naming the standby and the refused preflight; restarted,
// it passes again; a region whose worker is down fails its target. Also: the judgement itself on
// observed topologies (lag over budget, residency, approvers who cannot approve).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDecisionActivities } from '../activities/approvals';
import { start, stop } from '../src/lib/postgres/node';
import {
  approversCheck,
  evaluateReadiness,
  type ApprovalNeed,
  type ReadinessEvaluation,
  type ReadinessInput,
} from '../src/contract/readiness';
import type { RunRecord } from '../src/contract/runbook/types';
import { latestReadiness, readinessScheduleId, recordedReadiness } from '../src/lib/readiness';
import { formatReadiness, readinessPredates } from '../src/present/readiness';
import type { Service } from '../src/lib/config/schema';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { createFailoverEnv, runbookFromText, SERVICE, type FailoverEnv } from './support/failover-env';
import { runCli } from './support/stack-env';
import { sshKey } from './support/signing';
import { waitFor } from './support/wait';

const WEST = 'us-west-2';
const EAST = 'us-east-1';

describe('readiness schedule on a live pair', () => {
  let fe: FailoverEnv;
  let service: Service;
  beforeAll(async () => {
    // Planned failovers need an approver here, so the approvers check has someone to find.
    fe = await createFailoverEnv({ rpoBudgetSeconds: 5, approval: { planned: 'required', unplanned: 'required' } });
    service = fe.config.services.find((s) => s.name === SERVICE)!;
  });
  afterAll(async () => {
    await fe?.teardown();
  });

  it('a healthy pair passes: the writer, a streaming standby within budget, the records, a target', async () => {
    const e = await latestReadiness(fe.client, fe.config, service, { now: true });
    expect(e.status, formatReadiness(e)).toBe('pass');
    expect(e.targets).toEqual([EAST]);
    expect(e.checks.find((c) => c.check === 'writer')).toMatchObject({ region: WEST, status: 'pass' });
    expect(e.checks.find((c) => c.check === 'standby')).toMatchObject({ region: EAST, status: 'pass' });
    // The one possible target, by its own dry run: the failover's preflight and plan toward it.
    expect(e.perTarget?.map((t) => [t.region, t.status, t.mode])).toEqual([[EAST, 'pass', 'planned']]);
    const east = e.perTarget![0]!;
    expect(east.checks.find((c) => c.check === 'preflight')?.detail).toBe(
      `a planned failover's preflight passes: writer ${WEST}, target ${EAST} standby streaming`,
    );
    expect(east.checks.find((c) => c.check === 'worker')?.detail).toBe(`the workers of ${WEST}, ${EAST} answer`);
    expect(east.checks.find((c) => c.check === 'approvers')?.detail).toBe(
      'planned failovers need 1 approver (policy.approval.planned: required): carol (ssh) can approve',
    );
    expect(east.plan?.filter((s) => !s.skip).map((s) => `${s.id}@${s.region ?? 'control'}`)).toEqual([
      'preflight@control',
      'approval@control',
      `fence@${WEST}`,
      `confirm-lag@${EAST}`,
      `promote@${EAST}`,
      `shift-traffic@${EAST}`,
      `verify@${EAST}`,
      `rejoin@${WEST}`,
    ]);
    // The dry run is a run of its own to open in the UI, marked as one so nothing follows or counts it as the service's.
    const dry = await fe.client.workflow.getHandle(east.dryRun!.workflowId, east.dryRun!.runId).describe();
    expect(dry.searchAttributes).toMatchObject({ RegionshiftMode: ['dry-run'], RegionshiftTarget: [EAST] });
    // The schedule exists, runs every readiness.every, and its latest action is this evaluation.
    const desc = await fe.client.schedule.getHandle(readinessScheduleId(SERVICE)).describe();
    expect(desc.spec.intervals?.[0]?.every).toBe(30 * 60_000);
    expect(await latestReadiness(fe.client, fe.config, service)).toEqual(e);
    // What `regionshift status` shows: the last evaluation, without asking for a new one; none for a service with no schedule.
    expect(await recordedReadiness(fe.client, SERVICE)).toEqual(e);
    expect(await recordedReadiness(fe.client, 'no-such-service')).toBeUndefined();
  });

  it('a run of the service that ended after the last evaluation makes the next one fresh; status says the old one is from before the run', async () => {
    const recorded = await latestReadiness(fe.client, fe.config, service);
    // A real run of the service (its preflight only): it could have moved the writer.
    const input = fe.input(
      { target: EAST },
      runbookFromText('kind: failover\nsteps:\n  - { id: preflight, action: preflight }\n'),
    );
    const started = await startRun(fe.client, input);
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('succeeded');

    const configFile = join(mkdtempSync(join(tmpdir(), 'regionshift-readiness-')), 'regionshift.yaml');
    writeFileSync(configFile, stringify(fe.config));
    const status = await runCli(['status', SERVICE, '--config', configFile], process.env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(
      `\nreadiness (from before this run ended; a fresh one: regionshift readiness --service ${SERVICE}): ${SERVICE}: PASS (evaluated ${recorded.at})`,
    );

    const fresh = await latestReadiness(fe.client, fe.config, service);
    expect(Date.parse(fresh.at)).toBeGreaterThan(Date.parse(rec.endedAt!));
    // Nothing ran since that one: asked again, it is the one recorded, and status shows it plainly.
    expect(await latestReadiness(fe.client, fe.config, service)).toEqual(fresh);
    const after = await runCli(['status', SERVICE, '--config', configFile], process.env);
    expect(after.stdout).toContain(`\nreadiness: ${SERVICE}: PASS (evaluated ${fresh.at})`);
    rmSync(dirname(configFile), { recursive: true, force: true });
  });

  it('a stopped standby fails the evaluation, naming it; restarted, the evaluation passes again', async () => {
    await stop(fe.pg.bin, fe.pg.standby, 'fast');
    const down = await latestReadiness(fe.client, fe.config, service, { now: true });
    expect(down.status, formatReadiness(down)).toBe('fail');
    const failed = down.checks.filter((c) => c.status === 'fail');
    expect(failed.find((c) => c.region === EAST)?.detail).toMatch(/^us-east-1's database is unreachable: /);
    expect(failed.find((c) => c.check === 'targets')?.detail).toBe(`no region a failover from ${WEST} could go to`);
    expect(down.targets).toEqual([]);
    const east = down.perTarget!.find((t) => t.region === EAST)!;
    expect(east.status).toBe('fail');
    expect(east.checks.find((c) => c.check === 'preflight')?.detail).toMatch(
      /^a planned failover to us-east-1 would be refused: target us-east-1 is unreachable: /,
    );
    expect(formatReadiness(down)).toContain('ledger: FAIL');
    expect(formatReadiness(down)).toContain('  to us-east-1: FAIL (planned dry run regionshift-readiness-ledger-');

    await start(fe.pg.bin, fe.pg.standby);
    // Back up, it reconnects to the writer within a moment: the evaluation says when it streams.
    const up = await waitFor(
      'the restarted standby to pass',
      async () => {
        const e = await latestReadiness(fe.client, fe.config, service, { now: true });
        return e.status === 'pass' ? e : undefined;
      },
      30_000,
      500,
    );
    expect(up.targets).toEqual([EAST]);
    expect(up.checks.filter((c) => c.status !== 'pass')).toEqual([]);
    expect(up.perTarget?.flatMap((t) => t.checks).filter((c) => c.status !== 'pass')).toEqual([]);
  });

  it("the control worker loads each approver's keys as it would to verify a decision", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'regionshift-readiness-keys-'));
    try {
      writeFileSync(join(dir, 'erin.pub'), `# erin's laptop\n${sshKey('erin').publicKey}\n`);
      const config = structuredClone(fe.config);
      config.services[0]!.policy.approvers = [
        { name: 'carol', sshKeys: [sshKey('carol').publicKey] },
        { name: 'erin', sshKeys: [], sshKeysFile: join(dir, 'erin.pub') },
        { name: 'dave', sshKeys: [], sshKeysFile: join(dir, 'dave.pub') },
      ];
      const report = await createDecisionActivities(config, { slackDecisionKey: '' }).checkApprovers({
        service: SERVICE,
      });
      expect(report).toEqual({
        ssh: [
          { name: 'carol', keys: 1 },
          { name: 'erin', keys: 1 },
          { name: 'dave', keys: 0, error: `cannot read sshKeysFile ${join(dir, 'dave.pub')} (ENOENT)` },
        ],
        slack: { planned: [], unplanned: [] },
        slackKey: false,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a region whose worker is down fails its target, naming the worker', async () => {
    await fe.stopRegion(EAST);
    try {
      const e = await latestReadiness(fe.client, fe.config, service, { now: true });
      expect(e.status).toBe('fail');
      const east = e.perTarget!.find((t) => t.region === EAST)!;
      expect(east.checks.find((c) => c.check === 'worker')).toMatchObject({ region: EAST, status: 'fail' });
      expect(east.checks.find((c) => c.check === 'worker')?.detail).toMatch(
        /^us-east-1's worker did not answer \(.*\)$/,
      );
      expect(east.checks.find((c) => c.check === 'preflight')?.status).toBe('fail');
    } finally {
      await fe.startRegion(EAST);
    }
  });
});

describe('an evaluation and the run shown above it', () => {
  const e = { at: '2026-12-05T13:00:00.000Z' } as ReadinessEvaluation;
  const run = (extra: Partial<RunRecord>) => ({ dryRun: false, ...extra }) as RunRecord;
  it('predates a run that ended after it or still runs; not one that ended before it, nor a dry run', () => {
    expect(readinessPredates(e, run({ endedAt: '2026-12-05T13:00:01.000Z' }))).toBe(true);
    expect(readinessPredates(e, run({}))).toBe(true);
    expect(readinessPredates(e, run({ endedAt: '2026-12-05T12:59:59.000Z' }))).toBe(false);
    expect(readinessPredates(e, run({ dryRun: true, endedAt: '2026-12-05T13:00:01.000Z' }))).toBe(false);
  });
});

describe('the judgement', () => {
  const input: ReadinessInput = {
    service: 'ledger',
    regions: [WEST, EAST, 'eu-west-1'],
    rpoBudgetSeconds: 5,
    residency: { class: 'us', allowedRegions: ['us-*'], allowOutside: false },
    endpoints: { [WEST]: 'db.w.', [EAST]: 'db.e.', 'eu-west-1': 'db.eu.' },
  };
  const traffic = {
    state: {
      recordName: 'ledger.',
      records: [WEST, EAST, 'eu-west-1'].map((r, i) => ({
        region: r,
        target: ['db.w.', 'db.e.', 'db.eu.'][i]!,
        weight: 1,
        ttl: 5,
      })),
    },
  };
  const writer = { region: WEST, reachable: true, role: 'primary' as const, lsn: '0/3000100' };
  const standby = (region: string, lagMs: number) => ({
    region,
    reachable: true,
    role: 'standby' as const,
    lsn: '0/3000000',
    receivedLsn: '0/3000100',
    streamingFrom: '127.0.0.1:1',
    lastHeardFromPrimaryAt: new Date(10_000 + lagMs).toISOString(),
    lastReplayedCommitAt: new Date(10_000).toISOString(),
  });

  it('lag over the budget fails that standby; residency keeps eu-west-1 out of the targets', () => {
    const e = evaluateReadiness(input, [writer, standby(EAST, 9_000), standby('eu-west-1', 100)], traffic, 0);
    expect(e.status).toBe('fail');
    expect(e.checks.find((c) => c.region === EAST)).toMatchObject({
      check: 'lag',
      status: 'fail',
      detail: 'us-east-1 replays 9.0 s behind, over the RPO budget of 5 s',
    });
    expect(e.targets).toEqual([]);
    expect(e.checks.find((c) => c.check === 'targets')?.detail).toBe(
      'no region a failover from us-west-2 could go to (residency class us rules out eu-west-1)',
    );
  });

  it('a record pointing elsewhere, or traffic that cannot be read, fails the traffic check', () => {
    const moved = {
      state: {
        ...traffic.state,
        records: traffic.state.records.map((r) => (r.region === EAST ? { ...r, target: 'db.other.' } : r)),
      },
    };
    const e = evaluateReadiness(input, [writer, standby(EAST, 100), standby('eu-west-1', 100)], moved, 0);
    expect(e.checks.filter((c) => c.status === 'fail')).toEqual([
      {
        check: 'traffic',
        region: EAST,
        status: 'fail',
        detail: "ledger.'s record for us-east-1 points at db.other., not the configured db.e.",
      },
    ]);
    expect(e.targets).toEqual([EAST]);
    expect(
      evaluateReadiness(input, [writer, standby(EAST, 100)], { error: 'AccessDenied' }, 0).checks.find(
        (c) => c.check === 'traffic',
      ),
    ).toEqual({ check: 'traffic', status: 'fail', detail: 'the traffic records could not be read: AccessDenied' });
  });

  it('per target: a refused dry run or a record pointing elsewhere fails that target only, and takes it out of the targets', () => {
    const moved = {
      state: {
        ...traffic.state,
        records: traffic.state.records.map((r) => (r.region === EAST ? { ...r, target: 'db.other.' } : r)),
      },
    };
    const free = { ...input, residency: undefined };
    const e = evaluateReadiness(free, [writer, standby(EAST, 100), standby('eu-west-1', 100)], moved, 0, {
      workersDown: {},
      dryRuns: {
        [EAST]: {
          mode: 'planned',
          workflowId: 'w-east',
          preflight: 'writer us-west-2, target us-east-1 standby streaming',
        },
        'eu-west-1': {
          mode: 'planned',
          workflowId: 'w-eu',
          refused: 'cannot read the traffic records of ledger from eu-west-1: AccessDenied',
        },
      },
    });
    expect(e.perTarget?.map((t) => [t.region, t.status])).toEqual([
      [EAST, 'fail'],
      ['eu-west-1', 'fail'],
    ]);
    expect(e.perTarget![0]!.checks.filter((c) => c.status === 'fail').map((c) => c.check)).toEqual(['traffic']);
    expect(e.perTarget![1]!.checks.filter((c) => c.status === 'fail')).toEqual([
      {
        check: 'preflight',
        region: 'eu-west-1',
        status: 'fail',
        detail:
          'a planned failover to eu-west-1 would be refused: cannot read the traffic records of ledger from eu-west-1: AccessDenied',
      },
    ]);
    expect(e.targets).toEqual([]);
  });
});

describe('approvers', () => {
  const need: ApprovalNeed = { required: true, quorum: 2, why: 'triggers.approval.unplanned for alarm and Slack runs' };

  it("fails when fewer can approve than needed, and says whose keys could not be loaded; Slack approvers count only with the bot's key", () => {
    const report = {
      ssh: [
        { name: 'carol', keys: 1 },
        { name: 'dave', keys: 0, error: 'cannot read sshKeysFile /keys/dave.pub (ENOENT)' },
      ],
      slack: { planned: [], unplanned: ['UERIN001'] },
      slackKey: false,
    };
    expect(approversCheck(EAST, 'unplanned', need, report)).toEqual({
      check: 'approvers',
      region: EAST,
      status: 'fail',
      detail:
        'unplanned failovers need 2 approvers (triggers.approval.unplanned for alarm and Slack runs) but only carol (ssh) can approve; ' +
        'keys this worker cannot load: dave (cannot read sshKeysFile /keys/dave.pub (ENOENT)); Slack approvers UERIN001 cannot count: the control workers have no REGIONSHIFT_SLACK_DECISION_KEY',
    });
    expect(approversCheck(EAST, 'unplanned', need, { ...report, slackKey: true })).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining(
        ': carol (ssh), UERIN001 (Slack) can approve; keys this worker cannot load: dave',
      ),
    });
    expect(approversCheck(EAST, 'planned', { required: false, quorum: 1, why: '' }, report)).toMatchObject({
      status: 'pass',
      detail: 'planned failovers need no approval',
    });
  });
});
