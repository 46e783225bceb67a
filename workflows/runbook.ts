// The runbook interpreter: runs the steps of a runbook (runbooks/<kind>.yaml, passed whole as
// input) as activities on the worker of the region each step acts on. The safety invariants
// (docs/safety.md) are enforced here, in code, whatever order the runbook puts its steps in.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { ActivityOptions, RetryPolicy } from '@temporalio/common';
import type { DbNodeState, RegionActivities, TrafficState } from '../activities/types';
import { ACTIONS, isCustomAction, type ActionName, type ActionSpec, type Condition } from '../src/runbook/catalog';
import { durationMs } from '../src/runbook/duration';
import { unimplementedAction } from '../src/runbook/exhaustive';
import { fenceOnReturnWorkflowId, followWatcherWorkflowId, regionTaskQueue } from '../src/runbook/ids';
import type { AttachedAlarm, PlannedStep, RunInput, RunRecord, StandbyFollow, Step, StepState } from '../src/runbook/types';
import { describeRecords, primaryRegionOf, shiftedRecords } from '../src/traffic/plan';
import { residencyViolation } from '../src/policy/residency';
import { lagMsOf } from '../src/policy/target';
import { SA } from './search-attributes';
import { notifyGuardian, notifyGuardianNow } from './guardian';
import { isReconcileAction, runReconcileAction } from './reconcile-actions';
import { isDrainAction, isDrainKind, runDrainAction } from './drain-actions';
import { isCacheAction, runCacheAction } from './cache-actions';
import { RunDecisions } from './approvals';
import { runAppStep } from './app-steps';
import { OperatorControls } from './operator-controls';

export const progressQuery = wf.defineQuery<RunRecord>('progress');
export { abortUpdate, approveUpdate } from './approvals';
export { operateUpdate } from './operator-controls';
/** The service's guardian attaches alarms that fire during the run (single flight: never a second run). */
export const attachAlarmSignal = wf.defineSignal<[AttachedAlarm]>('attachAlarm');

/** Failure types a caller can tell apart (the CLI maps them to exit codes). */
export const FAILURE = { refused: 'RunRefused', failed: 'RunFailed', aborted: 'RunAborted' } as const;

const DEFAULT_RETRY: RetryPolicy = { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 20 };

function on(region: string, options: Partial<ActivityOptions> = {}): RegionActivities {
  return wf.proxyActivities<RegionActivities>({
    taskQueue: regionTaskQueue(region),
    startToCloseTimeout: '60s',
    retry: DEFAULT_RETRY,
    // On abort, wait for a running step to finish or acknowledge, so compensation never races it.
    cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    heartbeatTimeout: '15s',
    ...options,
  });
}

/**
 * Compensation must end: a region that is down (its worker never picks the task up) is reported
 * as not undone rather than waited on forever.
 */
const COMPENSATION: Partial<ActivityOptions> = {
  scheduleToStartTimeout: '15s',
  startToCloseTimeout: '30s',
  retry: { ...DEFAULT_RETRY, maximumAttempts: 5 },
};

function refuse(message: string): never {
  throw ApplicationFailure.create({ type: FAILURE.refused, message, nonRetryable: true });
}

function errorMessage(err: unknown): string {
  if (err instanceof wf.ActivityFailure && err.cause) return errorMessage(err.cause);
  if (err instanceof wf.ChildWorkflowFailure && err.cause) return errorMessage(err.cause);
  if (err instanceof Error) return err.message;
  return String(err);
}

const iso = (ms: number = Date.now()): string => new Date(ms).toISOString();

export async function runbook(input: RunInput): Promise<RunRecord> {
  // Fewer workflow-task round trips (steps that may run alongside the one before do, search
  // attributes set once per change). Patched, asked once before the first command: a run that
  // started before this shipped replays the way it ran.
  const lean = wf.patched('lean-round-trips');
  // Fewer still: the regions are described for the record while the old primary rejoins (which
  // reports its own state), and the step attribute of an ended run names where it ended instead
  // of reading "-" (issue 11). Same rule: asked once, before the first command.
  const leaner = lean && wf.patched('leaner-round-trips');
  const info = wf.workflowInfo();
  const startedMs = Date.now();
  const rec: RunRecord = {
    workflowId: info.workflowId,
    runId: info.runId,
    kind: input.runbook.kind,
    runbookHash: input.runbook.hash,
    service: input.service,
    mode: input.mode,
    dryRun: input.dryRun,
    source: input.source,
    target: input.target,
    requestedBy: input.requestedBy,
    trigger: input.trigger,
    status: 'running',
    startedAt: iso(startedMs),
    steps: input.runbook.steps.map((s) => ({
      id: s.id,
      title: s.title ?? (s.action ? specOf(s.action)?.summary ?? input.runbook.plugins?.[s.action]?.summary ?? s.action : s.approval?.reason ?? s.id),
      action: s.action ?? 'approval',
      status: 'pending',
    })),
    approvals: [],
  };

  // --- messages -------------------------------------------------------------------------------
  wf.setHandler(progressQuery, () => rec);
  wf.setHandler(attachAlarmSignal, (a) => {
    const prev = rec.alarms?.find((x) => x.trigger === a.trigger && x.region === a.region);
    rec.alarms = [...(rec.alarms ?? []).filter((x) => x !== prev), { ...a, count: (prev?.count ?? 0) + a.count }].slice(-20);
  });
  const work = new wf.CancellationScope();
  // Approvals and abort, each verified by a worker before it counts (workflows/approvals.ts).
  const decisions = new RunDecisions({ input, rec, stepState, publish, refuse, onAbort: () => work.cancel() });
  decisions.install();
  const awaitApproval = (stepId: string, reason: string, gate = false) => decisions.awaitApproval(stepId, reason, gate);
  // Retry, skip or compensate a failed step, pause and resume (workflows/operator-controls.ts).
  const controls = new OperatorControls({ input, rec, stepState, publish });
  controls.install();

  // --- bookkeeping ----------------------------------------------------------------------------
  const compensations: { stepId: string; what: string; undo: () => Promise<string> }[] = [];
  const irreversible: string[] = [];

  function stepState(id: string): StepState {
    return rec.steps.find((s) => s.id === id)!;
  }

  let published: { step?: string; source?: string } = {};
  /** The step a failed run failed at: what its step attribute shows once it has ended. */
  let failedAt: string | undefined;
  /** The step the run is at; once it has ended, the one it ended at (the list in the Temporal UI shows it). */
  function stepShown(): string {
    if (rec.currentStep) return rec.currentStep;
    if (!leaner || rec.status === 'running') return '-';
    return failedAt ?? published.step ?? '-';
  }
  /** The step table in the run's details, and the search attributes when asked (the default). */
  function publish(attributes = true): void {
    const now = { step: stepShown(), source: rec.source };
    // Each upsert is an event and a visibility write; an unchanged value is not worth either.
    if (attributes && (!lean || now.step !== published.step || now.source !== published.source)) {
      wf.upsertSearchAttributes([
        { key: SA.step, value: now.step },
        ...(now.source ? [{ key: SA.source, value: now.source }] : []),
      ]);
      published = now;
    }
    const lines = rec.steps.map((s) => `| ${s.id} | ${s.region ?? ''} | ${s.status} | ${s.detail ?? s.error ?? ''} |`);
    wf.setCurrentDetails(
      [`**${rec.kind} ${rec.service}** ${rec.source ?? '?'} → ${rec.target} (${rec.mode}${rec.dryRun ? ', dry run' : ''}): ${rec.status}`,
        '', '| step | region | status | detail |', '|---|---|---|---|', ...lines].join('\n'),
    );
  }

  function holds(cond: Condition): boolean {
    switch (cond) {
      case 'planned': return input.mode === 'planned';
      case 'unplanned': return input.mode === 'unplanned';
      case 'fenced': return rec.fence?.verified === true;
      case 'not-fenced': return rec.fence?.verified !== true;
      case 'approval-required': return input.approval ? input.approval.required : input.policy.approval[input.mode] === 'required';
      case 'other-standbys': return input.regions.length > 2;
      case 'cache': return input.cache === true;
    }
  }

  // --- the actions ----------------------------------------------------------------------------
  const source = (): string => rec.source ?? refuse('the source region is not known yet: the runbook must start with preflight');

  let trafficError = '';
  /** The old primary as its rejoin left it (workers older than that report leave it out). */
  let sourceAfter: DbNodeState | undefined;
  /** The other regions, described for the record while the old primary rejoins (leaner runs). */
  let othersAfter: Promise<DbNodeState[]> | undefined;

  async function preflight(): Promise<void> {
    if (!input.regions.includes(input.target)) refuse(`${input.target} is not a region of ${input.service} (regions: ${input.regions.join(', ')})`);
    const residencyBreach = residencyViolation(input.policy.residency, input.service, input.target);
    if (residencyBreach) refuse(residencyBreach);
    if (input.source && !input.regions.includes(input.source)) refuse(`${input.source} is not a region of ${input.service}`);
    // Each region answers for itself; a region whose worker does not pick the task up within
    // seconds (a live one takes milliseconds) is down. Traffic is read at the same time: every
    // sequential await here is a workflow-task round trip added to the run.
    const [topology, trafficBefore] = await Promise.all([
      describeRegions(),
      on(input.target, { scheduleToStartTimeout: '3s', startToCloseTimeout: '30s', retry: { ...DEFAULT_RETRY, maximumAttempts: 3 } })
        .trafficDescribe({ service: input.service })
        .catch((err): undefined => {
          trafficError = errorMessage(err);
          return undefined;
        }),
    ]);
    rec.topology = topology;
    const target = topology.find((n) => n.region === input.target)!;
    if (!target.reachable) refuse(`target ${input.target} is unreachable: ${target.error}`);
    if (target.role === 'primary' && !target.fenced) refuse(`${input.target} is already the writer of ${input.service}`);

    if (!trafficBefore) refuse(`cannot read the traffic records of ${input.service} from ${input.target}: ${trafficError}`);
    rec.trafficBefore = trafficBefore;
    const writers = topology.filter((n) => n.reachable && n.role === 'primary' && !n.fenced && n.region !== input.target);
    rec.source = input.source ?? writers[0]?.region ?? primaryRegionOf(rec.trafficBefore);
    if (!rec.source) refuse(`cannot tell which region is the writer of ${input.service}; pass --from`);
    if (rec.source === input.target) refuse(`source and target are both ${input.target}`);
    // The next publish carries it, in the same workflow task.
    if (!lean) wf.upsertSearchAttributes([{ key: SA.source, value: rec.source }]);

    const src = topology.find((n) => n.region === rec.source)!;
    if (input.mode === 'planned') {
      if (!src.reachable) refuse(`planned failover needs the source ${rec.source} reachable (${src.error}); if it is down, run with --mode unplanned`);
      if (src.role !== 'primary') refuse(`${rec.source} is not a primary (it is a ${src.role})`);
      // A failback's target is the old primary, made a standby by the failback itself (failback.rejoinTarget).
      if (input.runbook.kind !== 'failback' && (target.role !== 'standby' || !target.streamingFrom)) {
        refuse(`planned failover needs ${input.target} streaming from the source; it is a ${target.role}${target.streamingFrom ? '' : ' that is not streaming'}`);
      }
    }
    stepState('preflight').detail = `writer ${rec.source}, target ${input.target} ${target.role}${target.streamingFrom ? ' streaming' : ''}`;
  }

  /** Each region answers for itself; one that does not pick the task up within seconds is down. */
  function describeRegions(regions = input.regions): Promise<DbNodeState[]> {
    return Promise.all(
      regions.map((region) => {
        const knownDown = rec.topology?.find((n) => n.region === region)?.reachable === false;
        return on(region, { scheduleToStartTimeout: knownDown ? '1s' : '3s', startToCloseTimeout: '10s', retry: { maximumAttempts: 1 } })
          .dbDescribe({ service: input.service })
          .catch((err): DbNodeState => ({ region, reachable: false, error: errorMessage(err) }));
      }),
    );
  }

  /**
   * After a promotion every other standby must follow the new primary, or it keeps replaying a
   * timeline that has ended. One that cannot now (down, or its worker is) is left to a watcher
   * that re-points it as soon as it answers, so the run does not wait on a dead region.
   */
  async function repointStandbys(opts: Partial<ActivityOptions>): Promise<string> {
    const others = input.regions.filter((r) => r !== source() && r !== input.target);
    rec.standbys = await Promise.all(
      others.map(async (region): Promise<StandbyFollow> => {
        const knownDown = rec.topology?.find((n) => n.region === region)?.reachable === false;
        try {
          const r = await on(region, { ...opts, scheduleToStartTimeout: knownDown ? '1s' : '10s', startToCloseTimeout: '2m', retry: { ...DEFAULT_RETRY, maximumAttempts: 3 } })
            .dbFollowWriter({ service: input.service, primaryRegion: input.target });
          return { region, followed: true, how: r.how };
        } catch (err) {
          const watcher = followWatcherWorkflowId(input.service, region);
          try {
            await wf.startChild(followWhenReachable, {
              workflowId: watcher,
              args: [{ service: input.service, region }],
              parentClosePolicy: 'ABANDON',
              staticSummary: `Re-point ${input.service}'s standby in ${region} when it answers`,
            });
          } catch (startErr) {
            // An earlier run's watcher is waiting already: it follows whichever region writes then.
            if (!(startErr instanceof WorkflowExecutionAlreadyStartedError)) throw startErr;
          }
          return { region, followed: false, error: errorMessage(err), watcher };
        }
      }),
    );
    if (others.length === 0) return 'no other standbys';
    return rec.standbys.map((s) => (s.followed ? `${s.region} follows (${s.how})` : `${s.region} not yet: ${s.error}; ${s.watcher} re-points it when it answers`)).join('; ');
  }

  /**
   * A watcher left by an earlier unplanned run fences its region as soon as it answers. When this
   * run promotes that region on purpose the watcher stands down (cancelled alongside the promote:
   * it has normally finished long before, since fencing a reachable standby ends it at once).
   */
  async function stopFenceWatcher(region: string): Promise<void> {
    try {
      await wf.getExternalWorkflowHandle(fenceOnReturnWorkflowId(input.service, region)).cancel();
    } catch {
      // No watcher for that region (never started, or already done): nothing to stop.
    }
  }

  /** Promotion without a verified fence risks two writers: it needs policy or a person (docs/safety.md, invariant 1). */
  async function guardPromotion(stepId: string): Promise<void> {
    if (rec.fence?.verified) {
      if (!rec.lag) refuse('promotion refused: the runbook must confirm the lag (db.waitForLag) after the fence and before promoting');
      return;
    }
    if (input.mode === 'planned') refuse('promotion refused: a planned failover promotes only after a verified fence');
    const state = await on(input.target).dbDescribe({ service: input.service });
    const estimate = rpoEstimateSeconds(state);
    rec.rpo = { lastReplayedCommitAt: state.lastReplayedCommitAt, lastHeardFromPrimaryAt: state.lastHeardFromPrimaryAt, estimateSeconds: estimate, zeroLoss: false };
    // With the source dead the standby often cannot say how far behind it was (its WAL receiver
    // is gone); policy allowDataLoss accepts that, but a known lag above budget still asks a person.
    const rpoText = estimate === undefined ? 'RPO unknown (the source is unreachable)' : `estimated RPO ${estimate}s`;
    if (input.policy.allowDataLoss && (estimate === undefined || estimate <= input.policy.rpoBudgetSeconds)) {
      rec.dataLossAck = { by: 'policy', reason: `allowDataLoss; ${rpoText}, budget ${input.policy.rpoBudgetSeconds}s` };
      return;
    }
    const why = `${source()} could not be fenced (${rec.fence?.error ?? 'no fence'}); ${rpoText}, budget ${input.policy.rpoBudgetSeconds}s. Promoting ${input.target} may lose writes`;
    const ack = await awaitApproval(stepId, why);
    rec.dataLossAck = { by: ack.by, reason: ack.reason ?? why };
    stepState(stepId).status = 'running';
  }

  async function fenceOnReturn(): Promise<void> {
    // A child that outlives the run: it keeps trying until the old primary answers, then fences it.
    const workflowId = fenceOnReturnWorkflowId(input.service, source());
    try {
      await wf.startChild(fenceWhenReachable, {
        workflowId,
        // After a managed failover that allowed data loss, the child also keeps AWS's snapshot of the old primary.
        args: [{ service: input.service, region: source(), ...(rec.promotion?.method === 'failover' ? { preserveSince: rec.promotion.lsn } : {}) }],
        parentClosePolicy: 'ABANDON',
        staticSummary: `Fence ${input.service} in ${source()} when it answers again`,
      });
    } catch (err) {
      // One watcher per region is enough: an earlier run's is still waiting.
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
    rec.fenceOnReturn = { workflowId };
  }

  /**
   * Preflight has just waited for every region; a source it found down gets one more short chance
   * (it may be back), not a second full wait: each second here is a second of RTO.
   */
  function boundedStart(step: Step & { action: ActionName }, configured: string): number {
    const placement = ACTIONS[step.action].placement;
    const region = placement === 'source' ? rec.source : placement === 'target' ? input.target : undefined;
    const knownDown = rec.topology?.find((n) => n.region === region)?.reachable === false;
    return knownDown ? Math.min(1000, durationMs(configured)) : durationMs(configured);
  }

  async function runAction(step: Step & { action: ActionName }, state: StepState): Promise<void> {
    const unplannedBounds = input.mode === 'unplanned' ? step.unplanned : undefined;
    const opts: Partial<ActivityOptions> = {
      summary: state.title,
      ...(step.timeout ? { startToCloseTimeout: durationMs(step.timeout) } : {}),
      ...(unplannedBounds?.scheduleToStart ? { scheduleToStartTimeout: boundedStart(step, unplannedBounds.scheduleToStart) } : {}),
      ...(unplannedBounds?.startToClose ? { startToCloseTimeout: durationMs(unplannedBounds.startToClose) } : {}),
      ...(unplannedBounds?.maximumAttempts ? { retry: { ...DEFAULT_RETRY, maximumAttempts: unplannedBounds.maximumAttempts } } : {}),
    };
    const svc = { service: input.service };
    // The schema refuses these too; a runbook passed in directly must not get past it either.
    if (step.action !== 'preflight' && isDrainKind(input.runbook.kind) !== isDrainAction(step.action)) {
      refuse(`step ${step.id}: ${step.action} cannot run in a ${input.runbook.kind} run`);
    }
    switch (step.action) {
      case 'preflight':
        if (isDrainKind(input.runbook.kind)) return runDrainAction('preflight', { input, rec, state, opts, refuse, compensations, stepId: step.id });
        return preflight();
      case 'db.fenceWrites': {
        state.region = source();
        compensations.push({ stepId: step.id, what: `unfence ${source()}`, undo: async () => (await on(source(), COMPENSATION).dbUnfenceWrites(svc)).detail });
        try {
          rec.fence = await on(source(), opts).dbFenceWrites(svc);
          state.detail = `${rec.fence.alreadyFenced ? 'already fenced' : 'fenced'} at ${rec.fence.lsn}, ${rec.fence.terminatedSessions} sessions ended, verified ${rec.fence.verified}`;
          if (!rec.fence.verified) throw ApplicationFailure.nonRetryable(`the fence in ${source()} could not be verified`);
        } catch (err) {
          if (unplannedBounds?.onFailure !== 'require-data-loss-ack') throw err;
          rec.fence = { region: source(), alreadyFenced: false, verified: false, lsn: '', terminatedSessions: 0, error: errorMessage(err) };
          state.detail = `source unreachable: ${rec.fence.error}`;
        }
        return;
      }
      case 'db.waitForLag': {
        state.region = input.target;
        if (!rec.fence?.verified) refuse('db.waitForLag needs a verified fence first (its WAL position is what the target must reach)');
        rec.lag = await on(input.target, { ...opts, startToCloseTimeout: durationMs(input.policy.lagTimeout) + 5000, retry: { maximumAttempts: 1 } })
          .dbWaitForLag({ ...svc, sourceLsn: rec.fence.lsn, timeoutMs: durationMs(input.policy.lagTimeout) });
        state.detail = `replayed ${rec.lag.replayedLsn} (${rec.lag.initialLagBytes} bytes behind at the fence) in ${rec.lag.waitedMs} ms`;
        return;
      }
      case 'db.promote': {
        state.region = input.target;
        await guardPromotion(step.id);
        irreversible.push(`promote ${input.target}: ${ACTIONS['db.promote'].irreversible}`);
        // The target becomes the writer on purpose: a fence watcher left on it stands down.
        [rec.promotion] = await Promise.all([
          on(input.target, opts).dbPromote({ ...svc, mode: input.mode, source: source() }),
          stopFenceWatcher(input.target),
        ]);
        if (rec.fence?.verified) rec.rpo = { zeroLoss: true, estimateSeconds: 0 };
        state.detail = `${rec.promotion.alreadyPrimary ? 'already primary' : 'promoted'}${rec.promotion.method ? ` by ${rec.promotion.method}` : `, timeline ${rec.promotion.timeline}`}${rec.promotion.detail ? `; ${rec.promotion.detail}` : ''}`;
        return;
      }
      case 'traffic.shift': {
        state.region = input.target;
        const before = rec.trafficBefore ?? (await on(input.target).trafficDescribe(svc));
        compensations.push({ stepId: step.id, what: `restore traffic records of ${input.service}`, undo: async () => describeTraffic(await on(input.target, COMPENSATION).trafficRestore({ ...svc, state: before })) });
        rec.traffic = await on(input.target, opts).trafficShift({ ...svc, from: source(), to: input.target });
        const kept = (rec.traffic.kept ?? []).map((k) => `; ${k.location} stays on ${k.region} (residency)`).join('');
        state.detail = `${describeTraffic(rec.traffic.after)}${kept}; clients may cache the old answer ${rec.traffic.maxCachedSeconds}s`;
        return;
      }
      case 'app.verifyWrites': {
        state.region = input.target;
        rec.verify = await on(input.target, opts).dbVerifyWrites(svc);
        rec.rtoMs = Date.now() - (input.triggeredAt ?? startedMs);
        state.detail = `write + read back in ${rec.verify.latencyMs} ms`;
        return;
      }
      case 'db.rejoinAsStandby': {
        state.region = source();
        const { state: after, ...rejoin } = await on(source(), { ...opts, startToCloseTimeout: step.timeout ? durationMs(step.timeout) : '5m' }).dbRejoinAsStandby({ ...svc, primaryRegion: input.target });
        rec.rejoin = rejoin;
        sourceAfter = after;
        state.detail = rec.rejoin.detail ?? `${rec.rejoin.rejoined ? 'rejoined' : 'already a standby'}, streaming from ${rec.rejoin.streamingFrom}${rec.rejoin.rewound ? ' (rewound)' : ''}`;
        return;
      }
      case 'db.repointStandbys':
        state.detail = await repointStandbys(opts);
        return;
      case 'db.fenceOnReturn':
        state.region = source();
        await fenceOnReturn();
        state.detail = `watching ${source()}: fenced as soon as it answers (${rec.fenceOnReturn!.workflowId})`;
        return;
      case 'http.call':
        return runAppStep({ input, rec, step, state, opts, source, compensations, irreversible, compensation: COMPENSATION });
      case 'reconcile.handoff': {
        // The replication state the target showed before promotion: how far behind it was (its
        // last news from the primary minus the last commit it had), the evidence a provider
        // without timelines (Aurora) dates the divergence by: the failure time minus this lag.
        const before = rec.promotion?.before;
        const lagMs = lagMsOf(before);
        const lag = lagMs === undefined ? undefined : { lagMs, lagObservedAt: before!.lastHeardFromPrimaryAt };
        rec.reconcile = {
          required: true,
          oldPrimary: source(),
          divergence: { timeline: rec.promotion?.timeline, lsn: rec.promotion?.before.lsn, failedAt: iso(input.triggeredAt ?? startedMs), ...lag },
        };
        state.detail = `writes ${source()} accepted after ${rec.promotion?.before.lsn ?? 'the last replayed position'} must be reconciled`;
        return;
      }
      default:
        // Reconciliation and failback (workflows/reconcile-actions.ts).
        if (isReconcileAction(step.action)) return runReconcileAction(step.action, { input, rec, state, opts, source, refuse, compensations, stepId: step.id });
        // Drain and undrain (workflows/drain-actions.ts).
        if (isDrainAction(step.action)) return runDrainAction(step.action, { input, rec, state, opts, refuse, compensations, stepId: step.id });
        // The service's cache (workflows/cache-actions.ts), gated on the condition `cache`.
        if (isCacheAction(step.action)) return runCacheAction(step.action, { input, rec, state, step, opts, source, refuse, compensations });
        return unimplementedAction(step.action);
    }
  }

  function planOf(): PlannedStep[] {
    const src = rec.topology?.find((n) => n.region === rec.source);
    const tgt = rec.topology?.find((n) => n.region === input.target);
    return input.runbook.steps.map((step) => {
      const spec = step.action ? specOf(step.action) : undefined;
      const placement = step.placement ?? spec?.placement ?? (step.action ? input.runbook.plugins?.[step.action]?.placement : undefined);
      const region = placement === 'source' ? rec.source : placement === 'target' ? input.target : undefined;
      const assumeFenced = input.mode === 'planned' || src?.reachable === true;
      const unmet = step.when.filter((c) => (c === 'fenced' ? !assumeFenced : c === 'not-fenced' ? assumeFenced : !holds(c)));
      const values: Record<string, unknown> = {};
      if (step.action === 'db.fenceWrites') Object.assign(values, { writerLsn: src?.lsn, reachable: src?.reachable });
      if (step.action === 'db.waitForLag') Object.assign(values, { targetReplayedLsn: tgt?.lsn, timeout: input.policy.lagTimeout });
      if (step.action === 'db.promote') Object.assign(values, { timeline: tgt?.timeline, streamingFrom: tgt?.streamingFrom });
      if (step.action === 'traffic.shift' && rec.trafficBefore && rec.source) {
        Object.assign(values, {
          before: describeTraffic(rec.trafficBefore),
          after: describeTraffic({ ...rec.trafficBefore, records: shiftedRecords(rec.trafficBefore.records, rec.source, input.target, input.trafficDrain) }),
        });
      }
      return {
        id: step.id,
        title: stepState(step.id).title,
        action: step.action ?? 'approval',
        region,
        taskQueue: region ? regionTaskQueue(region) : undefined,
        ...(unmet.length ? { skip: `condition not met: ${unmet.join(', ')}` } : {}),
        ...(Object.keys(values).length ? { values } : {}),
      };
    });
  }

  // --- the run --------------------------------------------------------------------------------
  async function runStep(step: Step): Promise<void> {
    const state = stepState(step.id);
    try {
      if (step.approval) {
        const ok = await awaitApproval(step.id, step.approval.reason, true);
        state.detail = `approved by ${ok.by}`;
      } else if (isCustomAction(step.action!)) {
        // Plugin steps (workflows/app-steps.ts).
        await runAppStep({ input, rec, step, state, opts: { summary: state.title, ...(step.timeout ? { startToCloseTimeout: durationMs(step.timeout) } : {}) }, source, compensations, irreversible, compensation: COMPENSATION });
      } else {
        await runAction(step as Step & { action: ActionName }, state);
      }
      state.status = 'done';
    } catch (err) {
      state.status = 'failed';
      state.error = errorMessage(err);
      failedAt ??= step.id;
      throw err;
    } finally {
      state.endedAt = iso();
    }
  }

  /** Whether a step runs now, saying why not on its state when it does not. */
  function runnable(step: Step): boolean {
    const state = stepState(step.id);
    if (input.dryRun && step.action !== 'preflight') {
      state.status = 'skipped';
      state.detail = 'dry run';
      return false;
    }
    if (!step.when.every(holds)) {
      state.status = 'skipped';
      state.detail = `condition not met: ${step.when.filter((c) => !holds(c)).join(', ')}`;
      return false;
    }
    return true;
  }

  /**
   * The steps right after `steps[i]` that may run alongside it (ACTIONS[…].alongside): each one
   * that waited for the one before would cost the run a workflow-task round trip and buy nothing.
   */
  function companions(i: number): Step[] {
    const first = input.runbook.steps[i]!;
    const group: Step[] = [];
    if (!lean || !first.action || input.dryRun) return group;
    for (const next of input.runbook.steps.slice(i + 1)) {
      const spec: ActionSpec | undefined = next.action ? specOf(next.action) : undefined;
      if (!spec?.alongside || ![first, ...group].every((s) => s.action && spec.alongside!.includes(s.action))) break;
      if (!next.when.every(holds)) break;
      group.push(next);
    }
    return group;
  }

  async function runSteps(): Promise<void> {
    const steps = input.runbook.steps;
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      if (!runnable(step)) continue;
      await controls.betweenSteps();
      const group = [step, ...companions(i)];
      i += group.length - 1;
      rec.currentStep = step.id;
      for (const s of group) {
        const state = stepState(s.id);
        state.status = 'running';
        state.startedAt = iso();
      }
      publish();
      // The old primary's rejoin, as the run's last step, acts on it alone: the record's view of
      // every other region is read meanwhile instead of in a round of its own after it.
      if (leaner && rec.promotion && group.length === 1 && step.action === 'db.rejoinAsStandby' && steps.slice(i + 1).every((s) => !wouldRun(s))) {
        othersAfter = describeRegions(input.regions.filter((r) => r !== source()));
      }
      // Every step of a group settles before the run moves on or compensates: an undo must never
      // race the step it undoes.
      const outcomes = await Promise.allSettled(group.map((s) => controls.asking(s, () => runStep(s))));
      const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failed) throw failed.reason;
      // Traffic and writes both count in the RTO: with the verification alongside the shift, the
      // service is back when the later of the two is done.
      if (group.length > 1 && rec.rtoMs !== undefined) rec.rtoMs = Date.now() - (input.triggeredAt ?? startedMs);
    }
    if (input.dryRun) rec.plan = planOf();
    // The audit record ends with where every region stands (docs/safety.md, invariant 7). Patched: a run that
    // was already past its last step when this shipped must replay without these activities.
    else if (othersAfter) rec.topologyAfter = await topologyAfterRejoin(othersAfter);
    else if (rec.promotion && (leaner || wf.patched('topology-after'))) rec.topologyAfter = await describeRegions();
  }

  /** The regions described during the rejoin, and the old primary as the rejoin reported it (or described now). */
  async function topologyAfterRejoin(others: Promise<DbNodeState[]>): Promise<DbNodeState[]> {
    const [described, [src]] = await Promise.all([others, sourceAfter ? Promise.resolve([sourceAfter]) : describeRegions([source()])]);
    return input.regions.map((r) => (r === source() ? src! : described.find((n) => n.region === r)!));
  }

  /** Whether a step would run if the run reached it now (runnable, without recording why not). */
  function wouldRun(step: Step): boolean {
    return !input.dryRun && step.when.every(holds);
  }

  async function compensate(): Promise<void> {
    const undone: string[] = [];
    const notUndone: string[] = [...irreversible];
    // A step retried by a person (onFailure: ask) registered its undo once per attempt: undo it once.
    const seen = new Set<string>();
    for (const c of [...compensations].reverse()) {
      if (seen.has(`${c.stepId}\n${c.what}`)) continue;
      seen.add(`${c.stepId}\n${c.what}`);
      try {
        const detail = await c.undo();
        undone.push(`${c.what}: ${detail}`);
        const s = stepState(c.stepId);
        if (s.status === 'done' || s.status === 'failed') s.status = 'compensated';
      } catch (err) {
        notUndone.push(`${c.what}: ${errorMessage(err)}`);
      }
    }
    rec.compensation = { undone, notUndone };
  }

  // The first step sets the attributes in this same workflow task; a run with no step to run sets
  // them at its end.
  publish(!lean);
  // A signal, not notifyGuardianNow: a local activity would hold the preflight's activities back
  // until the guardian answered, and the outcome that comes back usually lands while they run.
  // (Measured: its workflow task is one fewer, but the first task, on the critical path, grew.)
  void notifyGuardian(rec);
  try {
    await work.run(runSteps);
    rec.status = 'succeeded';
    rec.currentStep = undefined;
    rec.endedAt = iso();
    publish();
    await (lean ? notifyGuardianNow(rec) : notifyGuardian(rec));
    await decisions.drain();
    return rec;
  } catch (err) {
    const aborted = rec.abort !== undefined && (wf.isCancellation(err) || err instanceof wf.ActivityFailure);
    rec.status = aborted ? 'aborted' : 'failed';
    rec.error = aborted ? `aborted by ${rec.abort!.by}: ${rec.abort!.reason}` : errorMessage(err);
    for (const s of rec.steps) if (s.status === 'running' || s.status === 'waiting') s.status = 'failed';
    // Compensation must finish even though the run is being cancelled (docs/safety.md, invariant 5).
    await wf.CancellationScope.nonCancellable(compensate);
    rec.endedAt = iso();
    rec.currentStep = undefined;
    publish();
    await (lean ? notifyGuardianNow(rec) : notifyGuardian(rec));
    await decisions.drain();
    const refused = err instanceof ApplicationFailure && err.type === FAILURE.refused;
    throw ApplicationFailure.create({
      type: aborted ? FAILURE.aborted : refused ? FAILURE.refused : FAILURE.failed,
      message: rec.error,
      details: [rec],
      nonRetryable: true,
    });
  }
}

/** A catalog action's spec; plugin steps (custom.<name>) have none here (RunbookDoc.plugins). */
function specOf(action: string): ActionSpec | undefined {
  return isCustomAction(action) ? undefined : ACTIONS[action as ActionName];
}

function describeTraffic(state: TrafficState): string {
  return describeRecords(state.records);
}

/**
 * How far behind the target was when it last heard from the source: the commits it had
 * replayed trail the source's last message by this much. An estimate (keep-alives from an idle
 * source inflate it); reconciliation counts what was actually lost.
 */
function rpoEstimateSeconds(state: DbNodeState): number | undefined {
  const lagMs = lagMsOf(state);
  return lagMs === undefined ? undefined : Math.round(lagMs / 100) / 10;
}

/**
 * Keeps trying until the region's standby answers, then points it at the service's writer of
 * that moment (found by the region's own worker), so a later failover never leaves it behind.
 */
export async function followWhenReachable(input: { service: string; region: string }): Promise<string> {
  const acts = wf.proxyActivities<RegionActivities>({
    taskQueue: regionTaskQueue(input.region),
    startToCloseTimeout: '2m',
    heartbeatTimeout: '15s',
    scheduleToCloseTimeout: '30 days',
    retry: { initialInterval: '2s', backoffCoefficient: 1.5, maximumInterval: '30s', nonRetryableErrorTypes: ['NotStandby'] },
  });
  const r = await acts.dbFollowWriter({ service: input.service });
  return `${input.region} follows ${r.streamingFrom} (${r.how ?? (r.rejoined ? 'rejoined' : 'already')})`;
}

/** Keeps trying to fence a region's old primary until it answers; see runbook's db.fenceOnReturn. */
export async function fenceWhenReachable(input: { service: string; region: string; preserveSince?: string }): Promise<string> {
  const acts = wf.proxyActivities<RegionActivities>({
    taskQueue: regionTaskQueue(input.region),
    startToCloseTimeout: '30s',
    scheduleToCloseTimeout: '30 days',
    // A returning old primary is a second writer until fenced: keep the gap short.
    retry: { initialInterval: '1s', backoffCoefficient: 1.5, maximumInterval: '5s' },
  });
  const fence = await acts.dbFenceWrites({ service: input.service });
  const fenced = `${input.region} ${fence.alreadyFenced ? 'was already fenced' : 'fenced'} at ${fence.lsn}`;
  if (!input.preserveSince) return fenced;
  // The evidence appears when the region is back, possibly long after: poll gently.
  const slow = wf.proxyActivities<RegionActivities>({
    taskQueue: regionTaskQueue(input.region),
    startToCloseTimeout: '60s',
    scheduleToCloseTimeout: '7 days',
    retry: { initialInterval: '10s', backoffCoefficient: 2, maximumInterval: '5m' },
  });
  const kept = await slow.dbPreserve({ service: input.service, since: input.preserveSince });
  return `${fenced}; ${kept.detail}`;
}
