// The guardian: one long-lived workflow per service (id regionshift-guardian-<service>) that
// receives every alarm about the service and owns the decision to fail over: debounce, cooldown,
// single flight and the approval policy of the runs it starts. It starts the failover runbook as
// an abandoned child with the service's run id (regionshift-<service>), so runs started from the
// CLI, Slack and alarms share single flight. Runs tell it when they start and end (notifyGuardian)
// so the cooldown counts every run, whoever started it.
//
// A failing region that is not the writer is drained instead (runbooks/drain.yaml), through the
// same debounce, cooldown, single flight and approval policy; once it has been healthy for
// triggers.undrainAfter, the guardian undrains it with the records its drain recorded.
//
// Also here: the health watcher (regionshift-health-<service>), which polls the service's Route 53
// health checks and delivers failing ones to the guardian as alarms.
import * as wf from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { durationMs } from '../src/contract/runbook/duration';
import { chooseTarget } from '../src/contract/policy/target';
import { regionTaskQueue, runWorkflowId } from '../src/contract/runbook/ids';
import type { DbNodeState, RegionActivities } from '../src/contract/activities';
import type { GuardianNoticeActivities } from '../activities/guardian';
import type { AttachedAlarm, RunInput, RunRecord } from '../src/contract/runbook/types';
import { guardianWorkflowId, INTAKE_TASK_QUEUE } from '../src/contract/guardian/ids';
import { healthVerdict, type HealthVerdict } from '../src/contract/guardian/health-verdict';
import { drainHandoffOf, runSummaryOf } from '../src/contract/guardian/summary';
import type {
  AlarmSignal,
  AlarmTrack,
  Decision,
  DecisionKind,
  FailingSignal,
  GuardianInput,
  GuardianSeed,
  GuardianSettings,
  GuardianState,
  GuardianView,
  HealthActivities,
  HealthWatcherInput,
  HealthWatcherView,
  RunSummary,
} from '../src/contract/guardian/types';
import { SA } from './search-attributes';

export const alarmSignal = wf.defineSignal<[AlarmSignal[]]>('alarm');
export const configureSignal = wf.defineSignal<[{ settings: GuardianSettings; seed?: GuardianSeed }]>('configure');
export const runStartedSignal = wf.defineSignal<[RunSummary]>('runStarted');
export const runEndedSignal = wf.defineSignal<[RunSummary]>('runEnded');
export const guardianStateQuery = wf.defineQuery<GuardianView>('state');

const MAX_DECISIONS = 30;
const MAX_ALARMS = 100;
const MAX_FAILING_PER_REGION = 50;
const DEFAULT_MAX_HISTORY = 5000;
/** Repeats of an alarm already on the run's record are sent to the run at most this often. */
const ATTACH_EVERY_MS = 1000;
/** Alarm ids remembered: more than the intake's journal forwards in one batch. */
const RECENT_IDS = 1024;

const iso = (ms: number): string => new Date(ms).toISOString();

export function initialState(seed?: GuardianSeed): GuardianState {
  return {
    primary: seed?.primary,
    current: seed?.current,
    lastRun: seed?.lastRun,
    alarms: [],
    failing: {},
    decisions: [],
    received: 0,
    runsStarted: 0,
    generation: 0,
  };
}

function note(state: GuardianState, now: number, kind: DecisionKind, detail: string, region?: string): Decision {
  const last = state.decisions[state.decisions.length - 1];
  // An alarm storm repeats one decision a thousand times: count it instead of listing it.
  if (last && last.kind === kind && last.region === region && last.detail === detail) {
    last.count++;
    last.at = iso(now);
    return last;
  }
  const d: Decision = { at: iso(now), kind, detail, count: 1, ...(region ? { region } : {}) };
  state.decisions.push(d);
  if (state.decisions.length > MAX_DECISIONS) state.decisions.splice(0, state.decisions.length - MAX_DECISIONS);
  return d;
}

export function alarmKey(a: Pick<AlarmSignal, 'source' | 'name' | 'region' | 'vantage'>): string {
  // Each vantage point's alarm is its own: one resolving must not take back another's signals.
  return `${a.source}:${a.name}:${a.region}${a.vantage ? `@${a.vantage}` : ''}`;
}

export function triggerOf(a: Pick<AlarmSignal, 'source' | 'name'>): string {
  return `alarm:${a.source}:${a.name}`;
}

function track(state: GuardianState, a: AlarmSignal): AlarmTrack {
  const key = alarmKey(a);
  let t = state.alarms.find((x) => x.key === key);
  if (!t) {
    t = {
      key,
      source: a.source,
      name: a.name,
      region: a.region,
      severity: a.severity,
      state: a.state,
      firstAt: iso(a.at),
      lastAt: iso(a.at),
      count: 0,
    };
    state.alarms.push(t);
    if (state.alarms.length > MAX_ALARMS) {
      state.alarms.sort((x, y) => Date.parse(x.lastAt) - Date.parse(y.lastAt));
      state.alarms.splice(0, state.alarms.length - MAX_ALARMS);
    }
  }
  if (t.state !== a.state) t.firstAt = iso(a.at);
  t.state = a.state;
  t.severity = a.severity;
  t.lastAt = iso(Math.max(a.at, Date.parse(t.lastAt)));
  t.count++;
  t.reason = a.reason;
  return t;
}

function prune(list: FailingSignal[], now: number, windowMs: number): FailingSignal[] {
  return list.filter((f) => now - f.at <= windowMs).slice(-MAX_FAILING_PER_REGION);
}

export function cooldownUntil(state: GuardianState, settings: GuardianSettings): number | undefined {
  const ended = state.lastRun?.endedAt;
  return ended ? Date.parse(ended) + durationMs(settings.policy.cooldown) : undefined;
}

/** The region a failover from `failing` goes to: the next in preference order that is not failing itself. */
export function pickTarget(
  state: GuardianState,
  settings: GuardianSettings,
  failing: string,
  now: number,
): string | undefined {
  const windowMs = durationMs(settings.debounce.window);
  const candidates = settings.regions.filter(
    (r) => r !== failing && (!settings.allowedTargets || settings.allowedTargets.includes(r)),
  );
  const healthy = candidates.find((r) => prune(state.failing[r] ?? [], now, windowMs).length === 0);
  return healthy ?? candidates[0];
}

export type Verdict =
  | {
      kind: 'start';
      action: 'failover' | 'drain';
      region: string;
      target: string;
      trigger: string;
      triggeredAt: number;
      detail: string;
    }
  | { kind: 'none' };

export interface DecideOptions {
  /**
   * Alarms seen from a vantage point (probes) count only when a quorum of the other regions agree.
   * Off for guardians whose history predates it (the `regionshift-probe-quorum` patch).
   */
  quorum?: boolean;
}

/** Failing signals from vantage points, in the window: who agrees the region is down, and how many must. */
export function quorumOf(
  settings: GuardianSettings,
  region: string,
  failing: FailingSignal[],
): { agree: string[]; others: string[]; need: number; met: boolean } {
  const others = settings.regions.filter((r) => r !== region);
  const agree = [
    ...new Set(failing.flatMap((f) => (f.vantage && others.includes(f.vantage) ? [f.vantage] : []))),
  ].sort();
  const need = settings.quorum ?? Math.floor(others.length / 2) + 1;
  return { agree, others, need, met: agree.length >= need };
}

export const hasVantageSignals = (state: GuardianState): boolean =>
  Object.values(state.failing).some((list) => list.some((f) => f.vantage !== undefined));

/**
 * Records one alarm and decides. Pure: the workflow applies the verdict (starting the run).
 * Order of the checks: recovery, severity, single flight, debounce, writer, cooldown, target.
 */
export function decide(
  state: GuardianState,
  settings: GuardianSettings,
  a: AlarmSignal,
  now: number,
  opts: DecideOptions = {},
): Verdict {
  const windowMs = durationMs(settings.debounce.window);
  const key = alarmKey(a);
  const known = state.alarms.find((x) => x.key === key);
  if (known && known.state !== a.state && a.at < Date.parse(known.firstAt)) {
    // Older than the alarm's current state (deliveries can arrive out of order): counted, not believed.
    known.count++;
    return { kind: 'none' };
  }
  track(state, a);
  const failing = (state.failing[a.region] = prune(state.failing[a.region] ?? [], now, windowMs));

  if (a.state === 'OK') {
    const before = failing.length;
    state.failing[a.region] = failing.filter((f) => f.key !== key);
    if (before > state.failing[a.region]!.length)
      note(state, now, 'recovered', `${key} recovered; its failing signals no longer count`, a.region);
    if (state.failing[a.region]!.length === 0 && state.healthySince?.[a.region] === undefined) {
      state.healthySince = { ...state.healthySince, [a.region]: now };
      if (state.drained?.[a.region])
        note(
          state,
          now,
          'healthy',
          `${a.region} is healthy again: undrained after ${settings.undrainAfter ?? '5m'} unless it fails again`,
          a.region,
        );
    }
    return { kind: 'none' };
  }
  if (a.state !== 'ALARM') return { kind: 'none' };
  if (a.severity !== 'critical') {
    note(state, now, 'warning', `${key} (warning): recorded, does not count toward a failover`, a.region);
    return { kind: 'none' };
  }
  if (state.healthySince?.[a.region] !== undefined) {
    const { [a.region]: _gone, ...rest } = state.healthySince;
    state.healthySince = rest;
  }
  failing.push({
    at: now,
    firedAt: a.at,
    key,
    ...(opts.quorum && a.vantage ? { vantage: a.vantage } : {}),
    ...(opts.quorum && a.since !== undefined ? { since: a.since } : {}),
  });
  if (failing.length > MAX_FAILING_PER_REGION) failing.splice(0, failing.length - MAX_FAILING_PER_REGION);

  if (state.current) {
    note(state, now, 'attached', `run in progress (${state.current.workflowId}): alarm attached to it`, a.region);
    return { kind: 'none' };
  }
  const { failures, window } = settings.debounce;
  let counted = failing.length;
  if (opts.quorum && failing.some((f) => f.vantage)) {
    // A vantage point that cannot reach the region may be the one cut off: its alarms count only
    // once enough of the other regions agree; alarms without a vantage point count as before.
    const q = quorumOf(settings, a.region, failing);
    if (!q.met) {
      counted = failing.filter((f) => !f.vantage).length;
      if (counted < failures) {
        const silent = q.others.filter((r) => !q.agree.includes(r));
        note(
          state,
          now,
          'no-quorum',
          `${q.agree.length} of ${q.others.length} vantage points (${q.agree.join(', ') || 'none'}) cannot reach ${a.region}; ${q.need} must agree${silent.length ? `, and ${silent.join(', ')} report no failure` : ''}: treated as a partition, not an outage; no failover`,
          a.region,
        );
        return { kind: 'none' };
      }
    }
  }
  if (counted < failures) {
    note(
      state,
      now,
      'debouncing',
      `${counted} of ${failures} failing signals for ${a.region} within ${window}`,
      a.region,
    );
    return { kind: 'none' };
  }
  const primary = state.primary ?? settings.regions[0];
  const action = a.region === primary ? 'failover' : 'drain';
  if (action === 'drain' && !settings.drainRunbook) {
    note(state, now, 'not-writer', `${a.region} is failing but is not the writer (${primary}): no failover`, a.region);
    return { kind: 'none' };
  }
  if (action === 'drain' && state.drained?.[a.region]) {
    note(
      state,
      now,
      'already-drained',
      `${a.region} is failing and already drained (${state.drained[a.region]!.runId})`,
      a.region,
    );
    return { kind: 'none' };
  }
  const until = cooldownUntil(state, settings);
  if (until !== undefined && now < until) {
    state.blocked = note(
      state,
      now,
      'cooldown',
      `automatic ${action} of ${a.region} held back: cooldown ${settings.policy.cooldown} after the last run (${state.lastRun!.workflowId}, ${state.lastRun!.status} at ${state.lastRun!.endedAt}) lasts until ${iso(until)}; a manual run is still allowed`,
      a.region,
    );
    return { kind: 'none' };
  }
  const first = failing.reduce((m, f) => (f.firedAt < m.firedAt ? f : m), failing[0]!);
  const firstAlarm = state.alarms.find((t) => t.key === first.key);
  const trigger = firstAlarm ? triggerOf(firstAlarm) : triggerOf(a);
  // Probe alarms know when the failure began (the last good probe): the run's RTO counts from there.
  const began = opts.quorum
    ? Math.min(first.firedAt, ...failing.flatMap((f) => (f.since !== undefined ? [f.since] : [])))
    : first.firedAt;
  const agreed =
    opts.quorum && failing.some((f) => f.vantage)
      ? `; vantage points agreeing: ${quorumOf(settings, a.region, failing).agree.join(', ')}`
      : '';
  if (action === 'drain') {
    // The writer stays where it is; the failing region's traffic goes to the others.
    return {
      kind: 'start',
      action,
      region: a.region,
      target: a.region,
      trigger,
      triggeredAt: began,
      detail: `${failing.length} failing signals for ${a.region} within ${window}${agreed}; the writer is ${primary}`,
    };
  }
  const target = pickTarget(state, settings, a.region, now);
  if (!target) {
    note(
      state,
      now,
      'no-target',
      `no region to fail over to from ${a.region}${settings.allowedTargets ? ` (data residency allows ${settings.allowedTargets.join(', ') || 'none'})` : ''}`,
      a.region,
    );
    return { kind: 'none' };
  }
  return {
    kind: 'start',
    action,
    region: a.region,
    target,
    trigger,
    triggeredAt: began,
    detail: `${failing.length} failing signals for ${a.region} within ${window}${agreed}`,
  };
}

/** The run's summary, and for a drain its region and what its undrain restores. */
function summaryOf(rec: RunRecord): RunSummary {
  const drained = drainHandoffOf(rec);
  return {
    ...runSummaryOf(rec),
    ...(rec.drain ? { region: rec.drain.region } : {}),
    ...(drained ? { drained } : {}),
  };
}

/** When the guardian's earliest drained region that is healthy again is due for its undrain (after the cooldown too). */
export function undrainDue(
  state: GuardianState,
  settings: GuardianSettings,
): { region: string; at: number } | undefined {
  if (!settings.undrainRunbook) return undefined;
  const after = durationMs(settings.undrainAfter ?? '5m');
  const cooldownEnd = cooldownUntil(state, settings) ?? 0;
  let due: { region: string; at: number } | undefined;
  for (const region of Object.keys(state.drained ?? {})) {
    const since = state.healthySince?.[region];
    if (since === undefined) continue;
    const at = Math.max(since + after, cooldownEnd);
    if (!due || at < due.at) due = { region, at };
  }
  return due;
}

/** Called by every run at its start and end; a service without a guardian simply has no one to tell. */
export async function notifyGuardian(rec: RunRecord): Promise<void> {
  // Runs started before guardians existed replay without these signals.
  if (!wf.patched('regionshift-notify-guardian')) return;
  try {
    await wf
      .getExternalWorkflowHandle(guardianWorkflowId(rec.service))
      .signal(rec.status === 'running' ? runStartedSignal : runEndedSignal, summaryOf(rec));
  } catch {
    // No guardian for this service (none is configured, or it has not been started yet).
  }
}

/** Local, so the worker that runs the workflow task signals at once: retries and waits are the fallback's. */
const notice = wf.proxyLocalActivities<GuardianNoticeActivities>({
  startToCloseTimeout: '5s',
  retry: { maximumAttempts: 1 },
});

/**
 * notifyGuardian without a workflow task of its own: the control worker signals the guardian
 * inside the task that asks, so a run closes in the task that tells of its end. It holds that
 * task's other commands back until the guardian answers. A worker without the activity (or a
 * failed attempt) falls back to the workflow's own signal.
 */
export async function notifyGuardianNow(rec: RunRecord): Promise<void> {
  try {
    await notice.tellGuardian({
      guardianWorkflowId: guardianWorkflowId(rec.service),
      signal: (rec.status === 'running' ? runStartedSignal : runEndedSignal).name,
      summary: summaryOf(rec),
    });
  } catch {
    await notifyGuardian(rec);
  }
}

export function viewOf(
  service: string,
  state: GuardianState,
  settings: GuardianSettings,
  now: number,
  historyLength: number,
): GuardianView {
  const windowMs = durationMs(settings.debounce.window);
  const until = cooldownUntil(state, settings);
  const failing = Object.entries(state.failing)
    .map(([region, list]) => ({ region, list: prune(list, now, windowMs) }))
    .filter((f) => f.list.length > 0)
    .map((f) => ({ region: f.region, count: f.list.length, since: iso(Math.min(...f.list.map((x) => x.firedAt))) }));
  return {
    service,
    primary: state.primary ?? settings.regions[0],
    current: state.current,
    lastRun: state.lastRun,
    cooldown: settings.policy.cooldown,
    ...(until !== undefined ? { cooldownUntil: iso(until) } : {}),
    inCooldown: until !== undefined && now < until,
    debounce: settings.debounce,
    failing,
    alarms: [...state.alarms].sort((x, y) => Date.parse(y.lastAt) - Date.parse(x.lastAt)).slice(0, 20),
    decisions: state.decisions,
    blocked: state.blocked,
    received: state.received,
    runsStarted: state.runsStarted,
    generation: state.generation,
    historyLength,
    drained: Object.values(state.drained ?? {}).map((d) => {
      const since = state.healthySince?.[d.region];
      return {
        region: d.region,
        drainRunId: d.runId,
        ...(since !== undefined
          ? { undrainAt: iso(Math.max(since + durationMs(settings.undrainAfter ?? '5m'), until ?? 0)) }
          : {}),
      };
    }),
  };
}

// Lives for weeks across deploys: it moves to the current worker version at its next task
// (workers/versioning.ts), so a change to its logic must be behind patched().
wf.setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, guardian);
export async function guardian(input: GuardianInput): Promise<void> {
  const { service } = input;
  let settings = input.settings;
  const state = input.state ?? initialState(input.seed);
  const queue: AlarmSignal[] = [];
  /**
   * Whether probe alarms need a quorum. Asked (and the patch marker written) only once a probe
   * alarm is in play, so guardians whose histories predate probes replay exactly as they ran.
   */
  let quorumAware: boolean | undefined;
  const quorumFor = (a: AlarmSignal): boolean => {
    if (quorumAware === undefined && (a.vantage !== undefined || hasVantageSignals(state)))
      quorumAware = wf.patched('regionshift-probe-quorum');
    return quorumAware ?? false;
  };

  // The intake forwards again what it cannot prove was delivered (a crash between delivering
  // and marking): an alarm id seen recently is dropped, so a replay never counts twice.
  const recentIds = new Set(state.recentIds ?? []);
  wf.setHandler(alarmSignal, (alarms) => {
    const fresh = alarms.filter((a) => !a.id || !recentIds.has(a.id));
    for (const a of fresh) if (a.id) recentIds.add(a.id);
    if (recentIds.size > 2 * RECENT_IDS) {
      const keep = [...recentIds].slice(-RECENT_IDS);
      recentIds.clear();
      for (const id of keep) recentIds.add(id);
    }
    queue.push(...fresh);
    state.received += fresh.length;
  });
  wf.setHandler(configureSignal, ({ settings: s, seed }) => {
    settings = s;
    if (seed?.primary && !state.primary) state.primary = seed.primary;
    if (seed?.lastRun && !state.lastRun) state.lastRun = seed.lastRun;
    if (seed?.current && !state.current) state.current = seed.current;
  });
  wf.setHandler(runStartedSignal, (run) => {
    if (run.dryRun) return;
    if (!state.current || state.current.workflowId !== run.workflowId || state.current.runId !== run.runId)
      state.current = run;
  });
  wf.setHandler(runEndedSignal, (run) => {
    const cur = state.current;
    if (cur && cur.workflowId === run.workflowId && (cur.runId === undefined || cur.runId === run.runId))
      state.current = undefined;
    if (run.dryRun) return;
    state.lastRun = run;
    // Failover and failback both move the writer to their target.
    if (run.status === 'succeeded' && (run.kind === 'failover' || run.kind === 'failback') && run.target)
      state.primary = run.target;
    // Only drains the guardian started are undone by it: a person's drain (maintenance) is theirs to undo.
    if (run.drained && run.requestedBy === 'guardian')
      state.drained = { ...state.drained, [run.drained.region]: run.drained };
    if (run.status === 'succeeded' && run.kind === 'undrain' && run.region && state.drained?.[run.region]) {
      const { [run.region]: _undone, ...rest } = state.drained;
      state.drained = rest;
    }
  });
  wf.setHandler(guardianStateQuery, () =>
    viewOf(service, state, settings, Date.now(), wf.workflowInfo().historyLength),
  );

  /**
   * With more than one candidate, the failover goes where the data is: each candidate region
   * describes its own standby, and the healthy one with the least lag wins (src/contract/policy/target.ts,
   * as `--to auto` chooses). Alarms alone say nothing about lag. No answer keeps the alarm-based pick.
   */
  async function targetByTopology(v: Start): Promise<string> {
    const candidates = settings.regions.filter(
      (r) => r !== v.region && (!settings.allowedTargets || settings.allowedTargets.includes(r)),
    );
    if (candidates.length < 2) return v.target;
    const topology = await Promise.all(
      candidates.map((region) =>
        wf
          .proxyActivities<RegionActivities>({
            taskQueue: regionTaskQueue(region),
            scheduleToStartTimeout: '2s',
            startToCloseTimeout: '5s',
            retry: { maximumAttempts: 1 },
          })
          .dbDescribe({ service })
          .catch((err: Error): DbNodeState => ({ region, reachable: false, error: err.message })),
      ),
    );
    try {
      const choice = chooseTarget({ name: service, regions: candidates }, topology, { source: v.region });
      if (choice.target !== v.target)
        note(state, Date.now(), 'target', `${choice.target} instead of ${v.target}: ${choice.reason}`, v.region);
      return choice.target;
    } catch (err) {
      note(
        state,
        Date.now(),
        'target',
        `no candidate judged by lag (${(err as Error).message}); keeping ${v.target}`,
        v.region,
      );
      return v.target;
    }
  }

  type Start = Omit<Extract<Verdict, { kind: 'start' }>, 'action'> & { action: 'failover' | 'drain' | 'undrain' };
  async function start(chosen: Start): Promise<void> {
    // Guardians live for months: ones already running take the new path only from here on.
    const v =
      chosen.action === 'failover' && wf.patched('target-by-lag')
        ? { ...chosen, target: await targetByTopology(chosen) }
        : chosen;
    const workflowId = runWorkflowId(service);
    const runbook =
      v.action === 'drain'
        ? settings.drainRunbook!
        : v.action === 'undrain'
          ? settings.undrainRunbook!
          : settings.runbook;
    const mode = v.action === 'undrain' ? 'planned' : 'unplanned';
    const runInput: RunInput = {
      runbook,
      service,
      regions: settings.regions,
      mode,
      target: v.target,
      dryRun: false,
      policy: settings.policy,
      requestedBy: 'guardian',
      trigger: v.trigger,
      triggeredAt: v.triggeredAt,
      approval: settings.approval,
      ...(settings.cache ? { cache: true } : {}),
      ...(v.action !== 'failover' ? { region: v.region } : {}),
      // Guardians live for months: ones already running tell runs this from here on.
      ...(v.action === 'failover' && wf.patched('run-reported-down') ? { reportedDown: v.region } : {}),
      ...(v.action === 'undrain' ? { drained: state.drained![v.region]! } : {}),
    };
    const what = v.action === 'failover' ? `failover ${v.region} → ${v.target}` : `${v.action} ${v.region}`;
    const now = Date.now();
    try {
      const child = await wf.startChild('runbook', {
        workflowId,
        args: [runInput],
        parentClosePolicy: 'ABANDON',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        typedSearchAttributes: [
          { key: SA.service, value: service },
          { key: SA.target, value: v.target },
          { key: SA.mode, value: mode },
          { key: SA.trigger, value: v.trigger },
        ],
        staticSummary:
          v.action === 'failover'
            ? `failover ${service} → ${v.target} (unplanned), by the guardian: ${v.trigger}`
            : `${v.action} ${v.region} of ${service}, by the guardian: ${v.trigger}`,
        staticDetails: `Runbook ${runbook.file} sha256 ${runbook.hash}. ${v.detail}; ${v.action === 'undrain' ? 'healthy since' : 'first alarm at'} ${iso(v.triggeredAt)}.`,
      });
      state.current = {
        workflowId,
        runId: child.firstExecutionRunId,
        kind: runbook.kind,
        trigger: v.trigger,
        requestedBy: 'guardian',
        target: v.target,
        mode,
        dryRun: false,
        status: 'running',
        startedAt: iso(now),
        ...(v.action !== 'failover' ? { region: v.region } : {}),
      };
      state.runsStarted++;
      if (v.action !== 'undrain') state.failing[v.region] = [];
      note(state, now, 'started', `${what} started (${workflowId}): ${v.detail}`, v.region);
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        // A run from the CLI or Slack holds the id: this alarm belongs to it.
        state.current = { workflowId, status: 'running' };
        note(state, now, 'attached', `a run is already in progress (${workflowId}): alarm attached to it`, v.region);
        return;
      }
      note(state, now, 'start-failed', `could not start the ${v.action}: ${(err as Error).message}`, v.region);
    }
  }

  /** Alarms during a run go onto the run's record, one entry per alarm, with its count. */
  const pendingAttach = new Map<string, AttachedAlarm>();
  let urgentAttach = false;
  let lastAttach = 0;
  async function flushAttachments(): Promise<void> {
    const cur = state.current;
    const alarms = [...pendingAttach.values()];
    pendingAttach.clear();
    urgentAttach = false;
    lastAttach = Date.now();
    if (!cur || alarms.length === 0) return;
    const handle = wf.getExternalWorkflowHandle(cur.workflowId, cur.runId);
    const results = await Promise.allSettled(alarms.map((a) => handle.signal<[AttachedAlarm]>('attachAlarm', a)));
    if (results.some((r) => r.status === 'rejected') && state.current === cur) {
      // The run is gone and its end was not heard: forget it so the next alarm decides afresh.
      state.current = undefined;
    }
  }

  function queueAttachment(a: AlarmSignal): void {
    const key = alarmKey(a);
    const t = state.alarms.find((x) => x.key === key)!;
    const prev = pendingAttach.get(key);
    // A new alarm or a change of state goes to the run at once; repeats are counted and sent
    // at most every ATTACH_EVERY_MS, so a storm does not become a storm of signals to the run.
    if (!prev && !state.attachedKeys?.includes(key)) urgentAttach = true;
    if (prev && prev.state !== a.state) urgentAttach = true;
    state.attachedKeys = [...new Set([...(state.attachedKeys ?? []), key])].slice(-50);
    pendingAttach.set(key, {
      trigger: triggerOf(a),
      region: a.region,
      severity: a.severity,
      state: a.state,
      at: t.lastAt,
      count: (prev?.count ?? 0) + 1,
    });
  }

  const maxHistory = (): number => settings.maxHistoryEvents ?? DEFAULT_MAX_HISTORY;
  const shouldContinue = (): boolean =>
    wf.workflowInfo().continueAsNewSuggested || wf.workflowInfo().historyLength > maxHistory();

  /** Starts the undrain that is due, if one is and no run holds the service. */
  async function undrainIfDue(): Promise<void> {
    const due = undrainDue(state, settings);
    if (!due || state.current || Date.now() < due.at) return;
    const since = state.healthySince![due.region]!;
    await start({
      kind: 'start',
      action: 'undrain',
      region: due.region,
      target: due.region,
      trigger: `health:${due.region}`,
      triggeredAt: since,
      detail: `${due.region} healthy for ${settings.undrainAfter ?? '5m'}; restoring the records before drain ${state.drained![due.region]!.runId}`,
    });
    // A start that failed is tried again after another healthy period, not in a tight loop.
    if (!state.current) state.healthySince = { ...state.healthySince, [due.region]: Date.now() };
  }

  for (;;) {
    // An undrain due later wakes the loop then; none due: the timer is not there at all.
    const undrain = undrainDue(state, settings);
    const undrainIn = undrain && !state.current ? Math.max(1, undrain.at - Date.now()) : undefined;
    if (pendingAttach.size > 0) {
      const due = lastAttach + ATTACH_EVERY_MS - Date.now();
      if (due > 0)
        await wf.condition(
          () => queue.length > 0 || shouldContinue(),
          undrainIn === undefined ? due : Math.min(due, undrainIn),
        );
    } else if (undrainIn !== undefined) {
      await wf.condition(() => queue.length > 0 || shouldContinue() || state.current !== undefined, undrainIn);
    } else {
      // A run ending (a signal) can make an undrain due: wake for it too.
      await wf.condition(
        () =>
          queue.length > 0 ||
          shouldContinue() ||
          (state.current === undefined && undrainDue(state, settings) !== undefined),
      );
    }
    while (queue.length > 0) {
      const batch = queue.splice(0, queue.length);
      // An alarm is judged at the time the intake received it, not at this task's time. A status
      // query answered by a worker that does not hold this guardian (the one that did died, often
      // with the region the alarms are about) applies the pending alarms with the clock of the last
      // task, and that worker keeps what they decided: a cooldown long over then held the failover
      // back until a later alarm (33 s after the kill in the demo), and the history no longer
      // replayed. The receipt time is in the signal, so every worker judges the same.
      const atReceipt = wf.patched('decide-at-receipt');
      for (const a of batch) {
        const verdict = decide(state, settings, a, atReceipt ? a.receivedAt : Date.now(), { quorum: quorumFor(a) });
        if (verdict.kind === 'start') {
          state.attachedKeys = [];
          await start(verdict);
        }
        if (state.current && a.state !== 'INSUFFICIENT_DATA') queueAttachment(a);
      }
    }
    await undrainIfDue();
    if (pendingAttach.size > 0 && (urgentAttach || Date.now() - lastAttach >= ATTACH_EVERY_MS || shouldContinue()))
      await flushAttachments();
    if (shouldContinue() && pendingAttach.size === 0) {
      await wf.condition(wf.allHandlersFinished);
      if (queue.length === 0) {
        state.generation++;
        state.recentIds = [...recentIds].slice(-RECENT_IDS);
        await wf.continueAsNew<typeof guardian>({ service, settings, state });
      }
    }
  }
}

// --- the health watcher ---------------------------------------------------------------------

export const healthStateQuery = wf.defineQuery<HealthWatcherView>('health');

wf.setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, healthWatcher);
export async function healthWatcher(input: HealthWatcherInput): Promise<void> {
  const acts = wf.proxyActivities<HealthActivities>({
    taskQueue: INTAKE_TASK_QUEUE,
    startToCloseTimeout: '20s',
    retry: { maximumAttempts: 2, initialInterval: '1s' },
  });
  const failing = new Set(input.failing ?? []);
  const view: HealthWatcherView = { service: input.service, polls: 0, last: {}, failing: [] };
  wf.setHandler(healthStateQuery, () => ({ ...view, failing: [...failing] }));
  const guardianHandle = wf.getExternalWorkflowHandle(guardianWorkflowId(input.service));
  const pollsPerRun = input.pollsPerRun ?? 200;

  for (let i = 0; i < pollsPerRun; i++) {
    const now = Date.now();
    const alarms: AlarmSignal[] = [];
    await Promise.all(
      Object.entries(input.checks).map(async ([region, healthCheckId]) => {
        let v: HealthVerdict;
        try {
          v = healthVerdict(
            await acts.route53HealthCheckStatus({ healthCheckId, endpointUrl: input.endpointUrl }),
            input.healthyShare,
          );
          view.last[region] = { ...v, at: iso(now) };
        } catch (err) {
          // Not being able to ask is not evidence that the region is down.
          view.last[region] = { verdict: 'unknown', healthy: 0, total: 0, at: iso(now), error: (err as Error).message };
          return;
        }
        const base = {
          source: 'route53' as const,
          name: healthCheckId,
          region,
          severity: 'critical' as const,
          at: now,
          receivedAt: now,
        };
        if (v.verdict === 'failing') {
          failing.add(region);
          alarms.push({
            ...base,
            state: 'ALARM',
            reason: `${v.healthy}/${v.total} Route 53 checkers healthy${v.sample ? `: ${v.sample}` : ''}`,
          });
        } else if (v.verdict === 'healthy' && failing.delete(region)) {
          alarms.push({ ...base, state: 'OK', reason: `${v.healthy}/${v.total} Route 53 checkers healthy` });
        }
      }),
    );
    view.polls++;
    if (alarms.length > 0) {
      try {
        await guardianHandle.signal(alarmSignal, alarms);
        view.deliveryError = undefined;
      } catch (err) {
        // No guardian (the intake starts it): the next failing poll tries again.
        view.deliveryError = `could not deliver to ${guardianWorkflowId(input.service)}: ${(err as Error).message}`;
      }
    }
    await wf.sleep(durationMs(input.interval));
  }
  await wf.continueAsNew<typeof healthWatcher>({ ...input, failing: [...failing] });
}
