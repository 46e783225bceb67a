// Region activities as small in-test implementations, for tests whose subject is the runbook
// interpreter's rules (workflows/runbook.ts) rather than a provider: what the workflow calls, in
// which order, with what, and what it does with the answers. The providers themselves are tested
// on real parts (test/db-postgres.test.ts, test/failover*.test.ts, test/traffic-route53.test.ts).
//
// Defaults describe a healthy two-region service ready for a planned failover: the source is an
// unfenced primary, the target a streaming standby, traffic all on the source. A test replaces
// what one activity answers in one region with `answer`, and reads `calls` afterwards.
import { CancelledFailure, Context } from '@temporalio/activity';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import type {
  DbNodeState,
  FenceResult,
  RegionActivities,
  ShiftResult,
  TrafficRecord,
  TrafficState,
} from '../../src/contract/activities';
import { dataConverterFromEnv } from '../../src/lib/codec/env';
import { promoteAfterLag } from '../../activities/db/promote-after-lag';
import { regionTaskQueue } from '../../src/contract/runbook/ids';
import type { RunRecord } from '../../src/contract/runbook/types';
import type { runbook as runbookWorkflow } from '../../workflows/runbook';

/** The activities a test answers for; dbPromoteAfterLag is made of two of them, as a region worker's is. */
export type ActivityName = Exclude<keyof RegionActivities, 'dbPromoteAfterLag'>;

export interface StubCall {
  region: string;
  name: ActivityName;
  input: unknown;
  /** Positions on the fleet's one clock (every start and end ticks it): what happened before what. */
  started: number;
  ended?: number;
  outcome?: 'ok' | 'failed' | 'cancelled';
  error?: string;
}

type Answer<K extends ActivityName> = (input: Parameters<RegionActivities[K]>[0]) => ReturnType<RegionActivities[K]>;

/** The fence's WAL position in the defaults: what db.waitForLag is asked to reach. */
export const FENCE_LSN = '0/3000148';

export class StubFleet {
  /** Every call any region received, in the order they started. */
  readonly calls: StubCall[] = [];
  private readonly answers = new Map<string, Partial<{ [K in ActivityName]: Answer<K> }>>();
  private tick = 0;

  constructor(
    readonly service: string,
    readonly source: string,
    readonly target: string,
  ) {}

  /** Replaces what `name` answers in `region` (return a value, throw to fail the attempt). */
  answer<K extends ActivityName>(region: string, name: K, fn: Answer<K>): this {
    const forRegion = this.answers.get(region) ?? {};
    (forRegion as Record<string, unknown>)[name] = fn;
    this.answers.set(region, forRegion);
    return this;
  }

  /** `region.name` of each call, in order; only calls to `names` when given. */
  log(...names: ActivityName[]): string[] {
    return this.calls.filter((c) => names.length === 0 || names.includes(c.name)).map((c) => `${c.region}.${c.name}`);
  }

  callsTo(name: ActivityName, region?: string): StubCall[] {
    return this.calls.filter((c) => c.name === name && (region === undefined || c.region === region));
  }

  /** The activities the worker of `region` registers on its task queue. */
  activities(region: string): RegionActivities {
    const defaults = this.defaults(region);
    const names = Object.keys(defaults) as ActivityName[];
    const recorded = Object.fromEntries(
      names.map((name) => [
        name,
        async (input: unknown) => {
          const call: StubCall = { region, name, input, started: ++this.tick };
          this.calls.push(call);
          const fn = (this.answers.get(region)?.[name] ?? defaults[name]) as (i: unknown) => Promise<unknown>;
          try {
            const result = await fn(input);
            call.outcome = 'ok';
            return result;
          } catch (err) {
            call.outcome = err instanceof CancelledFailure ? 'cancelled' : 'failed';
            call.error = (err as Error).message;
            throw err;
          } finally {
            call.ended = ++this.tick;
          }
        },
      ]),
    ) as unknown as Omit<RegionActivities, 'dbPromoteAfterLag'>;
    return {
      ...recorded,
      // As activities/index.ts composes it: each half is a call of its own in the log.
      dbPromoteAfterLag: promoteAfterLag(recorded.dbWaitForLag, recorded.dbPromote),
    };
  }

  /** What each region's node looks like in the defaults. */
  node(region: string): DbNodeState {
    if (region === this.source)
      return { region, reachable: true, role: 'primary', fenced: false, timeline: 1, lsn: FENCE_LSN };
    const now = Date.now();
    return {
      region,
      reachable: true,
      role: 'standby',
      timeline: 1,
      lsn: FENCE_LSN,
      receivedLsn: FENCE_LSN,
      ...(region === this.target ? { streamingFrom: `db.${this.source}.regionshift.test:5432` } : {}),
      lastReplayedCommitAt: new Date(now - 500).toISOString(),
      lastHeardFromPrimaryAt: new Date(now).toISOString(),
    };
  }

  /** The traffic records before any shift: every client on the source. */
  trafficBefore(): TrafficState {
    return {
      recordName: `${this.service}.regionshift.test.`,
      records: [this.record(this.source, 100), this.record(this.target, 0)],
    };
  }

  private record(region: string, weight: number): TrafficRecord {
    return { region, target: `db.${region}.regionshift.test.`, weight, ttl: 5 };
  }

  private shift(from: string, to: string): ShiftResult {
    const before = this.trafficBefore();
    const after = {
      ...before,
      records: before.records.map((r) => ({ ...r, weight: r.region === to ? 100 : r.region === from ? 0 : r.weight })),
    };
    return { before, after, changeId: `C-${to}`, maxCachedSeconds: 5, changed: true };
  }

  private defaults(region: string): { [K in ActivityName]: Answer<K> } {
    const fence: FenceResult = { region, alreadyFenced: false, verified: true, lsn: FENCE_LSN, terminatedSessions: 2 };
    return {
      dbDescribe: async () => this.node(region),
      dbFenceWrites: async () => fence,
      dbUnfenceWrites: async () => ({ region, unfenced: true, detail: `writes open again in ${region}` }),
      dbWaitForLag: async (i) => ({ region, replayedLsn: i.sourceLsn, initialLagBytes: 0, waitedMs: 3 }),
      dbPromote: async () => ({
        region,
        promoted: true,
        alreadyPrimary: false,
        timeline: 2,
        lsn: '0/3000200',
        method: 'pg_promote',
        before: this.node(region),
      }),
      // As the region workers answer: with the state the rejoin left the node in (activities/index.ts).
      dbRejoinAsStandby: async (i) => ({
        region,
        rejoined: true,
        rewound: false,
        streamingFrom: `db.${i.primaryRegion}.regionshift.test:5432`,
        state: {
          region,
          reachable: true,
          role: 'standby',
          timeline: 2,
          lsn: '0/3000200',
          streamingFrom: `db.${i.primaryRegion}.regionshift.test:5432`,
        },
      }),
      dbFollowWriter: async (i) => ({
        region,
        rejoined: true,
        rewound: false,
        how: 'reload',
        streamingFrom: `db.${i.primaryRegion ?? this.target}.regionshift.test:5432`,
      }),
      dbVerifyWrites: async () => ({ region, ok: true, latencyMs: 4 }),
      dbPreserve: async () => ({ region, preserved: true, detail: `kept the old primary of ${region}` }),
      trafficDescribe: async () => this.trafficBefore(),
      trafficShift: async (i) => this.shift(i.from, i.to),
      trafficRestore: async (i) => i.state,
      trafficDrain: async (i) => this.shift(i.region, i.to ?? this.target),
      trafficUndrain: async (i) => this.shift(this.target, i.region),
    };
  }
}

/**
 * An activity body that runs until the workflow cancels it (an abort), heartbeating so the
 * cancellation reaches it; it then fails as cancelled, which is how a provider acknowledges.
 */
export async function untilCancelled(): Promise<never> {
  const ctx = Context.current();
  for (;;) {
    ctx.heartbeat();
    await ctx.sleep(50);
  }
}

/**
 * Runs one worker per region of the fleet on `region.<name>` and returns what stops them.
 * Heartbeats are not throttled for long, so an abort reaches a running stub within a few
 * hundred milliseconds rather than the default's seconds.
 */
export async function runStubRegions(
  connection: NativeConnection,
  fleet: StubFleet,
  extra: (region: string) => object = () => ({}),
): Promise<() => Promise<void>> {
  // The same codec as the rig's client and control worker, which read the same environment.
  const dataConverter = dataConverterFromEnv();
  const workers = await Promise.all(
    [fleet.source, fleet.target].map((region) =>
      Worker.create({
        connection,
        dataConverter,
        taskQueue: regionTaskQueue(region),
        // Real activities besides the stubs (http.call, plugin steps), for tests whose subject they are.
        activities: { ...extra(region), ...fleet.activities(region) },
        maxHeartbeatThrottleInterval: '100ms',
        defaultHeartbeatThrottleInterval: '100ms',
      }),
    ),
  );
  const running = workers.map((w) => w.run());
  return async () => {
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await Promise.allSettled(running);
  };
}

export interface Outcome {
  rec: RunRecord;
  /** The failure type the CLI maps to an exit code (FAILURE), or 'succeeded'. */
  result: string;
}

/** How a runbook run ended, with its record whether it succeeded or failed. */
export async function outcome(handle: WorkflowHandle<typeof runbookWorkflow>): Promise<Outcome> {
  try {
    return { rec: await handle.result(), result: 'succeeded' };
  } catch (err) {
    if (err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.details?.[0]) {
      return { rec: err.cause.details[0] as RunRecord, result: err.cause.type ?? 'untyped' };
    }
    throw err;
  }
}
