// The catalog's actions (src/contract/runbook/catalog.ts) as the interpreter runs them: the
// database and traffic steps here, each on the worker of the region it acts on; reconciliation,
// drain, cache and application steps in their own files, dispatched from runAction's switch.
// The safety rules of promotion (docs/safety.md, invariants 1 and 3) are enforced here, whatever
// order the runbook puts its steps in.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { ActivityOptions } from '@temporalio/common';
import type {
  CacheActivities,
  DbNodeState,
  LagConfirmedDetails,
  LagResult,
  PromoteResult,
  RegionActivities,
  TrafficState,
} from '../src/contract/activities';
import { ACTIONS, type ActionName } from '../src/contract/runbook/catalog';
import { durationMs } from '../src/contract/runbook/duration';
import { unimplementedAction } from '../src/contract/runbook/exhaustive';
import { fenceOnReturnWorkflowId, followWatcherWorkflowId, regionTaskQueue } from '../src/contract/runbook/ids';
import type { StandbyFollow, Step, StepState } from '../src/contract/runbook/types';
import { describeRecords, primaryRegionOf } from '../src/contract/traffic/plan';
import { residencyViolation } from '../src/contract/policy/residency';
import { lagMsOf } from '../src/contract/policy/target';
import { SA } from './search-attributes';
import { isReconcileAction, runReconcileAction } from './reconcile-actions';
import { isDrainAction, isDrainKind, runDrainAction } from './drain-actions';
import { isCacheAction, runCacheAction } from './cache-actions';
import { runAppStep } from './app-steps';
import { COMPENSATION } from './compensation';
import { errorMessage, refuse } from './failures';
import { DEFAULT_RETRY, iso, regionIn, STEP_TIMEOUT_MS, type RunState } from './run-state';
import { silentWriter } from './writer';

/** Waits for a person's approval of a step (workflows/approvals.ts). */
export type AwaitApproval = (
  stepId: string,
  reason: string,
  gate?: boolean,
) => Promise<{ by: string; reason?: string }>;

async function preflight(run: RunState): Promise<void> {
  const { input, rec } = run;
  let trafficError = '';
  if (!input.regions.includes(input.target))
    refuse(`${input.target} is not a region of ${input.service} (regions: ${input.regions.join(', ')})`);
  const residencyBreach = residencyViolation(input.policy.residency, input.service, input.target);
  if (residencyBreach) refuse(residencyBreach);
  if (input.source && !input.regions.includes(input.source))
    refuse(`${input.source} is not a region of ${input.service}`);
  // Each region answers for itself; a region whose worker does not pick the task up within
  // seconds (a live one takes milliseconds) is down. Traffic is read at the same time: every
  // sequential await here is a workflow-task round trip added to the run.
  const [topology, trafficBefore] = await Promise.all([
    describeRegions(run),
    regionIn(input.target, {
      scheduleToStartTimeout: '3s',
      startToCloseTimeout: '30s',
      retry: { ...DEFAULT_RETRY, maximumAttempts: 3 },
    })
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

  if (!trafficBefore)
    refuse(`cannot read the traffic records of ${input.service} from ${input.target}: ${trafficError}`);
  rec.trafficBefore = trafficBefore;
  const writers = topology.filter((n) => n.reachable && n.role === 'primary' && !n.fenced && n.region !== input.target);
  const unseen =
    writers.length === 0 && !input.source
      ? silentWriter(topology, trafficBefore, { reported: input.reportedDown })
      : undefined;
  rec.source = input.source ?? writers[0]?.region ?? unseen ?? fencedWriter(topology, trafficBefore);
  const silent = topology.filter((n) => !n.reachable).map((n) => n.region);
  if (!rec.source)
    refuse(
      `cannot tell which region is the writer of ${input.service}: none answers as an unfenced primary${silent.length ? `, and ${silent.join(', ')} ${silent.length === 1 ? 'does' : 'do'} not answer` : ''}; name it with --from`,
    );
  if (rec.source === input.target) refuse(`source and target are both ${input.target}`);
  // The next publish carries it, in the same workflow task.
  if (!run.lean) wf.upsertSearchAttributes([{ key: SA.source, value: rec.source }]);

  const src = topology.find((n) => n.region === rec.source)!;
  if (input.mode === 'planned') {
    if (!src.reachable)
      refuse(
        `planned failover needs the source ${rec.source} reachable (${src.error}); if it is down, run with --mode unplanned`,
      );
    if (src.role !== 'primary') refuse(`${rec.source} is not a primary (it is a ${src.role})`);
    // A failback's target is the old primary, made a standby by the failback itself (failback.rejoinTarget).
    if (input.runbook.kind !== 'failback' && (target.role !== 'standby' || !target.streamingFrom)) {
      refuse(
        `planned failover needs ${input.target} streaming from the source; it is a ${target.role}${target.streamingFrom ? '' : ' that is not streaming'}`,
      );
    }
  }
  run.stepState('preflight').detail =
    `writer ${rec.source}${unseen ? ` (${unseen === input.reportedDown ? 'reported down, ' : ''}does not answer)` : ''}, target ${input.target} ${target.role}${target.streamingFrom ? ' streaming' : ''}`;
}

/** A primary whose fence a run could not undo, where the records send clients: still the writer's database. */
function fencedWriter(topology: DbNodeState[], traffic: TrafficState): string | undefined {
  const byRecords = primaryRegionOf(traffic);
  return topology.find((n) => n.reachable && n.role === 'primary' && n.region === byRecords)?.region;
}

/** Each region answers for itself; one that does not pick the task up within seconds is down. */
export function describeRegions(run: RunState, regions = run.input.regions): Promise<DbNodeState[]> {
  const { input, rec } = run;
  return Promise.all(
    regions.map((region) => {
      const knownDown = rec.topology
        ? rec.topology.find((n) => n.region === region)?.reachable === false
        : region === input.reportedDown;
      return regionIn(region, {
        scheduleToStartTimeout: knownDown ? '1s' : '3s',
        startToCloseTimeout: '10s',
        retry: { maximumAttempts: 1 },
      })
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
async function repointStandbys(run: RunState, opts: Partial<ActivityOptions>): Promise<string> {
  const { input, rec } = run;
  const others = input.regions.filter((r) => r !== run.source() && r !== input.target);
  rec.standbys = await Promise.all(
    others.map(async (region): Promise<StandbyFollow> => {
      const knownDown = rec.topology?.find((n) => n.region === region)?.reachable === false;
      try {
        const r = await regionIn(region, {
          ...opts,
          scheduleToStartTimeout: knownDown ? '1s' : '10s',
          startToCloseTimeout: '2m',
          retry: { ...DEFAULT_RETRY, maximumAttempts: 3 },
        }).dbFollowWriter({ service: input.service, primaryRegion: input.target });
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
  return rec.standbys
    .map((s) =>
      s.followed
        ? `${s.region} follows (${s.how})`
        : `${s.region} not yet: ${s.error}; ${s.watcher} re-points it when it answers`,
    )
    .join('; ');
}

/**
 * A watcher left by an earlier unplanned run fences its region as soon as it answers. When this
 * run promotes that region on purpose the watcher stands down (cancelled alongside the promote:
 * it has normally finished long before, since fencing a reachable standby ends it at once).
 */
async function stopFenceWatcher(service: string, region: string): Promise<void> {
  try {
    await wf.getExternalWorkflowHandle(fenceOnReturnWorkflowId(service, region)).cancel();
  } catch {
    // No watcher for that region (never started, or already done): nothing to stop.
  }
}

/** The WAL position the target must have replayed before it is promoted: the verified fence's. */
function lagToReach(run: RunState): { sourceLsn: string; timeoutMs: number } {
  const { fence } = run.rec;
  if (!fence?.verified)
    refuse('db.waitForLag needs a verified fence first (its WAL position is what the target must reach)');
  return { sourceLsn: fence.lsn, timeoutMs: durationMs(run.input.policy.lagTimeout) };
}

const lagDetail = (lag: LagResult): string =>
  `replayed ${lag.replayedLsn} (${lag.initialLagBytes} bytes behind at the fence) in ${lag.waitedMs} ms`;

const promotionDetail = (p: PromoteResult): string =>
  `${p.alreadyPrimary ? 'already primary' : 'promoted'}${p.method ? ` by ${p.method}` : `, timeline ${p.timeline}`}${p.detail ? `; ${p.detail}` : ''}`;

/** What a dbPromoteAfterLag failure says of the lag: confirmed before the promotion failed, or not. */
function lagConfirmedBy(err: unknown): LagResult | undefined {
  const cause = err instanceof wf.ActivityFailure ? err.cause : undefined;
  const details =
    cause instanceof ApplicationFailure ? (cause.details?.[0] as LagConfirmedDetails | undefined) : undefined;
  return details?.lagConfirmed;
}

/**
 * A db.waitForLag step and the db.promote step right after it, run as one activity on the target
 * (dbPromoteAfterLag): the promotion comes one workflow-task round trip sooner, and nothing comes
 * between the confirmation and the promotion. The interpreter (workflows/runbook.ts) pairs only
 * plain steps; each keeps its place in the record. A failure before the lag was confirmed fails
 * the lag step and leaves the promotion pending, as if the steps had run one by one; a failure
 * after it fails the promotion.
 */
export async function promoteAfterLag(run: RunState, lag: StepState, promote: StepState): Promise<void> {
  const { input, rec } = run;
  lag.region = promote.region = input.target;
  let confirmed: LagResult | undefined;
  try {
    const reach = lagToReach(run);
    run.compensations.irreversible.push(`promote ${input.target}: ${ACTIONS['db.promote'].irreversible}`);
    const [done] = await Promise.all([
      regionIn(input.target, {
        summary: `${lag.title}, then ${promote.title}`,
        startToCloseTimeout: reach.timeoutMs + STEP_TIMEOUT_MS,
      }).dbPromoteAfterLag({ service: input.service, mode: input.mode, source: run.source(), ...reach }),
      stopFenceWatcher(input.service, input.target),
    ]);
    const { lag: reached, ...promotion } = done;
    confirmed = reached;
    rec.promotion = promotion;
    rec.rpo = { zeroLoss: true, estimateSeconds: 0 };
    promote.detail = promotionDetail(promotion);
    promote.status = 'done';
  } catch (err) {
    confirmed = lagConfirmedBy(err);
    const failed = confirmed ? promote : lag;
    if (!confirmed) {
      promote.status = 'pending';
      promote.startedAt = undefined;
    }
    failed.status = 'failed';
    failed.error = errorMessage(err);
    run.failedAt ??= failed.id;
    throw err;
  } finally {
    if (confirmed) {
      rec.lag = confirmed;
      lag.detail = `${lagDetail(confirmed)}, by the promotion's activity`;
      lag.status = 'done';
    }
    lag.endedAt = iso();
    if (promote.startedAt) promote.endedAt = lag.endedAt;
  }
}

/** Promotion without a verified fence risks two writers: it needs policy or a person (docs/safety.md, invariant 1). */
async function guardPromotion(run: RunState, stepId: string, awaitApproval: AwaitApproval): Promise<void> {
  const { input, rec } = run;
  if (rec.fence?.verified) {
    if (!rec.lag)
      refuse(
        'promotion refused: the runbook must confirm the lag (db.waitForLag) after the fence and before promoting',
      );
    return;
  }
  if (input.mode === 'planned') refuse('promotion refused: a planned failover promotes only after a verified fence');
  const state = await regionIn(input.target).dbDescribe({ service: input.service });
  const estimate = rpoEstimateSeconds(state);
  rec.rpo = {
    lastReplayedCommitAt: state.lastReplayedCommitAt,
    lastHeardFromPrimaryAt: state.lastHeardFromPrimaryAt,
    estimateSeconds: estimate,
    zeroLoss: false,
  };
  // With the source dead the standby often cannot say how far behind it was (its WAL receiver
  // is gone); policy allowDataLoss accepts that, but a known lag above budget still asks a person.
  const rpoText = estimate === undefined ? 'RPO unknown (the source is unreachable)' : `estimated RPO ${estimate}s`;
  if (input.policy.allowDataLoss && (estimate === undefined || estimate <= input.policy.rpoBudgetSeconds)) {
    rec.dataLossAck = { by: 'policy', reason: `allowDataLoss; ${rpoText}, budget ${input.policy.rpoBudgetSeconds}s` };
    return;
  }
  const why = `${run.source()} could not be fenced (${rec.fence?.error ?? 'no fence'}); ${rpoText}, budget ${input.policy.rpoBudgetSeconds}s. Promoting ${input.target} may lose writes`;
  const ack = await awaitApproval(stepId, why);
  rec.dataLossAck = { by: ack.by, reason: ack.reason ?? why };
  run.stepState(stepId).status = 'running';
}

async function fenceOnReturn(run: RunState): Promise<void> {
  const { input, rec } = run;
  // A child that outlives the run: it keeps trying until the old primary answers, then fences it.
  const workflowId = fenceOnReturnWorkflowId(input.service, run.source());
  try {
    await wf.startChild(fenceWhenReachable, {
      workflowId,
      // After a managed failover that allowed data loss, the child also keeps AWS's snapshot of the old primary.
      args: [
        {
          service: input.service,
          region: run.source(),
          ...(rec.promotion?.method === 'failover' ? { preserveSince: rec.promotion.lsn } : {}),
          // Its cache comes back a writer too (an unplanned run could not re-point it): the child
          // makes it follow this run's target. Patched: a run that started before replays its child's input.
          ...(input.cache && wf.patched('cache-on-return') ? { cachePrimary: input.target } : {}),
        },
      ],
      parentClosePolicy: 'ABANDON',
      staticSummary: `Fence ${input.service} in ${run.source()} when it answers again`,
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
function boundedStart(run: RunState, step: Step & { action: ActionName }, configured: string): number {
  const { input, rec } = run;
  const placement = ACTIONS[step.action].placement;
  const region = placement === 'source' ? rec.source : placement === 'target' ? input.target : undefined;
  const knownDown = rec.topology?.find((n) => n.region === region)?.reachable === false;
  return knownDown ? Math.min(1000, durationMs(configured)) : durationMs(configured);
}

export async function runAction(
  run: RunState,
  step: Step & { action: ActionName },
  state: StepState,
  awaitApproval: AwaitApproval,
): Promise<void> {
  const { input, rec } = run;
  const source = (): string => run.source();
  const unplannedBounds = input.mode === 'unplanned' ? step.unplanned : undefined;
  const opts: Partial<ActivityOptions> = {
    summary: state.title,
    ...(step.timeout ? { startToCloseTimeout: durationMs(step.timeout) } : {}),
    ...(unplannedBounds?.scheduleToStart
      ? { scheduleToStartTimeout: boundedStart(run, step, unplannedBounds.scheduleToStart) }
      : {}),
    ...(unplannedBounds?.startToClose ? { startToCloseTimeout: durationMs(unplannedBounds.startToClose) } : {}),
    ...(unplannedBounds?.maximumAttempts
      ? { retry: { ...DEFAULT_RETRY, maximumAttempts: unplannedBounds.maximumAttempts } }
      : {}),
  };
  const svc = { service: input.service };
  // What the reconciliation, drain and cache actions (their own files) are handed.
  const ctx = { input, rec, state, step, opts, source, refuse, compensations: run.compensations, stepId: step.id };
  // The schema refuses these too; a runbook passed in directly must not get past it either.
  if (step.action !== 'preflight' && isDrainKind(input.runbook.kind) !== isDrainAction(step.action)) {
    refuse(`step ${step.id}: ${step.action} cannot run in a ${input.runbook.kind} run`);
  }
  switch (step.action) {
    case 'preflight':
      if (isDrainKind(input.runbook.kind)) return runDrainAction('preflight', ctx);
      return preflight(run);
    case 'db.fenceWrites': {
      state.region = run.source();
      run.compensations.register(
        step.id,
        step.action,
        `unfence ${run.source()}`,
        async () => (await regionIn(run.source(), COMPENSATION).dbUnfenceWrites(svc)).detail,
      );
      try {
        rec.fence = await regionIn(run.source(), opts).dbFenceWrites(svc);
        state.detail = `${rec.fence.alreadyFenced ? 'already fenced' : 'fenced'} at ${rec.fence.lsn}, ${rec.fence.terminatedSessions} sessions ended, verified ${rec.fence.verified}`;
        if (!rec.fence.verified)
          throw ApplicationFailure.nonRetryable(`the fence in ${run.source()} could not be verified`);
      } catch (err) {
        if (unplannedBounds?.onFailure !== 'require-data-loss-ack') throw err;
        rec.fence = {
          region: run.source(),
          alreadyFenced: false,
          verified: false,
          lsn: '',
          terminatedSessions: 0,
          error: errorMessage(err),
        };
        state.detail = `source unreachable: ${rec.fence.error}`;
      }
      return;
    }
    case 'db.waitForLag': {
      state.region = input.target;
      const reach = lagToReach(run);
      rec.lag = await regionIn(input.target, {
        ...opts,
        startToCloseTimeout: reach.timeoutMs + 5000,
        retry: { maximumAttempts: 1 },
      }).dbWaitForLag({ ...svc, ...reach });
      state.detail = lagDetail(rec.lag);
      return;
    }
    case 'db.promote': {
      state.region = input.target;
      await guardPromotion(run, step.id, awaitApproval);
      run.compensations.irreversible.push(`promote ${input.target}: ${ACTIONS['db.promote'].irreversible}`);
      // The target becomes the writer on purpose: a fence watcher left on it stands down.
      [rec.promotion] = await Promise.all([
        regionIn(input.target, opts).dbPromote({ ...svc, mode: input.mode, source: run.source() }),
        stopFenceWatcher(input.service, input.target),
      ]);
      if (rec.fence?.verified) rec.rpo = { zeroLoss: true, estimateSeconds: 0 };
      state.detail = promotionDetail(rec.promotion);
      return;
    }
    case 'traffic.shift': {
      state.region = input.target;
      const before = rec.trafficBefore ?? (await regionIn(input.target).trafficDescribe(svc));
      run.compensations.register(step.id, step.action, `restore traffic records of ${input.service}`, async () =>
        describeTraffic(await regionIn(input.target, COMPENSATION).trafficRestore({ ...svc, state: before })),
      );
      rec.traffic = await regionIn(input.target, opts).trafficShift({ ...svc, from: run.source(), to: input.target });
      const kept = (rec.traffic.kept ?? []).map((k) => `; ${k.location} stays on ${k.region} (residency)`).join('');
      state.detail = `${describeTraffic(rec.traffic.after)}${kept}; clients may cache the old answer ${rec.traffic.maxCachedSeconds}s`;
      return;
    }
    case 'app.verifyWrites': {
      state.region = input.target;
      rec.verify = await regionIn(input.target, opts).dbVerifyWrites(svc);
      rec.rtoMs = Date.now() - run.triggeredMs;
      rec.rtoFrom = iso(run.triggeredMs);
      state.detail = `write + read back in ${rec.verify.latencyMs} ms`;
      return;
    }
    case 'db.rejoinAsStandby': {
      state.region = run.source();
      const { state: after, ...rejoin } = await regionIn(run.source(), {
        ...opts,
        startToCloseTimeout: step.timeout ? durationMs(step.timeout) : '5m',
      }).dbRejoinAsStandby({ ...svc, primaryRegion: input.target });
      rec.rejoin = rejoin;
      run.sourceAfter = after;
      state.detail =
        rec.rejoin.detail ??
        `${rec.rejoin.rejoined ? 'rejoined' : 'already a standby'}, streaming from ${rec.rejoin.streamingFrom}${rec.rejoin.rewound ? ' (rewound)' : ''}`;
      return;
    }
    case 'db.repointStandbys':
      state.detail = await repointStandbys(run, opts);
      return;
    case 'db.fenceOnReturn':
      state.region = run.source();
      await fenceOnReturn(run);
      state.detail = `watching ${run.source()}: fenced as soon as it answers (${rec.fenceOnReturn!.workflowId})`;
      return;
    case 'http.call':
      return runAppStep({ input, rec, step, state, opts, source, compensations: run.compensations });
    case 'reconcile.handoff': {
      // The replication state the target showed before promotion: how far behind it was (its
      // last news from the primary minus the last commit it had), the evidence a provider
      // without timelines (Aurora) dates the divergence by: the failure time minus this lag.
      const before = rec.promotion?.before;
      const lagMs = lagMsOf(before);
      const lag = lagMs === undefined ? undefined : { lagMs, lagObservedAt: before!.lastHeardFromPrimaryAt };
      rec.reconcile = {
        required: true,
        oldPrimary: run.source(),
        divergence: {
          timeline: rec.promotion?.timeline,
          lsn: rec.promotion?.before.lsn,
          failedAt: iso(run.triggeredMs),
          ...lag,
        },
      };
      state.detail = `writes ${run.source()} accepted after ${rec.promotion?.before.lsn ?? 'the last replayed position'} must be reconciled`;
      return;
    }
    default:
      // Reconciliation and failback (workflows/reconcile-actions.ts).
      if (isReconcileAction(step.action)) return runReconcileAction(step.action, ctx);
      // Drain and undrain (workflows/drain-actions.ts).
      if (isDrainAction(step.action)) return runDrainAction(step.action, ctx);
      // The service's cache (workflows/cache-actions.ts), gated on the condition `cache`.
      if (isCacheAction(step.action)) return runCacheAction(step.action, ctx);
      return unimplementedAction(step.action);
  }
}

export function describeTraffic(state: TrafficState): string {
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

// The watchers wait up to 30 days for a region to answer, longer than any deploy keeps an old
// control version: like the guardian they move to the current version at their next task
// (workers/versioning.ts), so a change to their commands must be behind patched().
wf.setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, followWhenReachable);
wf.setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, fenceWhenReachable);

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
    retry: {
      initialInterval: '2s',
      backoffCoefficient: 1.5,
      maximumInterval: '30s',
      nonRetryableErrorTypes: ['NotStandby'],
    },
  });
  const r = await acts.dbFollowWriter({ service: input.service });
  return `${input.region} follows ${r.streamingFrom} (${r.how ?? (r.rejoined ? 'rejoined' : 'already')})`;
}

/** Keeps trying to fence a region's old primary until it answers; see runbook's db.fenceOnReturn. */
export async function fenceWhenReachable(input: {
  service: string;
  region: string;
  preserveSince?: string;
  cachePrimary?: string;
}): Promise<string> {
  const acts = wf.proxyActivities<RegionActivities & CacheActivities>({
    taskQueue: regionTaskQueue(input.region),
    startToCloseTimeout: '30s',
    scheduleToCloseTimeout: '30 days',
    // A returning old primary is a second writer until fenced: keep the gap short.
    retry: { initialInterval: '1s', backoffCoefficient: 1.5, maximumInterval: '5s' },
  });
  const fence = await acts.dbFenceWrites({ service: input.service });
  let fenced = `${input.region} ${fence.alreadyFenced ? 'was already fenced' : 'fenced'} at ${fence.lsn}`;
  if (input.cachePrimary) {
    // Only when the run asked (a service with a cache): older watchers schedule nothing new.
    // REPLICAOF replaces what the returned cache wrote alone; retried until it follows.
    const r = await acts.cacheRepoint({
      service: input.service,
      primaryRegion: input.cachePrimary,
      regions: [input.region],
      untilFollowing: true,
    });
    fenced += `; its cache: ${r.regions.map((x) => x.detail).join('; ')}`;
  }
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
