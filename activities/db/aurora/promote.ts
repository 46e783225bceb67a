// Promotion of an aurora-global target: Aurora's managed switchover (planned) or failover
// (unplanned), or the manual detach-and-promote; and what becomes of the old primary.
//
// Behaviour taken from the AWS documentation (RDS API reference and the Aurora user guide), which
// test/support/rds-sim.ts implements for the tests that moto cannot serve:
// - SwitchoverGlobalCluster(GlobalClusterIdentifier, TargetDbClusterIdentifier = the secondary's
//   ARN): synchronizes the secondaries, demotes the primary to a secondary and promotes the
//   target, RPO 0; FailoverState.Status pending, then switching-over; needs the same engine
//   major and minor version in both clusters.
// - FailoverGlobalCluster(..., AllowDataLoss: true): promotes the target now, losing what had not
//   replicated; Status pending, then failing-over, then cleared; when the old primary's region is
//   back, Aurora snapshots the old primary (rds:unplanned-global-failover-<cluster>-<time>) and
//   makes it a secondary. A request that cannot complete goes to cancelling and clears with the
//   writer unchanged.
// - RemoveFromGlobalCluster detaches a secondary, which becomes a standalone read/write cluster:
//   the manual "detach and promote" failover. It does not stop the old primary from writing.
import {
  FailoverGlobalClusterCommand,
  RemoveFromGlobalClusterCommand,
  SwitchoverGlobalClusterCommand,
  type FailoverState,
  type GlobalCluster,
} from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import type {
  DbNodeState,
  PromoteInput,
  PromoteResult,
  RejoinInput,
  RejoinResult,
} from '../../../src/contract/activities';
import { classifyAwsError, errorText } from '../../aws/errors';
import { activityContext, heartbeat, pause } from '../../context';
import { describeNode } from './describe';
import { liftFence, sqlFence } from './fence';
import { AuroraFailure, iso, type AuroraService } from './service';

/** After issuing an operation, how long a describe may not show it yet (the API is eventually consistent). */
const VISIBILITY_GRACE_MS = 60_000;

type Method = NonNullable<PromoteResult['method']>;

/** What an attempt of dbPromote did, kept in its heartbeat so a retry after a crash knows it. */
interface PromoteProgress {
  issued?: 'switchover' | 'failover' | 'detach';
  issuedAt?: number;
  /** A FailoverState for our target was seen after issuing (so a cleared state means it ended). */
  observed?: string;
  cancelled?: boolean;
  dataLossAllowed?: boolean;
  /** The target was not the writer when this chain of attempts started. */
  startedAsSecondary?: boolean;
}

/** One dbPromote attempt: its target, what the chain of attempts did so far, and its time. */
interface Attempt {
  s: AuroraService;
  mode: 'planned' | 'unplanned';
  targetArn: string;
  progress: PromoteProgress;
  notes: string[];
  deadline: number;
}

export async function dbPromote(s: AuroraService, { mode = 'planned', source }: PromoteInput): Promise<PromoteResult> {
  if (source === s.region) {
    throw ApplicationFailure.nonRetryable(
      `dbPromote: ${s.region} is the run's source; promote runs on the target's worker`,
      AuroraFailure.Config,
    );
  }
  const prior = (activityContext()?.info.heartbeatDetails ?? {}) as PromoteProgress;
  const progress: PromoteProgress = { ...prior };
  const deadline = Date.now() + s.budgetMs();
  const before = await describeNode(s);
  const a: Attempt = { s, mode, targetArn: await s.ownArn(), progress, notes: [], deadline };

  for (;;) {
    const g = await s.describeGlobal();
    const fs: FailoverState | undefined = g.FailoverState?.Status ? g.FailoverState : undefined;
    const member = s.memberOf(g, s.region);
    if (progress.startedAsSecondary === undefined) progress.startedAsSecondary = Boolean(member && !member.IsWriter);

    if (fs) {
      await waitOnOperation(a, fs);
      continue;
    }
    if (!member) {
      // Detached: a standalone read/write cluster. Ours when this chain of attempts detached it.
      return finish(a, before, progress.issued === 'detach' ? 'detach-and-promote' : undefined);
    }
    if (member.IsWriter) {
      const method: Method | undefined =
        progress.issued === 'switchover' ? 'switchover' : progress.issued === 'failover' ? 'failover' : undefined;
      return finish(a, before, method);
    }
    // A secondary, with no operation in progress.
    if (
      (progress.issued === 'switchover' || progress.issued === 'failover') &&
      (await settleIssued(a, g, progress.issued))
    )
      continue;
    if (progress.issued === 'detach') {
      await detachAndPromote(a, g);
      continue;
    }
    if (await readyToPromote(a, g)) await issue(a, g);
  }
}

function beat(a: Attempt, extra: Record<string, unknown> = {}): void {
  heartbeat({ ...a.progress, ...extra });
}

async function waitOrGiveUp(a: Attempt, what: string): Promise<void> {
  if (Date.now() >= a.deadline) {
    beat(a);
    throw ApplicationFailure.retryable(
      `${a.s.where()}: ${what}; still waiting when this attempt's time ran out (the retry keeps waiting and does not issue it again)`,
      AuroraFailure.InProgress,
    );
  }
  beat(a, { waiting: what });
  await pause(a.s.options.pollMs);
}

/** A switchover or failover is under way: ours is waited on, another one is not ours to wait for. */
async function waitOnOperation(a: Attempt, fs: FailoverState): Promise<void> {
  const { s, progress } = a;
  if (fs.ToDbClusterArn && fs.ToDbClusterArn !== a.targetArn) {
    throw ApplicationFailure.nonRetryable(
      `cannot promote ${s.where()}: a ${fs.IsDataLossAllowed ? 'failover' : 'switchover'} of ${s.globalId} to ${fs.ToDbClusterArn} is ${fs.Status}; let it finish, then run again with that region as the target or fail back`,
      AuroraFailure.OtherOperation,
    );
  }
  if (fs.IsDataLossAllowed !== undefined) progress.dataLossAllowed = fs.IsDataLossAllowed;
  progress.observed = fs.Status;
  if (fs.Status === 'cancelling') progress.cancelled = true;
  await waitOrGiveUp(
    a,
    `the ${fs.IsDataLossAllowed ? 'failover' : 'switchover'} of ${s.globalId} to ${s.region} is ${fs.Status}`,
  );
}

/**
 * The target is still a secondary with nothing in progress after this chain issued `op`: not
 * visible yet (wait), or cancelled by Aurora (fall back or fail). True when the caller should
 * describe again; false when the request was never taken and is to be issued again.
 */
async function settleIssued(a: Attempt, g: GlobalCluster, op: 'switchover' | 'failover'): Promise<boolean> {
  const { s, progress, mode } = a;
  const sinceIssue = Date.now() - (progress.issuedAt ?? 0);
  if (!progress.observed && sinceIssue < VISIBILITY_GRACE_MS) {
    await waitOrGiveUp(a, `waiting for the ${op} to show in DescribeGlobalClusters`);
    return true;
  }
  if (progress.observed || progress.cancelled) {
    const writer = s.regionOfMember(s.writerOf(g)) ?? 'unknown';
    if (mode === 'unplanned' && s.db.fallback === 'detach-and-promote') {
      a.notes.push(
        `Aurora cancelled the ${op} (FailoverState went ${progress.cancelled ? 'to cancelling and ' : ''}away with ${writer} still the writer): detached and promoted instead`,
      );
      await detachAndPromote(a, g);
      return true;
    }
    throw ApplicationFailure.nonRetryable(
      `Aurora cancelled the ${op} of ${s.globalId} to ${s.region}: FailoverState went ${progress.cancelled ? 'to cancelling and ' : ''}away and ${writer} is still the writer. ` +
        `See the global cluster's events (aws rds describe-events --source-identifier ${s.globalId} --source-type global-cluster ...) and run again` +
        (mode === 'planned'
          ? '; a planned run never falls back to detach-and-promote'
          : '; set database.fallback: detach-and-promote to fall back'),
      AuroraFailure.OperationCancelled,
    );
  }
  // Issued long ago and never seen: it was not taken.
  a.notes.push(`the earlier ${op} request never showed in DescribeGlobalClusters; issued again`);
  return false;
}

/** Checks AWS would refuse on, with a message that says what to do; false after waiting on a busy cluster. */
async function readyToPromote(a: Attempt, g: GlobalCluster): Promise<boolean> {
  const { s } = a;
  const cluster = await s.describeCluster();
  if ((cluster.DBClusterMembers ?? []).length === 0) {
    throw ApplicationFailure.nonRetryable(
      `cannot promote ${s.where()}: it is a headless secondary (no DB instances), which Aurora cannot promote; add an instance (aws rds create-db-instance --db-cluster-identifier ${s.me.clusterIdentifier} --engine ${s.db.engine} --db-instance-class …) and run again`,
      AuroraFailure.HeadlessSecondary,
    );
  }
  if (cluster.Status && cluster.Status !== 'available') {
    await waitOrGiveUp(a, `${s.me.clusterIdentifier} is ${cluster.Status}, not available`);
    return false;
  }
  if (
    a.mode === 'planned' &&
    g.EngineVersion &&
    cluster.EngineVersion &&
    majorMinor(g.EngineVersion) !== majorMinor(cluster.EngineVersion)
  ) {
    throw ApplicationFailure.nonRetryable(
      `cannot switch ${s.globalId} over to ${s.where()}: it runs ${s.db.engine} ${cluster.EngineVersion} and the global cluster ${g.EngineVersion}; a switchover needs the same major and minor version. Upgrade the lagging cluster, or run an unplanned failover (which allows it)`,
      AuroraFailure.VersionMismatch,
    );
  }
  return true;
}

/** Issues the managed switchover (planned) or failover (unplanned); where the endpoint lacks it, detaches and promotes if the config allows. */
async function issue(a: Attempt, g: GlobalCluster): Promise<void> {
  const { s, progress, targetArn } = a;
  const op = a.mode === 'planned' ? 'switchover' : 'failover';
  const writer = s.writerOf(g);
  const writerRegion = s.regionOfMember(writer);
  try {
    let res: { GlobalCluster?: GlobalCluster };
    if (op === 'switchover') {
      if (!writerRegion)
        throw ApplicationFailure.nonRetryable(
          `cannot switch ${s.globalId} over: it has no writer member to switch from; run an unplanned failover`,
          AuroraFailure.InvalidGlobalClusterState,
        );
      // Sent to the current primary's region, which runs the switchover.
      res = await s.rds(writerRegion).send(
        new SwitchoverGlobalClusterCommand({
          GlobalClusterIdentifier: s.globalId,
          TargetDbClusterIdentifier: targetArn,
        }),
      );
    } else {
      // Sent to the target's own region: the old primary's may be down.
      res = await s.rds().send(
        new FailoverGlobalClusterCommand({
          GlobalClusterIdentifier: s.globalId,
          TargetDbClusterIdentifier: targetArn,
          AllowDataLoss: true,
        }),
      );
    }
    progress.issued = op;
    progress.issuedAt = Date.now();
    progress.observed = res.GlobalCluster?.FailoverState?.Status;
    if (res.GlobalCluster?.FailoverState?.IsDataLossAllowed !== undefined)
      progress.dataLossAllowed = res.GlobalCluster.FailoverState.IsDataLossAllowed;
    beat(a, { issued: op });
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    const kind = classifyAwsError(err);
    if (kind === 'unavailable') {
      const name = op === 'switchover' ? 'SwitchoverGlobalCluster' : 'FailoverGlobalCluster';
      if (s.db.fallback !== 'detach-and-promote') {
        throw ApplicationFailure.nonRetryable(
          `${name} is not available at ${s.db.endpointUrl ?? 'this RDS endpoint'} (${errorText(err)}); set database.fallback: detach-and-promote, or promote by hand`,
          AuroraFailure.ManagedOperationUnavailable,
        );
      }
      a.notes.push(`${name} is unavailable here (${errorText(err)}): detached and promoted instead`);
      await detachAndPromote(a, g);
      return;
    }
    // Throttled or transient: retryable, and the retry describes first, so a request that
    // was taken is waited on, not sent twice. Permanent: says what to do.
    throw s.failure(
      err,
      op === 'switchover' ? `SwitchoverGlobalCluster to ${s.region}` : `FailoverGlobalCluster to ${s.region}`,
    );
  }
}

/**
 * The manual unplanned failover: detach the target (a standalone writer from then on), then
 * keep the old primary from writing: fence it at the edge and in the database where this
 * worker reaches it. Other secondaries stay attached to the old global cluster: they cannot
 * write, and detaching them would make each a writer.
 */
async function detachAndPromote(a: Attempt, g: GlobalCluster): Promise<void> {
  const { s, targetArn, progress, notes, deadline } = a;
  if (s.memberOf(g, s.region)) {
    await s.call(`RemoveFromGlobalCluster ${s.me.clusterIdentifier}`, () =>
      s
        .rds()
        .send(
          new RemoveFromGlobalClusterCommand({ GlobalClusterIdentifier: s.globalId, DbClusterIdentifier: targetArn }),
        ),
    );
    progress.issued = 'detach';
    progress.issuedAt = Date.now();
    heartbeat({ ...progress });
  }
  // Wait until Aurora lists it no more and it is available (a standalone writer).
  for (;;) {
    const now = await s.describeGlobal();
    const cluster = await s.describeCluster();
    if (!s.memberOf(now, s.region) && (!cluster.Status || cluster.Status === 'available')) break;
    if (Date.now() >= deadline) {
      throw ApplicationFailure.retryable(
        `${s.where()}: detached from ${s.globalId} but not yet available (${cluster.Status}); the retry keeps waiting`,
        AuroraFailure.InProgress,
      );
    }
    heartbeat({ ...progress, waiting: 'detach' });
    await pause(s.options.pollMs);
  }
  const oldWriter = s.regionOfMember(s.writerOf(g));
  const others = (g.GlobalClusterMembers ?? [])
    .filter((m) => !m.IsWriter && m.DBClusterArn !== targetArn)
    .map((m) => s.regionOfMember(m) ?? m.DBClusterArn);
  if (oldWriter && oldWriter !== s.region) {
    const routing = s.edge();
    if (routing) {
      try {
        const shift = await routing.set({ [oldWriter]: 'Off' }, `fence ${oldWriter} at the edge`, {
          allowNoneOn: true,
        });
        notes.push(`old primary ${oldWriter}: routing control ${shift.changed ? 'switched Off' : 'already Off'}`);
      } catch (err) {
        notes.push(`old primary ${oldWriter}: routing control not switched (${errorText(err)})`);
      } finally {
        routing.destroy();
      }
    }
    if (s.hasSql(oldWriter)) {
      try {
        const db = await sqlFence(s, oldWriter);
        notes.push(`old primary ${oldWriter}: fenced in the database (${db.how})`);
      } catch (err) {
        notes.push(
          `old primary ${oldWriter}: not reachable to fence in the database (${errorText(err)}); fence-on-return fences it when it answers`,
        );
      }
    } else if (!routing) {
      notes.push(
        `old primary ${oldWriter}: no writerEndpoint or edge fence configured, so it is not fenced; stop its application writes by hand`,
      );
    }
  }
  if (others.length > 0)
    notes.push(
      `secondaries ${others.join(', ')} stay read-only members of ${s.globalId}, following ${oldWriter ?? 'the old primary'}`,
    );
  notes.push(
    `${s.me.clusterIdentifier} is now a standalone cluster: create a new global database from it to add secondaries again`,
  );
}

async function finish(a: Attempt, before: DbNodeState, method: Method | undefined): Promise<PromoteResult> {
  const { s, progress, notes, deadline } = a;
  const promoted = progress.issued !== undefined;
  // The database-level fence replicated here from the old primary: lift it now that this is
  // the writer. Only for a promotion this run made: a cluster that already was the writer
  // and is fenced is more likely the old source named by mistake.
  if (s.hasSql() && (promoted || progress.startedAsSecondary)) {
    for (;;) {
      try {
        if (await liftFence(s, s.region))
          notes.push(`lifted the database-level fence that replicated here (${s.me.appUser} can write)`);
        break;
      } catch (err) {
        if (!(err instanceof ApplicationFailure) || err.nonRetryable || Date.now() >= deadline) throw err;
        heartbeat({ ...progress, waiting: 'writable' });
        await pause(Math.min(s.options.pollMs, 1_000));
      }
    }
  }
  return {
    region: s.region,
    promoted,
    alreadyPrimary: !promoted,
    timeline: 0,
    lsn: iso(),
    before,
    ...(method ? { method } : {}),
    ...(progress.dataLossAllowed !== undefined
      ? { dataLossAllowed: progress.dataLossAllowed }
      : method === 'failover'
        ? { dataLossAllowed: true }
        : {}),
    ...(notes.length ? { detail: notes.join('; ') } : {}),
  };
}

export async function dbRejoinAsStandby(s: AuroraService, { primaryRegion }: RejoinInput): Promise<RejoinResult> {
  const deadline = Date.now() + s.budgetMs();
  for (;;) {
    const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
    const member = s.memberOf(g, s.region);
    const writer = s.writerOf(g);
    const fs = g.FailoverState?.Status ? g.FailoverState : undefined;
    if (fs) {
      if (Date.now() >= deadline)
        throw ApplicationFailure.retryable(
          `${s.globalId} is ${fs.Status}; waiting before ${s.region} can be seen as a secondary`,
          AuroraFailure.InProgress,
        );
      heartbeat({ waiting: fs.Status });
      await pause(s.options.pollMs);
      continue;
    }
    if (member && !member.IsWriter && s.regionOfMember(writer) === primaryRegion) {
      // Aurora's switchover demoted it to a secondary of the new primary: nothing to do.
      return {
        region: s.region,
        rejoined: false,
        rewound: false,
        streamingFrom: writer?.DBClusterArn ?? primaryRegion,
        detail: `a secondary of ${primaryRegion} in ${s.globalId} (Aurora demoted it)`,
      };
    }
    const why = !member
      ? `it is not a member of ${s.globalId}`
      : member.IsWriter
        ? `it is still the writer of ${s.globalId}`
        : `it follows ${s.regionOfMember(writer) ?? 'another region'}`;
    // After a detach-and-promote the old primary cannot become a secondary in place: Aurora
    // adds secondaries only as new clusters of a global database. It stays fenced.
    return {
      region: s.region,
      rejoined: false,
      rewound: false,
      streamingFrom: '',
      detail: `not rejoined: ${why}; it stays fenced. Create a global database from ${primaryRegion}'s cluster and add a new secondary in ${s.region}, then retire ${s.me.clusterIdentifier} after reconciliation`,
    };
  }
}

function majorMinor(version: string): string {
  return version.split('.').slice(0, 2).join('.');
}
