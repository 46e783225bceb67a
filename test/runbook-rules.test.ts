// The runbook interpreter's safety rules (workflows/runbook.ts), with the databases left out: the
// real workflow on a real Temporal dev server, and region workers whose activities are small
// in-test implementations (test/support/stub-activities.ts) that record every call. The subject
// is what the interpreter does with a runbook that drops or reorders steps, with a fence that
// fails, an approval, an abort, a second start; the providers are tested on real PostgreSQL and
// moto elsewhere (test/failover*.test.ts).
//
// Each test makes its own service, regions (so its own task queues region.<name>) and control
// task queue, and stops its workers when it ends: no test depends on another or on their order.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { dataConverterFromEnv } from '../src/lib/codec/env';
import { ACTIONS, type ActionName } from '../src/contract/runbook/catalog';
import { fenceOnReturnWorkflowId, runWorkflowId } from '../src/contract/runbook/ids';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import type { RunbookDoc, RunInput, RunRecord, Step } from '../src/contract/runbook/types';
import type { DbNodeState, TrafficState } from '../src/contract/activities';
import { approveRun, abortRun, buildRunInput, RefusedError, startRun, type StartRequest } from '../src/lib/runs/client';
import { FAILURE, type runbook as runbookWorkflow } from '../workflows/runbook';
import { timingOf } from '../bench/history';
import { Compensations } from '../workflows/compensation';
import { SA } from '../workflows/search-attributes';
import { FENCE_LSN, outcome, runStubRegions, StubFleet, untilCancelled } from './support/stub-activities';
import { silentWriter } from '../workflows/writer';
import { approverEntries, decisionActivities, signerFor } from './support/signing';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
import { runInControlVersion } from './support/workflow-bundle';
import { waitFor } from './support/wait';

const FAILOVER = loadRunbook(builtinRunbookPath('failover'));

let te: TemporalEnv;

beforeAll(async () => {
  // Each test makes its own service config (rig below); the env's is never used.
  te = await createTemporalEnv((address) =>
    paperConfig(address, [{ name: 'unused', regions: ['us-west-1', 'us-east-1'] }]),
  );
});

afterAll(async () => {
  await te?.teardown();
});

// --- runbooks made from the shipped one ---------------------------------------------------------

/** The id the shipped failover runbook gives the step of `action` (found, not assumed: the file may change). */
function idOf(action: ActionName): string {
  const step = FAILOVER.steps.find((s) => s.action === action);
  if (!step) throw new Error(`runbooks/failover.yaml has no ${action} step; these tests build their runbooks from it`);
  return step.id;
}

/** A runbook as load.ts would produce it from an edited failover.yaml: the schema accepts any order. */
/**
 * The shipped runbook changed, not through the schema: loading refuses a promotion out of order
 * (src/contract/runbook/schema.ts), and these tests show the workflow refuses it too, as it must
 * for an input that never went through loadRunbook.
 */
function edited(change: string, steps: Step[]): RunbookDoc {
  return { ...FAILOVER, steps, hash: `${FAILOVER.hash}+${change}`, file: `${FAILOVER.file} (${change})` };
}

function without(...actions: ActionName[]): RunbookDoc {
  const ids = actions.map(idOf);
  return edited(
    `without ${ids.join(', ')}`,
    FAILOVER.steps.filter((s) => !ids.includes(s.id)),
  );
}

/** The shipped runbook with the step of `action` moved to just before the step of `before`. */
function moved(action: ActionName, before: ActionName): RunbookDoc {
  const [id, beforeId] = [idOf(action), idOf(before)];
  const step = FAILOVER.steps.find((s) => s.id === id)!;
  const rest = FAILOVER.steps.filter((s) => s.id !== id);
  const at = rest.findIndex((s) => s.id === beforeId);
  return edited(`${id} before ${beforeId}`, [...rest.slice(0, at), step, ...rest.slice(at)]);
}

// --- a rig per test -----------------------------------------------------------------------------

interface Rig {
  service: string;
  source: string;
  target: string;
  fleet: StubFleet;
  workflowId: string;
  input(req?: Partial<StartRequest>, runbook?: RunbookDoc): RunInput;
  /** Starts the run on this test's own control task queue. */
  start(input: RunInput): Promise<WorkflowHandle<typeof runbookWorkflow>>;
  progress(): Promise<RunRecord>;
}

let serial = 0;

/**
 * A service of its own (name-<n>, regions us-west-<n> and us-east-<n>), stub workers for both
 * regions and a control worker on rules.<service>, all stopped when the test ends, with any run
 * or fence watcher it left behind.
 */
async function rig(ctx: TestContext, name: string, policy: Record<string, unknown> = {}): Promise<Rig> {
  const n = ++serial;
  const service = `${name}-${n}`;
  const [source, target] = [`us-west-${n}`, `us-east-${n}`];
  const fleet = new StubFleet(service, source, target);
  const config = paperConfig(te.address, [
    {
      name: service,
      regions: [source, target],
      policy: { approvers: approverEntries('carol'), approvalTimeout: '1m', ...policy },
    },
  ]);
  const taskQueue = `rules.${service}`;
  const workflowId = runWorkflowId(service);
  const stopRegions = await runStubRegions(te.connection, fleet);
  let control: { worker: Worker; done: Promise<void> } | undefined;
  ctx.onTestFinished(async () => {
    for (const id of [workflowId, fenceOnReturnWorkflowId(service, source)]) {
      await te.client.workflow
        .getHandle(id)
        .terminate('test over')
        .catch(() => undefined);
    }
    control?.worker.shutdown();
    await Promise.allSettled([control?.done, stopRegions()]);
  });
  // One workflow thread: a test runs one run at a time (and perhaps its fence watcher), and
  // several tests run at once.
  // The rig's client encrypts when this machine has keys (the environment, or a local stack's key file): so must this worker.
  // Versioned, as every control worker is: the fence watcher a run starts here declares AUTO_UPGRADE.
  control = await runInControlVersion(te.connection, te.workflowBundle, {
    taskQueue,
    workflowThreadPoolSize: 1,
    activities: decisionActivities(config),
    dataConverter: dataConverterFromEnv(),
  });
  return {
    service,
    source,
    target,
    fleet,
    workflowId,
    input: (req = {}, runbook = FAILOVER) =>
      buildRunInput(config, runbook, {
        service,
        target,
        mode: 'planned',
        dryRun: false,
        requestedBy: 'alice',
        trigger: 'test',
        ...req,
      }),
    start: (input) =>
      te.client.workflow.start<typeof runbookWorkflow>('runbook', { taskQueue, workflowId, args: [input] }),
    progress: () => te.client.workflow.getHandle(workflowId).query<RunRecord>('progress'),
  };
}

const stepOf = (rec: RunRecord, action: ActionName) => rec.steps.find((s) => s.id === idOf(action))!;

/** The calls that change something (preflight's reads left out), as region.activity. */
const changes = (fleet: StubFleet) =>
  fleet.log().filter((c) => !c.endsWith('.dbDescribe') && !c.endsWith('.trafficDescribe'));

// --- the tests ----------------------------------------------------------------------------------

// Concurrent: each test has its own service and task queues, and most of a run is waiting on
// round trips to the server, so running them side by side is what keeps the suite short.
describe('the writer when no database answers as one', () => {
  const node = (region: string, reachable: boolean): DbNodeState =>
    reachable ? { region, reachable, role: 'standby' } : { region, reachable, error: 'connect ECONNREFUSED' };
  const topology = (...silent: string[]) => ['a', 'b', 'c', 'd'].map((r) => node(r, !silent.includes(r)));
  // Weighted 40/30/20/10: the records' choice is a, the heaviest.
  const records: TrafficState = {
    recordName: 'x.',
    records: ['a', 'b', 'c', 'd'].map((region, i) => ({
      region,
      target: `${region}.`,
      weight: [40, 30, 20, 10][i],
      ttl: 5,
    })),
  };
  it("is a region that does not answer: the reported one, the only one, the records' one, then the hint", () => {
    expect(silentWriter(topology('b', 'c'), records, { reported: 'c' })).toBe('c');
    expect(silentWriter(topology('b'), records)).toBe('b');
    expect(silentWriter(topology('a', 'c'), records)).toBe('a');
    expect(silentWriter(topology('b', 'c'), records, { also: 'c' })).toBe('c');
  });
  it('is never a region that answers, whatever the records or the hints say', () => {
    expect(silentWriter(topology('b', 'c'), records)).toBeUndefined();
    expect(silentWriter(topology(), records, { reported: 'a', also: 'a' })).toBeUndefined();
    expect(silentWriter(topology('b', 'c'), records, { reported: 'a', also: 'd' })).toBeUndefined();
  });
});

describe('compensation, as the catalog says', () => {
  const step = (status: 'done' | 'failed') =>
    ({ id: 's', title: 's', action: 'x', status }) as RunRecord['steps'][number];

  it('lets only an action with a compensation in the catalog register an undo', () => {
    const c = new Compensations({ 'custom.notify': { placement: 'target', summary: 'notify', compensates: false } });
    const withUndo = Object.entries(ACTIONS)
      .filter(([, spec]) => 'compensate' in spec)
      .map(([name]) => name);
    expect(withUndo.sort()).toEqual([
      'cache.fence',
      'db.fenceWrites',
      'traffic.drain',
      'traffic.restore',
      'traffic.shift',
      'traffic.undrain',
    ]);
    for (const action of withUndo) expect(() => c.register('s', action, action, async () => 'ok')).not.toThrow();
    expect(() => c.register('promote', 'db.promote', 'demote', async () => 'ok')).toThrow(
      'step promote: the catalog gives db.promote no compensation',
    );
    expect(() => c.register('n', 'custom.notify', 'unnotify', async () => 'ok')).toThrow(
      'the catalog gives custom.notify no compensation',
    );
    expect(() => c.register('n', 'custom.unknown', 'undo', async () => 'ok')).toThrow(
      'the catalog gives custom.unknown no compensation',
    );
  });

  it('undoes in reverse order, each undo once, reports the irreversible and the failed, and withdraws on request', async () => {
    const c = new Compensations({ 'custom.env': { placement: 'target', summary: 'env', compensates: true } });
    const ran: string[] = [];
    c.register('fence', 'db.fenceWrites', 'unfence west', async () => (ran.push('unfence'), 'open'));
    c.register('fence', 'db.fenceWrites', 'unfence west', async () => (ran.push('unfence again'), 'open'));
    const withdraw = c.register(
      'shift',
      'traffic.shift',
      'restore records',
      async () => (ran.push('restore'), 'restored'),
    );
    c.register('env', 'custom.env', 'undo custom.env', async () => {
      throw new Error('target does not answer');
    });
    c.irreversible.push('promote east: not demoted automatically');
    withdraw();
    const states: Record<string, ReturnType<typeof step>> = { fence: step('done'), env: step('failed') };
    const result = await c.unwind((id) => states[id]!);
    expect(ran).toEqual(['unfence again']);
    expect(result).toEqual({
      undone: ['unfence west: open'],
      notUndone: ['promote east: not demoted automatically', 'undo custom.env: target does not answer'],
    });
    expect(states.fence!.status).toBe('compensated');
    expect(states.env!.status).toBe('failed');
  });
});

describe.concurrent('the runbook interpreter', () => {
  describe('planned failover: one writer, and no promotion before the lag is zero', () => {
    it('the shipped runbook fences, confirms the lag at the fence position, and only then promotes', async (ctx) => {
      const r = await rig(ctx, 'planned-shipped');
      const { rec, result } = await outcome(await r.start(r.input()));
      expect(result).toBe('succeeded');
      // The shift and the write probe go out together (they may start in either order), after the promotion and before the rejoin.
      const log = changes(r.fleet);
      expect(log.slice(0, 3)).toEqual([
        `${r.source}.dbFenceWrites`,
        `${r.target}.dbWaitForLag`,
        `${r.target}.dbPromote`,
      ]);
      expect([...log.slice(3, 5)].sort()).toEqual([`${r.target}.dbVerifyWrites`, `${r.target}.trafficShift`]);
      expect(log.slice(5)).toEqual([`${r.source}.dbRejoinAsStandby`]);
      const [promote, shift, verify, rejoin] = (
        ['dbPromote', 'trafficShift', 'dbVerifyWrites', 'dbRejoinAsStandby'] as const
      ).map((n) => r.fleet.callsTo(n)[0]!);
      expect(Math.min(shift!.started, verify!.started)).toBeGreaterThan(promote!.ended!);
      expect(rejoin!.started).toBeGreaterThan(Math.max(shift!.ended!, verify!.ended!));
      expect(r.fleet.callsTo('dbWaitForLag')[0]!.input).toMatchObject({ service: r.service, sourceLsn: FENCE_LSN });
      expect(r.fleet.callsTo('dbPromote')[0]!.input).toMatchObject({ mode: 'planned', source: r.source });
      expect(rec.rpo).toEqual({ zeroLoss: true, estimateSeconds: 0 });
      expect(rec.dataLossAck).toBeUndefined();
    });

    it('a lag that is not reached fails the lag step; the promotion, asked in the same activity, stays pending and nothing is promoted', async (ctx) => {
      const r = await rig(ctx, 'planned-lag-timeout');
      r.fleet.answer(r.target, 'dbWaitForLag', async () => {
        throw ApplicationFailure.nonRetryable('east did not catch up in 30000 ms', 'LagTimeout');
      });
      const { rec, result } = await outcome(await r.start(r.input()));
      expect(result).toBe(FAILURE.failed);
      expect(stepOf(rec, 'db.waitForLag')).toMatchObject({
        status: 'failed',
        error: 'east did not catch up in 30000 ms',
      });
      expect(stepOf(rec, 'db.promote').status).toBe('pending');
      expect(stepOf(rec, 'db.promote').startedAt).toBeUndefined();
      expect(r.fleet.callsTo('dbPromote')).toEqual([]);
      expect(rec.lag).toBeUndefined();
      expect(changes(r.fleet)).toEqual([
        `${r.source}.dbFenceWrites`,
        `${r.target}.dbWaitForLag`,
        `${r.source}.dbUnfenceWrites`,
      ]);
    });

    it('a promotion that fails after the lag was confirmed, in the same activity, records the lag step done and the promotion failed', async (ctx) => {
      const r = await rig(ctx, 'planned-promote-fails');
      r.fleet.answer(r.target, 'dbPromote', async () => {
        throw ApplicationFailure.nonRetryable('pg_promote did not finish in 60 s', 'PromoteTimeout');
      });
      const { rec, result } = await outcome(await r.start(r.input()));
      expect(result).toBe(FAILURE.failed);
      expect(stepOf(rec, 'db.waitForLag')).toMatchObject({
        status: 'done',
        detail: `replayed ${FENCE_LSN} (0 bytes behind at the fence) in 3 ms, by the promotion's activity`,
      });
      expect(stepOf(rec, 'db.promote')).toMatchObject({ status: 'failed', error: 'pg_promote did not finish in 60 s' });
      expect(rec.lag).toMatchObject({ replayedLsn: FENCE_LSN });
      expect(rec.compensation!.notUndone).toEqual([
        expect.stringMatching(new RegExp(`^promote ${r.target}: a promoted database is not demoted automatically`)),
      ]);
    });

    it('a promote step of its own kind (here: a person decides on its failure) is not paired: the lag wait and the promotion are two activities', async (ctx) => {
      const r = await rig(ctx, 'planned-promote-asks');
      const promoteAsks = edited(
        'promote asks',
        FAILOVER.steps.map((s) => (s.action === 'db.promote' ? { ...s, onFailure: 'ask' as const } : s)),
      );
      const handle = await r.start(r.input({}, promoteAsks));
      const { rec, result } = await outcome(handle);
      expect(result).toBe('succeeded');
      const names = ((await handle.fetchHistory()).events ?? []).flatMap(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? [],
      );
      expect(names).toEqual(expect.arrayContaining(['dbWaitForLag', 'dbPromote']));
      expect(names).not.toContain('dbPromoteAfterLag');
      expect(stepOf(rec, 'db.waitForLag').detail).toBe(`replayed ${FENCE_LSN} (0 bytes behind at the fence) in 3 ms`);
    });

    it('a runbook without the fence step: promotion is refused and nothing is promoted', async (ctx) => {
      const r = await rig(ctx, 'planned-nofence');
      const { rec, result } = await outcome(await r.start(r.input({}, without('db.fenceWrites'))));
      expect(result).toBe(FAILURE.refused);
      expect(stepOf(rec, 'db.waitForLag')).toMatchObject({ status: 'skipped', detail: 'condition not met: fenced' });
      expect(stepOf(rec, 'db.promote')).toMatchObject({
        status: 'failed',
        error: 'promotion refused: a planned failover promotes only after a verified fence',
      });
      expect(r.fleet.callsTo('dbPromote')).toEqual([]);
      expect(changes(r.fleet)).toEqual([]);
      // Nothing was changed, so there is nothing to undo and nothing left undone.
      expect(rec.compensation).toEqual({ undone: [], notUndone: [] });
    });

    it('a runbook with promote moved before confirm-lag: refused after the fence, which is undone', async (ctx) => {
      const r = await rig(ctx, 'planned-early-promote');
      const { rec, result } = await outcome(await r.start(r.input({}, moved('db.promote', 'db.waitForLag'))));
      expect(result).toBe(FAILURE.refused);
      expect(stepOf(rec, 'db.promote').error).toBe(
        'promotion refused: the runbook must confirm the lag (db.waitForLag) after the fence and before promoting',
      );
      expect(stepOf(rec, 'db.waitForLag').status).toBe('pending');
      expect(changes(r.fleet)).toEqual([`${r.source}.dbFenceWrites`, `${r.source}.dbUnfenceWrites`]);
      expect(rec.compensation!.undone).toEqual([`unfence ${r.source}: writes open again in ${r.source}`]);
    });

    it('a runbook without the confirm-lag step: promotion is refused', async (ctx) => {
      const r = await rig(ctx, 'planned-nolag');
      const { rec, result } = await outcome(await r.start(r.input({}, without('db.waitForLag'))));
      expect(result).toBe(FAILURE.refused);
      expect(stepOf(rec, 'db.promote').error).toMatch(/^promotion refused: the runbook must confirm the lag/);
      expect(r.fleet.callsTo('dbPromote')).toEqual([]);
      expect(changes(r.fleet)).toEqual([`${r.source}.dbFenceWrites`, `${r.source}.dbUnfenceWrites`]);
    });

    it('a runbook with confirm-lag moved before the fence: the lag step is skipped, so promotion is still refused', async (ctx) => {
      const r = await rig(ctx, 'planned-early-lag');
      const { rec, result } = await outcome(await r.start(r.input({}, moved('db.waitForLag', 'db.fenceWrites'))));
      expect(result).toBe(FAILURE.refused);
      expect(stepOf(rec, 'db.waitForLag')).toMatchObject({ status: 'skipped', detail: 'condition not met: fenced' });
      expect(stepOf(rec, 'db.promote').error).toMatch(/^promotion refused: the runbook must confirm the lag/);
      expect(r.fleet.callsTo('dbPromote')).toEqual([]);
    });

    it('a fence that cannot be verified stops a planned run before promotion', async (ctx) => {
      const r = await rig(ctx, 'planned-unverified');
      r.fleet.answer(r.source, 'dbFenceWrites', async () => ({
        region: r.source,
        alreadyFenced: false,
        verified: false,
        lsn: FENCE_LSN,
        terminatedSessions: 0,
      }));
      const { rec, result } = await outcome(await r.start(r.input()));
      expect(result).toBe(FAILURE.failed);
      // Worded loosely: the fence step's messages are being reworked alongside the PostgreSQL fence.
      expect(stepOf(rec, 'db.fenceWrites')).toMatchObject({
        status: 'compensated',
        error: expect.stringMatching(new RegExp(`${r.source}.*verified`)),
      });
      expect(changes(r.fleet)).toEqual([`${r.source}.dbFenceWrites`, `${r.source}.dbUnfenceWrites`]);
    });
  });

  describe('unplanned failover: promotion without a verified fence needs an acknowledgement', () => {
    /** The source region is gone: its node does not answer and its fence fails. */
    function sourceDown(r: Rig): void {
      r.fleet.answer(r.source, 'dbDescribe', async () => ({
        region: r.source,
        reachable: false,
        error: 'connect ECONNREFUSED',
      }));
      r.fleet.answer(r.source, 'dbFenceWrites', async () => {
        throw new Error('connect ECONNREFUSED');
      });
    }

    /** The target's replication state: `lagSeconds` between its last replayed commit and its last news from the source. */
    function targetBehindBy(r: Rig, lagSeconds: number): void {
      const heard = Date.now() - 60_000;
      r.fleet.answer(r.target, 'dbDescribe', async () => ({
        ...r.fleet.node(r.target),
        streamingFrom: undefined,
        lastHeardFromPrimaryAt: new Date(heard).toISOString(),
        lastReplayedCommitAt: new Date(heard - lagSeconds * 1000).toISOString(),
      }));
    }

    const unplannedPolicy = (extra: Record<string, unknown>) => ({
      approval: { planned: 'none', unplanned: 'none' },
      rpoBudgetSeconds: 5,
      ...extra,
    });

    async function waitingOnPromote(r: Rig): Promise<RunRecord> {
      return waitFor('the data-loss acknowledgement to be asked for', async () => {
        const rec = await r.progress();
        return rec.pendingApproval?.stepId === idOf('db.promote') && rec;
      });
    }

    it('a silent writer with less weight than the target (active-active shares) is still the source', async (ctx) => {
      const r = await rig(ctx, 'unplanned-light-writer', unplannedPolicy({ allowDataLoss: true }));
      sourceDown(r);
      // The records send more clients to the target: the heaviest record is not the writer.
      r.fleet.answer(r.target, 'trafficDescribe', async () => {
        const before = r.fleet.trafficBefore();
        return { ...before, records: before.records.map((x) => ({ ...x, weight: x.region === r.source ? 30 : 70 })) };
      });
      const { rec, result } = await outcome(await r.start(r.input({ mode: 'unplanned' })));
      expect(result, rec.error).toBe('succeeded');
      expect(rec.source).toBe(r.source);
      expect(stepOf(rec, 'preflight').detail).toBe(
        `writer ${r.source} (does not answer), target ${r.target} standby streaming`,
      );
      expect(r.fleet.callsTo('dbPromote')[0]!.input).toMatchObject({ source: r.source });
    });

    it('no unfenced primary and every region answering: refused, whatever the records say, and nothing changes', async (ctx) => {
      const r = await rig(ctx, 'unplanned-no-writer', unplannedPolicy({ allowDataLoss: true }));
      r.fleet.answer(r.source, 'dbDescribe', async () => ({ ...r.fleet.node(r.target), region: r.source }));
      const { rec, result } = await outcome(await r.start(r.input({ mode: 'unplanned' })));
      expect(result).toBe(FAILURE.refused);
      expect(rec.error).toBe(
        `cannot tell which region is the writer of ${r.service}: none answers as an unfenced primary; name it with --from`,
      );
      expect(changes(r.fleet)).toEqual([]);
    });

    it('policy allowDataLoss within the RPO budget: promotes, records the acknowledgement by policy, and fences the old primary when it returns', async (ctx) => {
      const r = await rig(ctx, 'unplanned-policy', unplannedPolicy({ allowDataLoss: true }));
      sourceDown(r);
      targetBehindBy(r, 2);
      const { rec, result } = await outcome(await r.start(r.input({ mode: 'unplanned' })));
      expect(result).toBe('succeeded');
      expect(rec.source).toBe(r.source);
      // Tried as the runbook bounds it in unplanned mode, then carried on without a fence (later
      // calls are the watcher's, below).
      const [promote] = r.fleet.callsTo('dbPromote');
      expect(
        r.fleet
          .callsTo('dbFenceWrites', r.source)
          .filter((c) => c.started < promote!.started)
          .map((c) => c.outcome),
      ).toEqual(['failed', 'failed']);
      expect(stepOf(rec, 'db.fenceWrites').detail).toBe('source unreachable: connect ECONNREFUSED');
      expect(rec.dataLossAck).toEqual({ by: 'policy', reason: 'allowDataLoss; estimated RPO 2s, budget 5s' });
      expect(rec.rpo).toMatchObject({ estimateSeconds: 2, zeroLoss: false });
      expect(rec.approvals).toEqual([]);
      expect(promote!.input).toMatchObject({ mode: 'unplanned', source: r.source });

      // The region comes back: the watcher the run left fences it.
      const watcher = te.client.workflow.getHandle(rec.fenceOnReturn!.workflowId);
      r.fleet.answer(r.source, 'dbFenceWrites', async () => ({
        region: r.source,
        alreadyFenced: false,
        verified: true,
        lsn: '0/5000000',
        terminatedSessions: 3,
      }));
      expect(await watcher.result()).toBe(`${r.source} fenced at 0/5000000`);
    });

    it('without allowDataLoss: waits for a person, and an approval promotes and records who acknowledged', async (ctx) => {
      const r = await rig(ctx, 'unplanned-approved', unplannedPolicy({ allowDataLoss: false }));
      sourceDown(r);
      targetBehindBy(r, 2);
      const handle = await r.start(r.input({ mode: 'unplanned' }));
      const waiting = await waitingOnPromote(r);
      expect(waiting.pendingApproval!.reason).toBe(
        `${r.source} could not be fenced (connect ECONNREFUSED); estimated RPO 2s, budget 5s. Promoting ${r.target} may lose writes`,
      );
      expect(r.fleet.callsTo('dbPromote')).toEqual([]);
      await approveRun(
        te.client,
        r.workflowId,
        { by: 'carol', decision: 'approve', reason: 'west is gone for hours' },
        signerFor('carol'),
      );
      const { rec, result } = await outcome(handle);
      expect(result).toBe('succeeded');
      expect(rec.dataLossAck).toEqual({ by: 'carol', reason: 'west is gone for hours' });
      expect(rec.approvals).toEqual([
        expect.objectContaining({ stepId: idOf('db.promote'), by: 'carol', decision: 'approve' }),
      ]);
      expect(r.fleet.callsTo('dbPromote')).toHaveLength(1);
    });

    it('without allowDataLoss: a rejection refuses the run and nothing is promoted', async (ctx) => {
      const r = await rig(ctx, 'unplanned-rejected', unplannedPolicy({ allowDataLoss: false }));
      sourceDown(r);
      targetBehindBy(r, 2);
      const handle = await r.start(r.input({ mode: 'unplanned' }));
      await waitingOnPromote(r);
      await approveRun(
        te.client,
        r.workflowId,
        { by: 'carol', decision: 'reject', reason: 'wait for west' },
        signerFor('carol'),
      );
      const { rec, result } = await outcome(handle);
      expect(result).toBe(FAILURE.refused);
      expect(stepOf(rec, 'db.promote')).toMatchObject({ status: 'failed', error: 'rejected by carol: wait for west' });
      expect(rec.dataLossAck).toBeUndefined();
      expect(r.fleet.callsTo('dbPromote')).toEqual([]);
      expect(r.fleet.callsTo('trafficShift')).toEqual([]);
    });

    it('a lag above the RPO budget asks a person even when policy allows data loss', async (ctx) => {
      const r = await rig(ctx, 'unplanned-overbudget', unplannedPolicy({ allowDataLoss: true }));
      sourceDown(r);
      targetBehindBy(r, 30);
      const handle = await r.start(r.input({ mode: 'unplanned' }));
      const waiting = await waitingOnPromote(r);
      expect(waiting.pendingApproval!.reason).toContain('estimated RPO 30s, budget 5s');
      expect(waiting.dataLossAck).toBeUndefined();
      expect(r.fleet.callsTo('dbPromote')).toEqual([]);
      await approveRun(te.client, r.workflowId, { by: 'carol', decision: 'approve' }, signerFor('carol'));
      const { rec, result } = await outcome(handle);
      expect(result).toBe('succeeded');
      expect(rec.dataLossAck!.by).toBe('carol');
      expect(rec.rpo).toMatchObject({ estimateSeconds: 30, zeroLoss: false });
    });
  });

  describe('dry run', () => {
    it('does nothing but preflight, and returns the plan', async (ctx) => {
      const r = await rig(ctx, 'dry-run');
      const { rec, result } = await outcome(await r.start(r.input({ dryRun: true })));
      expect(result).toBe('succeeded');
      expect(r.fleet.log().sort()).toEqual(
        [`${r.source}.dbDescribe`, `${r.target}.dbDescribe`, `${r.target}.trafficDescribe`].sort(),
      );
      for (const s of rec.steps.filter((s) => s.id !== idOf('preflight')))
        expect(s, s.id).toMatchObject({ status: 'skipped', detail: 'dry run' });
      expect(rec.plan!.find((p) => p.id === idOf('db.promote'))).toMatchObject({
        region: r.target,
        taskQueue: `region.${r.target}`,
      });
    });
  });

  describe('compensation', () => {
    const writeRefused = async (): Promise<never> => {
      throw ApplicationFailure.nonRetryable('the write through the new primary was refused', 'WriteRefused');
    };

    it('a failure after the fence and the traffic shift undoes both in reverse order, and says what it could not undo', async (ctx) => {
      const r = await rig(ctx, 'undo-order');
      r.fleet.answer(r.target, 'dbVerifyWrites', writeRefused);
      const { rec, result } = await outcome(await r.start(r.input()));
      expect(result).toBe(FAILURE.failed);
      expect(rec.error).toBe('the write through the new primary was refused');
      expect(r.fleet.log('trafficRestore', 'dbUnfenceWrites')).toEqual([
        `${r.target}.trafficRestore`,
        `${r.source}.dbUnfenceWrites`,
      ]);
      // The records go back exactly as preflight read them.
      expect(r.fleet.callsTo('trafficRestore')[0]!.input).toEqual({
        service: r.service,
        state: r.fleet.trafficBefore(),
      });
      expect(rec.compensation!.undone).toEqual([
        `restore traffic records of ${r.service}: ${r.source} 100, ${r.target} 0`,
        `unfence ${r.source}: writes open again in ${r.source}`,
      ]);
      expect(rec.compensation!.notUndone).toEqual([
        `promote ${r.target}: a promoted database is not demoted automatically; fail back with a planned run`,
      ]);
      expect(stepOf(rec, 'db.fenceWrites').status).toBe('compensated');
      expect(stepOf(rec, 'traffic.shift').status).toBe('compensated');
      expect(stepOf(rec, 'app.verifyWrites').status).toBe('failed');
    });

    it('an undo that fails is reported as not undone, and the undo before it still happens', async (ctx) => {
      const r = await rig(ctx, 'undo-fails');
      r.fleet.answer(r.target, 'dbVerifyWrites', writeRefused);
      r.fleet.answer(r.source, 'dbUnfenceWrites', async () => {
        throw ApplicationFailure.nonRetryable(`${r.source} does not answer`, 'Unreachable');
      });
      const handle = await r.start(r.input());
      const { rec, result } = await outcome(handle);
      // The Temporal UI's list shows where it failed: the write probe, though it ran alongside the shift.
      expect((await handle.describe()).typedSearchAttributes.get(SA.step)).toBe(idOf('app.verifyWrites'));
      expect(result).toBe(FAILURE.failed);
      expect(r.fleet.log('trafficRestore', 'dbUnfenceWrites')).toEqual([
        `${r.target}.trafficRestore`,
        `${r.source}.dbUnfenceWrites`,
      ]);
      expect(rec.compensation!.undone).toEqual([
        `restore traffic records of ${r.service}: ${r.source} 100, ${r.target} 0`,
      ]);
      expect(rec.compensation!.notUndone).toEqual([
        `promote ${r.target}: a promoted database is not demoted automatically; fail back with a planned run`,
        `unfence ${r.source}: ${r.source} does not answer`,
      ]);
      // The fence was not undone: its step stays done, not compensated.
      expect(stepOf(rec, 'db.fenceWrites').status).toBe('done');
    });

    it('an abort in the middle of a step stops that step, then compensates', async (ctx) => {
      const r = await rig(ctx, 'abort-mid-step');
      r.fleet.answer(r.target, 'dbWaitForLag', untilCancelled);
      const handle = await r.start(r.input());
      await waitFor('the lag wait to be running', async () => r.fleet.callsTo('dbWaitForLag').length > 0);
      expect(await abortRun(te.client, r.workflowId, { by: 'carol', reason: 'wrong region' }, signerFor('carol'))).toBe(
        'abort requested by carol: compensating',
      );
      const { rec, result } = await outcome(handle);
      expect(result).toBe(FAILURE.aborted);
      expect(rec).toMatchObject({ status: 'aborted', error: 'aborted by carol: wrong region' });
      const [wait] = r.fleet.callsTo('dbWaitForLag');
      const [unfence] = r.fleet.callsTo('dbUnfenceWrites');
      expect(wait!.outcome).toBe('cancelled');
      // The step had acknowledged its cancellation before the undo began: they never overlap.
      expect(wait!.ended).toBeLessThan(unfence!.started);
      expect(r.fleet.callsTo('dbPromote')).toEqual([]);
      expect(stepOf(rec, 'db.fenceWrites').status).toBe('compensated');
      expect(stepOf(rec, 'db.waitForLag').status).toBe('failed');
    });
  });

  describe('workflow-task round trips (bench: failover.planned.overheadMs)', () => {
    it('a planned run schedules the shift and the write probe in one workflow task, and tells the guardian of its end in its last', async (ctx) => {
      const r = await rig(ctx, 'round-trips');
      const handle = await r.start(r.input());
      const { rec, result } = await outcome(handle);
      expect(result).toBe('succeeded');
      const events = (await handle.fetchHistory()).events ?? [];
      const scheduledBy = (name: string) =>
        events
          .find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === name)!
          .activityTaskScheduledEventAttributes!.workflowTaskCompletedEventId!.toString();
      expect(scheduledBy('dbVerifyWrites')).toBe(scheduledBy('trafficShift'));
      // The lag wait and the promotion are one activity, scheduled in the task that took the fence's answer.
      const names = events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
      expect(names).not.toContain('dbWaitForLag');
      expect(names).not.toContain('dbPromote');
      const fenceDone = events.find(
        (e) => e.workflowTaskCompletedEventAttributes && Number(e.eventId) > Number(scheduledBy('dbFenceWrites')),
      );
      expect(scheduledBy('dbPromoteAfterLag')).toBe(fenceDone!.eventId!.toString());
      expect(stepOf(rec, 'db.waitForLag')).toMatchObject({
        status: 'done',
        detail: `replayed ${FENCE_LSN} (0 bytes behind at the fence) in 3 ms, by the promotion's activity`,
      });
      expect(stepOf(rec, 'db.promote')).toMatchObject({ status: 'done', detail: 'promoted by pg_promote' });
      // Both count in the RTO: it is taken when the later of the two is done.
      const [shift, verify] = [stepOf(rec, 'traffic.shift'), stepOf(rec, 'app.verifyWrites')];
      expect(Date.parse(rec.startedAt) + rec.rtoMs!).toBeGreaterThanOrEqual(
        Math.max(Date.parse(shift.endedAt!), Date.parse(verify.endedAt!)),
      );
      // The end is told from the worker (a local activity's marker), not by a signal whose outcome would need a workflow task of its own.
      const types = events.map((e) => Object.keys(e).find((k) => k.endsWith('EventAttributes')));
      expect(types.filter((t) => t === 'signalExternalWorkflowExecutionInitiatedEventAttributes')).toHaveLength(1);
      expect(types.slice(-2)).toEqual(['markerRecordedEventAttributes', 'workflowExecutionCompletedEventAttributes']);
      // One upsert of the step attribute per step that ran, none at the end: an ended run's shows
      // the step it ended at (issue 11: it read "-" in the Temporal UI's list).
      const stepValues = events.flatMap((e) => {
        const v =
          e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.RegionshiftStep?.data;
        return v ? [JSON.parse(Buffer.from(v).toString()) as string] : [];
      });
      // Steps run together show the first: the probe goes with the shift, the promotion with the lag.
      const together = [idOf('app.verifyWrites'), idOf('db.promote')];
      const ran = rec.steps.filter((s) => s.status === 'done' && !together.includes(s.id)).map((s) => s.id);
      expect(stepValues).toEqual(ran);
      expect((await handle.describe()).typedSearchAttributes.get(SA.step)).toBe(idOf('db.rejoinAsStandby'));
      // The record's last view of the regions is read while the old primary rejoins (which reports
      // its own state): the target is described in the rejoin's workflow task, the source not again.
      const rejoinTask = scheduledBy('dbRejoinAsStandby');
      const describes = events
        .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'dbDescribe')
        .map((e) => e.activityTaskScheduledEventAttributes!.workflowTaskCompletedEventId!.toString());
      expect(describes.filter((t) => t === rejoinTask)).toHaveLength(1);
      expect(r.fleet.log('dbDescribe', 'dbRejoinAsStandby')).toEqual(
        expect.arrayContaining([`${r.target}.dbDescribe`, `${r.source}.dbRejoinAsStandby`]),
      );
      expect(r.fleet.callsTo('dbDescribe', r.source)).toHaveLength(1);
      // The bench's reading of the same history (bench/history.ts): the overhead (wall − time
      // inside activities) is what comes before the first activity, between activities and after
      // the last (each part rounded), and the run waited at least once between each pair of its
      // five steps in a row: preflight, fence, lag with the promotion, shift with the probe,
      // rejoin with the last describes. (These stubs answer at once, so parallel ones may not
      // overlap: more gaps.)
      const t = timingOf(await handle.fetchHistory());
      expect(Math.abs(t.startMs + t.gapsMs + t.closeMs - t.overheadMs)).toBeLessThanOrEqual(2);
      expect(Math.min(t.startMs, t.gapsMs, t.closeMs)).toBeGreaterThan(0);
      expect(t.gaps).toBeGreaterThanOrEqual(4);
      expect(rec.topologyAfter!.map((n) => n.region)).toEqual([r.source, r.target]);
      expect(rec.topologyAfter![0]).toEqual({
        region: r.source,
        reachable: true,
        role: 'standby',
        timeline: 2,
        lsn: '0/3000200',
        streamingFrom: `db.${r.target}.regionshift.test:5432`,
      });
      expect(rec.rejoin).not.toHaveProperty('state');
    });

    it('an old primary whose worker does not report its state after the rejoin is described after it', async (ctx) => {
      const r = await rig(ctx, 'rejoin-without-state');
      r.fleet.answer(r.source, 'dbRejoinAsStandby', async (i) => ({
        region: r.source,
        rejoined: true,
        rewound: false,
        streamingFrom: `db.${i.primaryRegion}.regionshift.test:5432`,
      }));
      const { rec, result } = await outcome(await r.start(r.input()));
      expect(result).toBe('succeeded');
      const [rejoin] = r.fleet.callsTo('dbRejoinAsStandby', r.source);
      expect(r.fleet.callsTo('dbDescribe', r.source).filter((c) => c.started > rejoin!.ended!)).toHaveLength(1);
      expect(rec.topologyAfter!.map((n) => n.region)).toEqual([r.source, r.target]);
    });

    it('a planned run recorded before the round trips were cut replays with this code', async () => {
      // Recorded with the interpreter of 57f2a4c (stub regions us-west-9 → us-east-9): a run that
      // was in flight when this shipped must take the path it took, or its worker fails it.
      const history = temporal.api.history.v1.History.decode(
        readFileSync(join(__dirname, 'fixtures', 'runbook-planned-before-lean.history.pb')),
      );
      await expect(
        Worker.runReplayHistory({ workflowBundle: te.workflowBundle }, history, 'recorded-before-lean'),
      ).resolves.toBeUndefined();
    });
  });

  describe('single flight', () => {
    it('a second start for the same service is refused while the first runs, and allowed once it has ended', async (ctx) => {
      // The way the CLI, Slack and the guardian start runs: startRun, on the control task queue.
      const r = await rig(ctx, 'single-flight', { approval: { planned: 'required', unplanned: 'required' } });
      const first = await startRun(te.client, r.input());
      expect(first).toMatchObject({ workflowId: `regionshift-${r.service}`, started: true });
      const gate = FAILOVER.steps.find((s) => s.approval)!.id;
      await waitFor(
        'the first run to wait at its approval gate',
        async () => (await r.progress()).pendingApproval?.stepId === gate,
      );

      await expect(startRun(te.client, r.input({ requestedBy: 'bob' }))).rejects.toThrow(RefusedError);
      await expect(startRun(te.client, r.input({ requestedBy: 'bob' }))).rejects.toThrow(
        new RegExp(
          `^${r.service} already has a run in progress: regionshift-${r.service} run ${first.runId} \\(failover ${r.source} → ${r.target}, planned, by alice, at step ${gate}\\)`,
        ),
      );
      expect(await startRun(te.client, r.input({ requestedBy: 'bob' }), { join: true })).toEqual({
        workflowId: first.workflowId,
        runId: first.runId,
        started: false,
      });
      // No second run ever started: one preflight's worth of reads.
      expect(r.fleet.callsTo('dbDescribe', r.source)).toHaveLength(1);

      // Ended from outside: this run sits on the shared control queue, whose verifier knows another config.
      await te.client.workflow.getHandle(first.workflowId, first.runId).terminate('the test ends the first run');
      await waitFor(
        'the first run to end',
        async () =>
          (await te.client.workflow.getHandle(first.workflowId, first.runId).describe()).status.name !== 'RUNNING',
      );
      const again = await startRun(te.client, r.input({ dryRun: true }));
      expect(again.started).toBe(true);
      expect(again.runId).not.toBe(first.runId);
      expect((await outcome(te.client.workflow.getHandle(again.workflowId, again.runId))).result).toBe('succeeded');
    });
  });

  describe('every catalog action has an implementation', () => {
    it('an action added to the catalog without a case in the interpreter fails to compile', async () => {
      // tsc on a fixture that grows a copy of the action union by one and ends its dispatch the way
      // runAction does (unimplementedAction). No ambient type packages: the fixture needs none, and
      // loading them is most of tsc's time.
      const fixture = join(__dirname, 'fixtures', 'unimplemented-action.ts');
      const tsc = join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc');
      const args = [
        tsc,
        '--noEmit',
        '--strict',
        '--target',
        'ES2022',
        '--module',
        'commonjs',
        '--lib',
        'es2022',
        '--typeRoots',
        mkdtempSync(join(tmpdir(), 'regionshift-no-types-')),
        fixture,
      ];
      const failed = await promisify(execFile)(process.execPath, args).then(
        () => undefined,
        (err: { code: number; stdout: string }) => err,
      );
      expect(failed, 'tsc accepted an action with no implementation').toBeDefined();
      const errors = failed!.stdout.split('\n').filter((l) => l.includes('error TS'));
      const line =
        readFileSync(fixture, 'utf8')
          .split('\n')
          .findIndex((l) => l.includes('the error tsc must report')) + 1;
      // One error, on the grown union's call, naming the action; the dispatch over the catalog as it is compiles.
      expect(errors).toEqual([expect.stringContaining(`unimplemented-action.ts(${line},`)]);
      expect(errors[0]).toContain(`Argument of type '"db.snapshot"' is not assignable to parameter of type 'never'`);
    });

    it('at run time, an action this build does not know fails its step, naming it, rather than passing as done', async (ctx) => {
      const r = await rig(ctx, 'unknown-action');
      // Not something load.ts would produce (its schema refuses the name): input from a newer client.
      const snapshot = {
        id: 'snapshot',
        title: 'Snapshot the source',
        action: 'db.snapshot',
        when: [],
      } as unknown as Step;
      const runbook = { ...FAILOVER, steps: [FAILOVER.steps[0]!, snapshot, ...FAILOVER.steps.slice(1)] };
      const { rec, result } = await outcome(await r.start(r.input({}, runbook)));
      expect(result).toBe(FAILURE.failed);
      expect(rec.steps.find((s) => s.id === 'snapshot')).toMatchObject({
        status: 'failed',
        error:
          'action "db.snapshot" has no implementation in this control worker (workflows/actions.ts); deploy a control worker that knows it, or remove the step',
      });
      expect(changes(r.fleet)).toEqual([]);
    });
  });
});
