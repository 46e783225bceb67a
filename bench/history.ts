// Where a run's time went, from its workflow history: the execution's start and close, and the
// intervals during which a provider operation (an activity) was running on some worker.
import type { Client } from '@temporalio/client';

type History = Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>;
type Event = NonNullable<History['events']>[number];

export interface RunTiming {
  /** WorkflowExecutionStarted → the close event. */
  wallMs: number;
  /**
   * Time during which at least one activity was running (ActivityTaskStarted → its close).
   * Activities that overlap (preflight asks every region at once) are counted once: the
   * question is how much of the wall time no provider was working.
   */
  providerMs: number;
  /** wallMs − providerMs: scheduling, workflow tasks, approvals, timers. */
  overheadMs: number;
  activities: number;
  /** Where the overhead goes: activity tasks waiting for a worker (Scheduled → Started), summed. */
  queuedMs: number;
  /** …and workflow tasks (Scheduled → Completed: the interpreter deciding the next step), summed. */
  workflowTaskMs: number;
  /**
   * How many workflow tasks the run took. Each is a round trip through the server and the control
   * worker, so this is the overhead that does not move with the machine's load.
   */
  workflowTasks: number;
  /**
   * The first workflow task, scheduled → completed: the run's code starting in a control worker.
   * A worker's first run pays for compiling the bundle and reading its source map here (hundreds
   * of ms); a warm worker, a few.
   */
  firstTaskMs: number;
  /**
   * The overhead on the run's critical path, in three parts that add up to overheadMs:
   * WorkflowExecutionStarted → the first activity running (the first workflow task and the
   * dispatch of what it scheduled), the gaps while no activity ran (each one a provider's answer
   * going through a workflow task to the next step's activity), and the last answer → close.
   */
  startMs: number;
  gapsMs: number;
  /**
   * How many such gaps. Each step that waits on the one before makes one (a workflow-task round
   * trip); parallel activities that happen not to overlap in time make more.
   */
  gaps: number;
  closeMs: number;
}

function ms(e: Event): number {
  const t = e.eventTime;
  if (!t) throw new Error(`history event ${String(e.eventId)} has no time`);
  return Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6;
}

/** Overlapping intervals merged: the stretches during which at least one activity ran. */
function merged(intervals: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [s, e] of sorted) {
    const cur = out.at(-1);
    if (!cur || s > cur[1]) out.push([s, e]);
    else cur[1] = Math.max(cur[1], e);
  }
  return out;
}

export function timingOf(history: History): RunTiming {
  let start: number | undefined;
  let end: number | undefined;
  const started = new Map<string, number>();
  const scheduled = new Map<string, number>();
  const intervals: Array<[number, number]> = [];
  let queuedMs = 0;
  let workflowTaskMs = 0;
  let workflowTasks = 0;
  let firstTaskMs = 0;
  for (const e of history.events ?? []) {
    if (e.activityTaskScheduledEventAttributes || e.workflowTaskScheduledEventAttributes)
      scheduled.set(String(e.eventId), ms(e));
    const activityStart = e.activityTaskStartedEventAttributes?.scheduledEventId;
    if (activityStart) queuedMs += ms(e) - (scheduled.get(String(activityStart)) ?? ms(e));
    const wfTaskDone = e.workflowTaskCompletedEventAttributes?.scheduledEventId;
    if (wfTaskDone) {
      const took = ms(e) - (scheduled.get(String(wfTaskDone)) ?? ms(e));
      if (workflowTasks === 0) firstTaskMs = took;
      workflowTaskMs += took;
      workflowTasks++;
    }
    if (e.workflowExecutionStartedEventAttributes) start = ms(e);
    if (
      e.workflowExecutionCompletedEventAttributes ||
      e.workflowExecutionFailedEventAttributes ||
      e.workflowExecutionCanceledEventAttributes ||
      e.workflowExecutionTerminatedEventAttributes ||
      e.workflowExecutionTimedOutEventAttributes
    )
      end = ms(e);
    if (e.activityTaskStartedEventAttributes) started.set(String(e.eventId), ms(e));
    const closed =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskTimedOutEventAttributes ??
      e.activityTaskCanceledEventAttributes;
    // A task that timed out before any worker took it has no start: no provider ran.
    const from = closed?.startedEventId ? started.get(String(closed.startedEventId)) : undefined;
    if (from !== undefined) intervals.push([from, ms(e)]);
  }
  if (start === undefined || end === undefined)
    throw new Error('the history has no start or no close: is the run still going?');
  const wallMs = Math.round(end - start);
  const busy = merged(intervals);
  const providerMs = Math.round(busy.reduce((n, [s, e]) => n + e - s, 0));
  const startMs = Math.round((busy[0]?.[0] ?? end) - start);
  const closeMs = busy.length ? Math.round(end - busy.at(-1)![1]) : 0;
  return {
    wallMs,
    providerMs,
    overheadMs: wallMs - providerMs,
    activities: intervals.length,
    queuedMs: Math.round(queuedMs),
    workflowTaskMs: Math.round(workflowTaskMs),
    workflowTasks,
    firstTaskMs: Math.round(firstTaskMs),
    startMs,
    gapsMs: Math.round(busy.slice(1).reduce((n, [s], i) => n + s - busy[i]![1], 0)),
    gaps: Math.max(0, busy.length - 1),
    closeMs,
  };
}

export async function runTiming(client: Client, workflowId: string, runId: string): Promise<RunTiming> {
  return timingOf(await client.workflow.getHandle(workflowId, runId).fetchHistory());
}

/** Each event's offset from the start and its gap from the one before: where a run's time went, event by event. */
export function timelineOf(history: History): string[] {
  const events = history.events ?? [];
  if (events.length === 0) return [];
  const t0 = ms(events[0]!);
  let prev = t0;
  return events.map((e) => {
    const t = ms(e);
    const kind = Object.keys(e).find((k) => k.endsWith('EventAttributes') && (e as Record<string, unknown>)[k]) ?? '?';
    const what =
      e.activityTaskScheduledEventAttributes?.activityType?.name ??
      e.markerRecordedEventAttributes?.markerName ??
      e.workflowTaskStartedEventAttributes?.identity ??
      e.activityTaskStartedEventAttributes?.identity ??
      '';
    const line = `${String(Math.round(t - t0)).padStart(6)} +${String(Math.round(t - prev)).padStart(4)}  ${String(e.eventId).padStart(3)} ${kind.replace(/EventAttributes$/, '')}${what ? ` ${what}` : ''}`;
    prev = t;
    return line;
  });
}
