// The workflow side of drain and undrain (runbooks/drain.yaml, runbooks/undrain.yaml), called from
// the runbook interpreter's switch. A drain takes a region that is not the writer out of service:
// its traffic goes to the regions that stay (the provider decides how: proportionally by weight;
// geolocation answers within their residency rule). An undrain puts back exactly the records the
// drain found. Route 53 is global, so its calls run on a region that stays in service: the drained
// region is often the one that is down.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/common';
import type { ActivityOptions, RetryPolicy } from '@temporalio/common';
import type { DbNodeState, RegionActivities, TrafficRecord, TrafficState } from '../src/contract/activities';
import { regionTaskQueue } from '../src/contract/runbook/ids';
import type { DrainRecord, RunInput, RunRecord, StepState } from '../src/contract/runbook/types';
import { describeRecords, recordKey, sameRecord, sameTraffic } from '../src/contract/traffic/plan';
import type { Compensations } from './compensation';
import { silentWriter } from './writer';

export const DRAIN_ACTIONS = ['traffic.drain', 'traffic.undrain', 'traffic.verify'] as const;
export type DrainAction = (typeof DRAIN_ACTIONS)[number] | 'preflight';

export function isDrainAction(action: string): action is DrainAction {
  return (DRAIN_ACTIONS as readonly string[]).includes(action);
}

export function isDrainKind(kind: string): kind is 'drain' | 'undrain' {
  return kind === 'drain' || kind === 'undrain';
}

export interface DrainContext {
  input: RunInput;
  rec: RunRecord;
  state: StepState;
  opts: Partial<ActivityOptions>;
  refuse(message: string): never;
  compensations: Compensations;
  stepId: string;
}

const RETRY: RetryPolicy = {
  initialInterval: '200ms',
  backoffCoefficient: 2,
  maximumInterval: '5s',
  maximumAttempts: 20,
};

/** Route 53 and describe calls through one region's worker (the drained region is often the one down). */
function throughRegion(region: string, options: Partial<ActivityOptions> = {}): RegionActivities {
  return wf.proxyActivities<RegionActivities>({
    taskQueue: regionTaskQueue(region),
    startToCloseTimeout: '90s',
    retry: RETRY,
    cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    ...options,
  });
}

const COMPENSATION: Partial<ActivityOptions> = {
  scheduleToStartTimeout: '15s',
  startToCloseTimeout: '90s',
  retry: { ...RETRY, maximumAttempts: 5 },
};

/** Provider refusals that mean nothing was changed: the run is refused, not failed. */
const REFUSALS = new Set(['ResidencyRefused', 'NothingToShift', 'InvalidShift', 'UnknownRegion']);

function failureOf(err: unknown): ApplicationFailure | undefined {
  return err instanceof wf.ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
}

/** A provider that says no has changed nothing: its compensation is withdrawn and the run refused. */
async function unlessRefused<T>(ctx: DrainContext, withdraw: () => void, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    const f = failureOf(err);
    if (f?.type && REFUSALS.has(f.type)) {
      withdraw();
      ctx.refuse(f.message);
    }
    throw err;
  }
}

function message(err: unknown): string {
  return failureOf(err)?.message ?? (err instanceof Error ? err.message : String(err));
}

/** Whether clients reach `region` through these records (all-zero weights: Route 53 answers with every record). */
export function serves(state: TrafficState, region: string): boolean {
  const weighted = state.records.filter((r) => r.weight !== undefined);
  const allZero = weighted.length > 0 && weighted.every((r) => r.weight === 0);
  return state.records.some((r) => {
    if (r.region !== region) return false;
    if (r.weight !== undefined) return r.weight > 0 || allZero;
    if (r.failover !== undefined) return r.failover === 'PRIMARY';
    if (r.routingControl !== undefined) return r.routingControl === 'On';
    return r.location !== undefined;
  });
}

/** One entry per record that differs: "us-east-1 30 → 0", "continent:EU eu-west-1 → eu-central-1". */
function changes(before: TrafficState, after: TrafficState): string[] {
  return after.records.flatMap((r) => {
    const was = before.records.find((x) => recordKey(x) === recordKey(r));
    if (was && sameRecord(r, was)) return [];
    if (r.location !== undefined) return [`${r.location} ${was?.region ?? '-'} → ${r.region}`];
    const v = (x: TrafficRecord | undefined): string => String(x?.weight ?? x?.failover ?? x?.routingControl ?? '-');
    return [`${r.region} ${v(was)} → ${v(r)}`];
  });
}

export async function runDrainAction(action: DrainAction, ctx: DrainContext): Promise<void> {
  const { input, rec, state } = ctx;
  const svc = { service: input.service };
  const kind = input.runbook.kind;
  const drain = (): DrainRecord =>
    rec.drain ?? ctx.refuse(`${action} needs the run's preflight first (it finds the writer and the records)`);

  switch (action) {
    case 'preflight': {
      const region =
        input.region ??
        ctx.refuse(
          `a ${kind} run needs the region to ${kind} (RunInput.region): regionshift ${kind} --service ${input.service} --region R`,
        );
      if (!input.regions.includes(region))
        ctx.refuse(`${region} is not a region of ${input.service} (regions: ${input.regions.join(', ')})`);
      if (input.drained && input.drained.region !== region)
        ctx.refuse(`the drain to undo (${input.drained.runId}) drained ${input.drained.region}, not ${region}`);
      // Every region answers for its database at once; a worker that does not pick the task up in
      // seconds is down, and cannot make the Route 53 calls either. The drained region, often the
      // one down, gets a second: its answer only tells whether it is the writer, which silentWriter
      // (below) works out when it is silent.
      const answered = new Set<string>();
      const topology = await Promise.all(
        input.regions.map((r) =>
          throughRegion(r, {
            scheduleToStartTimeout: kind === 'drain' && r === region ? '1s' : '3s',
            startToCloseTimeout: '10s',
            retry: { maximumAttempts: 1 },
          })
            .dbDescribe(svc)
            .then((n) => {
              answered.add(r);
              return n;
            })
            .catch((err): DbNodeState => ({ region: r, reachable: false, error: message(err) })),
        ),
      );
      rec.topology = topology;
      // A fenced primary (a run that could not undo its fence) still holds the writer's database.
      const primaries = topology.filter((n) => n.reachable && n.role === 'primary');
      const writerNode = primaries.find((n) => !n.fenced) ?? primaries[0];
      const order = [writerNode?.region, ...input.regions].filter((r): r is string => r !== undefined && r !== region);
      const via =
        order.find((r) => answered.has(r)) ??
        ctx.refuse(
          `no worker of ${input.service} outside ${region} answered (${topology.map((n) => `${n.region}: ${n.error ?? 'ok'}`).join('; ')}); the Route 53 calls need one`,
        );
      let before: TrafficState;
      try {
        before = await throughRegion(via, {
          scheduleToStartTimeout: '5s',
          startToCloseTimeout: '30s',
          retry: { ...RETRY, maximumAttempts: 3 },
        }).trafficDescribe(svc);
      } catch (err) {
        ctx.refuse(`cannot read the traffic records of ${input.service} from ${via}: ${message(err)}`);
      }
      rec.trafficBefore = before;
      // With no database answering as the writer, it is one that does not: the drained region, when
      // nothing better says which (an evacuation then fails it over instead of draining it).
      const writer = writerNode?.region ?? silentWriter(topology, before, { also: region });
      rec.drain = { region, via, before, ...(writer ? { writer } : {}) };
      const writerText = writer
        ? `writer ${writer}${writerNode ? '' : ' (does not answer; no database answers as primary)'}`
        : 'writer unknown';
      if (kind === 'drain') {
        if (writer === region) {
          ctx.refuse(
            `${region} is the writer of ${input.service}: a drain moves traffic only and would leave the writer without clients; use failover (regionshift failover --service ${input.service} --to auto)`,
          );
        }
        const others = input.regions.filter((r) => r !== region && serves(before, r));
        if (others.length === 0)
          ctx.refuse(
            `${region} is the last region serving ${input.service} (${describeRecords(before.records)}): draining it would leave its clients no answer`,
          );
        state.detail = `${writerText}; ${region} ${serves(before, region) ? 'serves' : 'already serves no'} traffic; ${others.join(', ')} stay in service; Route 53 via ${via}`;
      } else if (!input.drained) {
        // Weights are the share an undrain gives back; a geolocation answer residency kept on a
        // drained region does not put it in service.
        const weighted = before.records.filter((r) => r.weight !== undefined);
        if (serves(weighted.length > 0 ? { ...before, records: weighted } : before, region))
          ctx.refuse(
            `${region} already serves ${input.service} (${describeRecords(before.records)}), and no drain of it is left to undo`,
          );
        state.detail = `${writerText}; no drain of ${region} to undo: back at its configured share; Route 53 via ${via}`;
      } else {
        const drained = input.drained;
        if (!sameTraffic(before, drained.after)) {
          ctx.refuse(
            `the records of ${input.service} changed since drain ${drained.runId} left them (${describeRecords(drained.after.records)}); now: ${describeRecords(before.records)}. ` +
              `An undrain would undo that change too: drain again, or restore the records by hand`,
          );
        }
        state.detail = `${writerText}; undoing drain ${drained.runId}; Route 53 via ${via}`;
      }
      return;
    }

    case 'traffic.drain': {
      const d = drain();
      state.region = d.via;
      const before = d.before!;
      const withdraw = ctx.compensations.register(
        ctx.stepId,
        action,
        `restore traffic records of ${input.service}`,
        async () =>
          describeRecords((await throughRegion(d.via, COMPENSATION).trafficRestore({ ...svc, state: before })).records),
      );
      rec.traffic = await unlessRefused(
        ctx,
        withdraw,
        throughRegion(d.via, ctx.opts).trafficDrain({ ...svc, region: d.region }),
      );
      d.after = rec.traffic.after;
      d.moved = changes(before, d.after);
      if (rec.traffic.kept) d.kept = rec.traffic.kept;
      const kept = (d.kept ?? []).map((k) => `${k.location} stays on ${k.region} (residency)`);
      state.detail = `${[...d.moved, ...kept].join(', ') || 'nothing to move'}; clients may cache the old answer ${rec.traffic.maxCachedSeconds}s`;
      return;
    }

    case 'traffic.undrain': {
      const d = drain();
      const drained = input.drained;
      state.region = d.via;
      const before = d.before!;
      const withdraw = ctx.compensations.register(
        ctx.stepId,
        action,
        `restore traffic records of ${input.service} as ${drained ? 'the drain left them' : 'they were'}`,
        async () =>
          describeRecords((await throughRegion(d.via, COMPENSATION).trafficRestore({ ...svc, state: before })).records),
      );
      if (drained) {
        const after = await throughRegion(d.via, ctx.opts).trafficRestore({ ...svc, state: drained.before });
        rec.traffic = {
          before,
          after,
          changed: !sameTraffic(before, after),
          maxCachedSeconds: Math.max(0, ...before.records.map((r) => r.ttl)),
        };
        d.undoes = { workflowId: drained.workflowId, runId: drained.runId };
      } else {
        // No recorded drain (a failover moved traffic away from the region, or someone edited the
        // records): the provider gives the region, and every region in service, its configured share.
        rec.traffic = await unlessRefused(
          ctx,
          withdraw,
          throughRegion(d.via, ctx.opts).trafficUndrain({ ...svc, region: d.region }),
        );
        if (!rec.traffic.changed) {
          withdraw();
          ctx.refuse(
            `nothing to undrain: the records of ${input.service} already give ${d.region} what the config does (${describeRecords(before.records)})`,
          );
        }
      }
      d.after = rec.traffic.after;
      d.moved = changes(before, d.after);
      state.detail = drained
        ? `restored the records before drain ${drained.runId}: ${d.moved.join(', ') || 'already so'}`
        : `no drain to undo; ${d.region} back at its configured share: ${d.moved.join(', ')}`;
      return;
    }

    case 'traffic.verify': {
      const d = drain();
      state.region = d.via;
      const now = await throughRegion(d.via, ctx.opts).trafficDescribe(svc);
      const want = kind === 'undrain' && input.drained ? input.drained.before : d.after;
      const problems: string[] = [];
      if (!want) problems.push('the run recorded no records to check against');
      else if (!sameTraffic(now, want))
        problems.push(
          `the records read back (${describeRecords(now.records)}) are not the ones set (${describeRecords(want.records)})`,
        );
      // Locations residency keeps on the region are the only answers it may still give.
      const kept = new Set((d.kept ?? []).map((k) => k.location));
      const checked = { ...now, records: now.records.filter((r) => r.location === undefined || !kept.has(r.location)) };
      if (kind === 'drain' && serves(checked, d.region)) problems.push(`${d.region} still receives traffic`);
      if (problems.length > 0) throw ApplicationFailure.nonRetryable(`verify: ${problems.join('; ')}`, 'VerifyFailed');
      d.verified = true;
      const from = input.triggeredAt ?? Date.parse(rec.startedAt);
      rec.rtoMs = Date.now() - from;
      rec.rtoFrom = new Date(from).toISOString();
      const keptText = kept.size > 0 ? ` but ${[...kept].join(', ')} (residency allows no other region)` : '';
      state.detail = `${describeRecords(now.records)}${kind === 'drain' ? `; ${d.region} receives no traffic${keptText}` : input.drained ? '; as before the drain' : '; as configured'}`;
      return;
    }
  }
}
