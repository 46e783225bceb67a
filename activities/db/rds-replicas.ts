// The rds-postgres-replicas provider: the db* activities for Amazon RDS for PostgreSQL with one
// primary instance and a cross-region read replica of it in every other region. Each region's
// worker calls RDS in its own region with its own credentials (re-creating a replica reads the new
// primary's ARN in the primary's region the same way); SQL goes to each instance's endpoint.
//
// Behaviour taken from the AWS documentation (RDS API reference; "Working with DB instance read
// replicas", "Promoting a read replica", "Renaming a DB instance" in the RDS user guide), which
// test/support/rds-replicas-proxy.ts walks where moto does not:
// - PromoteReadReplica turns a replica into a standalone read/write instance: it is rebooted,
//   DBInstanceStatus goes modifying (then rebooting/backing-up) and back to available, and
//   ReadReplicaSourceDBInstanceIdentifier disappears once it is done. It works while the source's
//   region is down. A second call on an instance that is no longer a replica is refused with
//   InvalidDBInstanceState; the promotion cannot be undone.
// - A read replica cannot be re-pointed at another source: the other regions get new replicas,
//   CreateDBInstanceReadReplica in their own region with SourceDBInstanceIdentifier = the new
//   primary's ARN (cross-region replicas need the ARN), status creating → available. An
//   identifier in use is refused with DBInstanceAlreadyExists.
// - ModifyDBInstance NewDBInstanceIdentifier + ApplyImmediately renames an instance (status
//   renaming, endpoint renamed); the old identifier is free once the rename is done. Renaming
//   keeps the instance, its data and its tags: the replaced instance is kept that way, never
//   deleted, for reconciliation (tagged regionshift:retired-from / regionshift:retired-at).
// - ReplicaLag (CloudWatch, AWS/RDS, dimension DBInstanceIdentifier, seconds) is published for a
//   replica by its region.
// Mutating calls go out with the SDK's retries off: a request whose answer was lost is not sent
// again blindly; the activity's retry describes first and waits on what is in flight.
import { CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import {
  AddTagsToResourceCommand,
  CreateDBInstanceReadReplicaCommand,
  DescribeDBInstancesCommand,
  ModifyDBInstanceCommand,
  PromoteReadReplicaCommand,
  RDSClient,
  type DBInstance,
} from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import { randomUUID } from 'node:crypto';
import type { Config, RdsPostgresReplicasDatabase, RdsReplicaRegion, Service } from '../../src/lib/config/schema';
import { perService } from '../per-service';
import { awsClientConfig, regionOfArn } from '../aws/clients';
import { awsErrorCode, awsFailure, classifyAwsError, errorText } from '../aws/errors';
import { activityContext, heartbeat, pause } from '../context';
import type {
  DbNodeState,
  FenceResult,
  FollowInput,
  LagResult,
  PreserveInput,
  PreserveResult,
  PromoteInput,
  PromoteResult,
  RegionActivities,
  RejoinInput,
  RejoinResult,
  ServiceRef,
  UnfenceResult,
  VerifyWritesResult,
  WaitForLagInput,
} from '../../src/contract/activities';
import { waitBudgetMs, type AuroraOptions } from './aurora/service';
import { RoleFence } from './role-fence';
import { isLsn, lsnToBigInt } from './sql';

export type RdsReplicaActivities = Pick<
  RegionActivities,
  | 'dbDescribe'
  | 'dbFenceWrites'
  | 'dbUnfenceWrites'
  | 'dbWaitForLag'
  | 'dbPromote'
  | 'dbRejoinAsStandby'
  | 'dbFollowWriter'
  | 'dbVerifyWrites'
  | 'dbPreserve'
>;

export const RdsReplicaFailure = {
  UnknownService: 'UnknownService',
  Config: 'RdsConfig',
  InstanceNotFound: 'DBInstanceNotFound',
  /** Still promoting / renaming / creating when this attempt's time ran out (retryable: the retry waits, never re-issues). */
  InProgress: 'RdsOperationInProgress',
  LagTimeout: 'LagTimeout',
  NotWritable: 'NotWritable',
  NotStandby: 'NotStandby',
  OtherPrimary: 'OtherPrimary',
} as const;

/** After issuing a call, how long a describe may not show it yet (the API is eventually consistent). */
const VISIBILITY_GRACE_MS = 60_000;
const LAG_LOOKBACK_MS = 15 * 60_000;
const TAG_RETIRED_FROM = 'regionshift:retired-from';
const TAG_RETIRED_AT = 'regionshift:retired-at';
/** On a replica this provider created: the activity (workflow, run, activity id) that did. */
const TAG_CREATED_BY = 'regionshift:created-by';

const iso = (ms: number = Date.now()): string => new Date(ms).toISOString();
const sourceOf = (i: DBInstance): string | undefined => i.ReadReplicaSourceDBInstanceIdentifier || undefined;

/** One service's instances, as the worker of `region` reaches them. */
export class RdsReplicaService {
  readonly db: RdsPostgresReplicasDatabase;
  readonly me: RdsReplicaRegion;
  private readonly clients = new Map<string, RDSClient>();
  private cloudwatch?: CloudWatchClient;

  constructor(
    readonly service: Service,
    readonly region: string,
    private readonly env?: NodeJS.ProcessEnv,
  ) {
    if (service.database.provider !== 'rds-postgres-replicas') throw new Error('not an rds-postgres-replicas service');
    this.db = service.database;
    const me = this.db.regions[region];
    if (!me) {
      throw ApplicationFailure.nonRetryable(
        `service "${service.name}" has no RDS instance in region ${region} (it has: ${Object.keys(this.db.regions).join(', ')}); the activity was routed to the wrong region's worker, or services[${service.name}].database.regions.${region} is missing`,
        RdsReplicaFailure.UnknownService,
      );
    }
    this.me = me;
  }

  where(region = this.region, id = this.db.regions[region]?.instanceIdentifier): string {
    return `${this.service.name}'s RDS instance ${id ?? '?'} in ${region}`;
  }

  /** RDS in `region`; `mutating`: no SDK retries (see the header). */
  rds(region = this.region, mutating = false): RDSClient {
    const roleArn = this.db.regions[region]?.roleArn ?? this.me.roleArn;
    const key = `${region}|${mutating}`;
    let client = this.clients.get(key);
    if (!client) {
      client = new RDSClient(
        awsClientConfig({ region, endpointUrl: this.db.endpointUrl, roleArn }, this.env, mutating ? 1 : undefined),
      );
      this.clients.set(key, client);
    }
    return client;
  }

  cw(): CloudWatchClient {
    this.cloudwatch ??= new CloudWatchClient(
      awsClientConfig({ region: this.region, endpointUrl: this.db.endpointUrl, roleArn: this.me.roleArn }, this.env),
    );
    return this.cloudwatch;
  }

  failure(err: unknown, what: string): ApplicationFailure {
    if (err instanceof ApplicationFailure) return err;
    const code = awsErrorCode(err);
    if (/AccessDenied|UnauthorizedOperation|InvalidClientTokenId|UnrecognizedClient|SignatureDoesNotMatch/.test(code)) {
      return ApplicationFailure.nonRetryable(
        `${what} for ${this.service.name} failed: ${errorText(err)}; the ${this.region} worker's credentials may not do this: attach iam/region-worker-policy.json to its role`,
        code,
      );
    }
    return awsFailure(
      err,
      `${what} for ${this.service.name}${this.db.endpointUrl ? ` (endpoint ${this.db.endpointUrl})` : ''}`,
    );
  }

  /** An instance by identifier in `region`; undefined when it does not exist. */
  async instance(
    region = this.region,
    id = this.db.regions[region]!.instanceIdentifier,
  ): Promise<DBInstance | undefined> {
    try {
      const res = await this.rds(region).send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: id }));
      return res.DBInstances?.find((i) => i.DBInstanceIdentifier === id);
    } catch (err) {
      if (awsErrorCode(err) === 'DBInstanceNotFound' || awsErrorCode(err) === 'DBInstanceNotFoundFault')
        return undefined;
      throw this.failure(err, `DescribeDBInstances ${id} in ${region}`);
    }
  }

  async instances(region = this.region): Promise<DBInstance[]> {
    const all: DBInstance[] = [];
    let marker: string | undefined;
    do {
      const page = await this.rds(region)
        .send(new DescribeDBInstancesCommand({ Marker: marker }))
        .catch((err: unknown) => {
          throw this.failure(err, `DescribeDBInstances in ${region}`);
        });
      all.push(...(page.DBInstances ?? []));
      marker = page.Marker;
    } while (marker);
    return all;
  }

  /** The region's configured instance, or a failure saying it is missing. */
  async mine(): Promise<DBInstance> {
    const i = await this.instance();
    if (!i) {
      throw ApplicationFailure.nonRetryable(
        `${this.where()} does not exist; check database.regions.${this.region}.instanceIdentifier (a retired instance keeps its -${this.db.retiredSuffix}-<n> name)`,
        RdsReplicaFailure.InstanceNotFound,
      );
    }
    return i;
  }

  sql(region = this.region): RoleFence {
    const r = this.db.regions[region]!;
    const password = r.passwordEnv ? (this.env?.[r.passwordEnv] ?? process.env[r.passwordEnv]) : undefined;
    return new RoleFence({
      host: r.endpoint,
      port: r.port,
      database: r.database,
      appUser: r.appUser,
      adminUser: r.adminUser,
      ...(password !== undefined ? { password } : {}),
      where: `${this.where(region)} (${r.endpoint}:${r.port})`,
    });
  }

  /** The configured region whose instance an ARN or identifier names. */
  regionOf(ref: string | undefined): string | undefined {
    if (!ref) return undefined;
    if (ref.startsWith('arn:')) {
      const region = regionOfArn(ref);
      const id = ref.split(':').pop();
      return (
        Object.entries(this.db.regions).find(([r, m]) => r === region && m.instanceIdentifier === id)?.[0] ?? region
      );
    }
    return Object.entries(this.db.regions).find(([r, m]) => r === this.region && m.instanceIdentifier === ref)?.[0];
  }

  /** Newest ReplicaLag datapoint of this region's replica: when, and how far behind (ms). */
  async replicaLag(): Promise<{ at: number; lagMs: number } | undefined> {
    const period = this.db.lagMetricPeriodSeconds;
    const res = await this.cw()
      .send(
        new GetMetricDataCommand({
          StartTime: new Date(Date.now() - LAG_LOOKBACK_MS),
          EndTime: new Date(Date.now() + period * 1000),
          ScanBy: 'TimestampDescending',
          MetricDataQueries: [
            {
              Id: 'lag',
              ReturnData: true,
              MetricStat: {
                Metric: {
                  Namespace: 'AWS/RDS',
                  MetricName: 'ReplicaLag',
                  Dimensions: [{ Name: 'DBInstanceIdentifier', Value: this.me.instanceIdentifier }],
                },
                Period: period,
                Stat: 'Maximum',
              },
            },
          ],
        }),
      )
      .catch((err: unknown) => {
        throw this.failure(err, 'GetMetricData ReplicaLag');
      });
    const r = res.MetricDataResults?.[0];
    const points = (r?.Timestamps ?? [])
      .map((t, i) => ({ at: t.getTime(), v: r?.Values?.[i] }))
      .filter((p) => p.v !== undefined)
      .sort((a, b) => b.at - a.at);
    const newest = points[0];
    return newest ? { at: newest.at, lagMs: Math.max(0, newest.v! * 1000) } : undefined;
  }
}

interface Progress {
  promoteIssuedAt?: number;
  renamedTo?: string;
  createdAt?: number;
}

export function createRdsReplicaActivities(
  config: Config,
  region: string,
  options: AuroraOptions = {},
): RdsReplicaActivities {
  const opts = { pollMs: 5_000, ...options };
  const of = perService(config, {
    worker: `the ${region} worker`,
    mismatch: (svc) =>
      svc.database.provider === 'rds-postgres-replicas'
        ? undefined
        : `uses database provider ${svc.database.provider}, not rds-postgres-replicas`,
    make: (svc) => new RdsReplicaService(svc, region, opts.env),
    failureTypes: { unknown: RdsReplicaFailure.UnknownService, wrongProvider: RdsReplicaFailure.Config },
  });
  const prior = (): Progress => ({ ...((activityContext()?.info.heartbeatDetails ?? {}) as Progress) });

  /** Waits a poll interval, or hands back a retryable failure when this attempt's budget is spent. */
  async function waitOr(deadline: number, what: string, progress: Progress): Promise<void> {
    if (Date.now() >= deadline)
      throw ApplicationFailure.retryable(
        `${what}; the retry keeps waiting and issues nothing again`,
        RdsReplicaFailure.InProgress,
      );
    heartbeat({ ...progress, waiting: what });
    await pause(opts.pollMs);
  }

  async function describe(s: RdsReplicaService): Promise<DbNodeState> {
    let i: DBInstance | undefined;
    try {
      i = await s.instance();
    } catch (err) {
      if (err instanceof ApplicationFailure && err.nonRetryable) throw err;
      return { region: s.region, reachable: false, error: errorText(err) };
    }
    if (!i)
      return {
        region: s.region,
        reachable: false,
        error: `${s.where()} does not exist (being renamed or re-created?)`,
      };
    const state: DbNodeState = { region: s.region, reachable: true };
    const notes: string[] = [];
    const src = sourceOf(i);
    if (src) {
      state.role = 'standby';
      state.streamingFrom = src;
      try {
        if (s.db.lagSource === 'sql') {
          const r = await s.sql().replay();
          state.lsn = r.lsn;
          // The replica's own clock: it heard from the primary now, and has replayed up to that commit.
          state.lastHeardFromPrimaryAt = iso();
          if (r.lastCommitAt) state.lastReplayedCommitAt = r.lastCommitAt;
        } else {
          const lag = await s.replicaLag();
          state.lsn = iso();
          if (lag) {
            state.lastHeardFromPrimaryAt = iso(lag.at);
            state.lastReplayedCommitAt = iso(lag.at - lag.lagMs);
          }
        }
      } catch (err) {
        notes.push(`lag unknown: ${errorText(err)}`);
      }
    } else {
      state.role = 'primary';
      try {
        const sql = s.sql();
        state.fenced = await sql.isFenced();
        state.lsn = s.db.lagSource === 'sql' ? (await sql.replay()).lsn : iso();
      } catch (err) {
        notes.push(`could not read the fence over SQL: ${errorText(err)}`);
      }
    }
    if (i.DBInstanceStatus && i.DBInstanceStatus !== 'available') notes.push(`instance status ${i.DBInstanceStatus}`);
    if (notes.length) state.error = notes.join('; ');
    return state;
  }

  async function dbFenceWrites({ service }: ServiceRef): Promise<FenceResult> {
    const s = of(service);
    const i = await s.mine();
    if (sourceOf(i)) {
      return {
        region: s.region,
        alreadyFenced: true,
        verified: true,
        lsn: iso(),
        terminatedSessions: 0,
        detail: `a read replica of ${sourceOf(i)}: read-only by construction`,
      };
    }
    const f = await s.sql().fence();
    return {
      region: s.region,
      alreadyFenced: f.alreadyFenced,
      verified: f.verified,
      terminatedSessions: f.terminated,
      // ReplicaLag is a time series: the fence's position is then its time.
      lsn: s.db.lagSource === 'sql' ? f.lsn : iso(),
      detail: `ALTER ROLE ${s.me.appUser} NOLOGIN, and SET default_transaction_read_only = on; ${f.how}`,
    };
  }

  async function dbUnfenceWrites({ service }: ServiceRef): Promise<UnfenceResult> {
    const s = of(service);
    const i = await s.mine();
    if (sourceOf(i))
      return {
        region: s.region,
        unfenced: false,
        detail: `${s.region} is a read replica of ${sourceOf(i)}; there is no fence to undo`,
      };
    // Another region already writes (this one was replaced): lifting here would make two writers.
    for (const other of Object.keys(s.db.regions).filter((r) => r !== s.region)) {
      const o = await s.instance(other);
      if (o && !sourceOf(o)) {
        throw ApplicationFailure.nonRetryable(
          `refusing to unfence ${s.where()}: ${s.where(other)} is a standalone instance too (promoted), so both would write; lift it by hand once you are sure`,
          RdsReplicaFailure.OtherPrimary,
        );
      }
    }
    const lifted = await s.sql().lift();
    return {
      region: s.region,
      unfenced: lifted,
      detail: lifted
        ? `${s.me.appUser} can log in and write on ${s.region} again`
        : `${s.me.appUser} was not fenced on ${s.region}`,
    };
  }

  async function dbWaitForLag({ service, sourceLsn, timeoutMs }: WaitForLagInput): Promise<LagResult> {
    const s = of(service);
    const started = Date.now();
    const bySql = s.db.lagSource === 'sql';
    if (bySql ? !isLsn(sourceLsn) : Number.isNaN(Date.parse(sourceLsn))) {
      throw ApplicationFailure.nonRetryable(
        `dbWaitForLag for ${s.where()}: "${sourceLsn}" is not ${bySql ? 'a WAL position' : 'the time of a fence (ISO)'}; pass the lsn of dbFenceWrites' result`,
        RdsReplicaFailure.Config,
      );
    }
    let initialLagBytes: number | undefined;
    let seen = 'no observation';
    for (;;) {
      const i = await s.mine();
      if (!sourceOf(i))
        return {
          region: s.region,
          replayedLsn: bySql ? (await s.sql().replay()).lsn : iso(),
          initialLagBytes: initialLagBytes ?? 0,
          waitedMs: Date.now() - started,
        };
      if (bySql) {
        const r = await s.sql().replay();
        const behind = lsnToBigInt(sourceLsn) - lsnToBigInt(r.lsn);
        initialLagBytes ??= Number(behind > 0n ? behind : 0n);
        if (behind <= 0n)
          return { region: s.region, replayedLsn: r.lsn, initialLagBytes, waitedMs: Date.now() - started };
        seen = `replayed ${r.lsn}, ${behind} bytes short`;
      } else {
        const lag = await s.replicaLag();
        initialLagBytes ??= 0;
        // Replicated through (at − lag): once that is past the fence, every fenced write is here.
        if (lag && lag.at - lag.lagMs >= Date.parse(sourceLsn))
          return {
            region: s.region,
            replayedLsn: iso(lag.at - lag.lagMs),
            initialLagBytes,
            waitedMs: Date.now() - started,
          };
        if (lag) seen = `ReplicaLag ${lag.lagMs / 1000} s at ${iso(lag.at)}`;
      }
      if (Date.now() - started >= timeoutMs) {
        throw ApplicationFailure.nonRetryable(
          `${s.where()} did not replay up to the fence (${sourceLsn}) within ${timeoutMs} ms (${seen})` +
            (bySql
              ? ''
              : `; ReplicaLag is published per ${s.db.lagMetricPeriodSeconds} s: give policy.lagTimeout a few periods, or use lagSource sql`),
          RdsReplicaFailure.LagTimeout,
        );
      }
      heartbeat({ seen });
      await pause(Math.min(opts.pollMs, 1_000));
    }
  }

  async function dbPromote({ service, mode = 'planned', source }: PromoteInput): Promise<PromoteResult> {
    const s = of(service);
    if (source === s.region)
      throw ApplicationFailure.nonRetryable(
        `dbPromote: ${s.region} is the run's source; promote runs on the target's worker`,
        RdsReplicaFailure.Config,
      );
    const progress = prior();
    const deadline = Date.now() + waitBudgetMs(opts);
    const before = await describe(s);
    const notes: string[] = [];
    let startedAsReplica = before.role === 'standby';
    for (;;) {
      const i = await s.mine();
      const status = i.DBInstanceStatus ?? 'available';
      if (!sourceOf(i)) {
        if (status === 'available') break;
        await waitOr(deadline, `${s.where()} is ${status} after PromoteReadReplica`, progress);
        continue;
      }
      startedAsReplica = true;
      const issuedRecently =
        progress.promoteIssuedAt !== undefined && Date.now() - progress.promoteIssuedAt < VISIBILITY_GRACE_MS;
      if (status !== 'available' || issuedRecently) {
        // Promoting already (this attempt's call, or one whose answer a crash lost), or busy otherwise.
        await waitOr(deadline, `${s.where()} is still a replica of ${sourceOf(i)}, status ${status}`, progress);
        continue;
      }
      try {
        await s
          .rds(s.region, true)
          .send(new PromoteReadReplicaCommand({ DBInstanceIdentifier: s.me.instanceIdentifier }));
        progress.promoteIssuedAt = Date.now();
        heartbeat({ ...progress });
        notes.push(`PromoteReadReplica ${s.me.instanceIdentifier} (was a replica of ${sourceOf(i)})`);
      } catch (err) {
        // Already promoting or promoted: the describe on the next turn says which.
        if (awsErrorCode(err) === 'InvalidDBInstanceState' || awsErrorCode(err) === 'InvalidDBInstanceStateFault') {
          progress.promoteIssuedAt ??= Date.now();
          continue;
        }
        // Lost answer or throttled: retryable, and the retry describes before it sends anything.
        if (classifyAwsError(err) !== 'permanent')
          ((progress.promoteIssuedAt = Date.now()), heartbeat({ ...progress }));
        throw s.failure(err, `PromoteReadReplica ${s.me.instanceIdentifier}`);
      }
    }
    // The fence replicated here from the old primary: lift it now that this is the writer. Only for
    // an instance this chain of attempts found a replica: a writer that is fenced is more likely
    // the old source named by mistake.
    const promoted = progress.promoteIssuedAt !== undefined;
    if (promoted || startedAsReplica) {
      const sql = s.sql();
      for (;;) {
        try {
          if (await sql.inRecovery())
            throw ApplicationFailure.retryable(
              `${s.where()} is still in recovery after its promotion`,
              RdsReplicaFailure.NotWritable,
            );
          if (await sql.lift()) notes.push(`lifted the fence that replicated here (${s.me.appUser} can write)`);
          break;
        } catch (err) {
          if (!(err instanceof ApplicationFailure) || err.nonRetryable) throw err;
          await waitOr(deadline, `${s.where()} is promoted but not writable yet (${err.message})`, progress);
        }
      }
    }
    // Unplanned: the old primary may be back, or never gone; fence it where this worker reaches it.
    if (mode === 'unplanned' && source && s.db.regions[source]) {
      try {
        const f = await s.sql(source).fence();
        notes.push(`old primary ${source}: fenced in the database (${f.how})`);
      } catch (err) {
        notes.push(
          `old primary ${source}: not reachable to fence (${errorText(err)}); fence-on-return fences it when it answers`,
        );
      }
    }
    const after = s.db.lagSource === 'sql' ? (await s.sql().replay()).lsn : iso();
    return {
      region: s.region,
      promoted,
      alreadyPrimary: !promoted,
      timeline: 0,
      lsn: after,
      before,
      method: 'promote-read-replica',
      ...(notes.length ? { detail: notes.join('; ') } : {}),
    };
  }

  /**
   * Makes this region's instance a read replica of `primaryRegion`'s: the instance standing here
   * (the old primary, or a replica of it) is tagged, renamed <id>-<suffix>-<n> and kept; a new
   * replica takes the configured identifier. Each turn describes first, so a retry after a crash
   * waits on a rename or create in flight instead of issuing it again.
   */
  async function follow(s: RdsReplicaService, primaryRegion: string): Promise<RejoinResult> {
    if (primaryRegion === s.region)
      throw ApplicationFailure.nonRetryable(`${s.where()} is asked to follow itself`, RdsReplicaFailure.NotStandby);
    const progress = prior();
    const deadline = Date.now() + waitBudgetMs(opts);
    const primary = await s.instance(primaryRegion);
    if (!primary?.DBInstanceArn || sourceOf(primary) || primary.DBInstanceStatus !== 'available') {
      throw ApplicationFailure.retryable(
        `${s.where(primaryRegion)} is not an available standalone primary yet (${primary ? `status ${primary.DBInstanceStatus}, source ${sourceOf(primary) ?? 'none'}` : 'not found'})`,
        RdsReplicaFailure.InProgress,
      );
    }
    const primaryArn = primary.DBInstanceArn;
    const follows = (i: DBInstance): boolean =>
      sourceOf(i) === primaryArn ||
      (regionOfArn(primaryArn) === s.region && sourceOf(i) === primary.DBInstanceIdentifier);
    const notes: string[] = [];
    const info = activityContext()?.info;
    const creator = info?.workflowExecution
      ? `${info.workflowExecution.workflowId}/${info.workflowExecution.runId}/${info.activityId}`
      : undefined;
    for (;;) {
      const cur = await s.instance();
      if (cur) {
        const status = cur.DBInstanceStatus ?? 'available';
        if (follows(cur)) {
          if (status === 'available') {
            // A throttled heartbeat carrying createdAt may never reach the server when the attempt
            // fails at once (a lost answer): the tag this activity put on the replica says the same.
            const made =
              progress.createdAt !== undefined ||
              (creator !== undefined &&
                (cur.TagList ?? []).some((t) => t.Key === TAG_CREATED_BY && t.Value === creator));
            return {
              region: s.region,
              rejoined: made,
              rewound: false,
              how: made ? 'reclone' : 'already',
              streamingFrom: primaryArn,
              detail: `${s.me.instanceIdentifier} ${made ? 'is a new read replica' : 'already is a read replica'} of ${primaryArn}${notes.length ? `; ${notes.join('; ')}` : ''}`,
            };
          }
          await waitOr(deadline, `new replica ${s.me.instanceIdentifier} is ${status}`, progress);
          continue;
        }
        if (status !== 'available') {
          await waitOr(deadline, `${s.where()} is ${status} (a rename in flight?)`, progress);
          continue;
        }
        const retired = await retiredName(s);
        const was = sourceOf(cur) ? `a replica of ${sourceOf(cur)}` : 'a primary';
        await s
          .rds(s.region, true)
          .send(
            new AddTagsToResourceCommand({
              ResourceName: cur.DBInstanceArn!,
              Tags: [
                { Key: TAG_RETIRED_FROM, Value: s.me.instanceIdentifier },
                { Key: TAG_RETIRED_AT, Value: iso() },
                { Key: 'regionshift:service', Value: s.service.name },
              ],
            }),
          )
          .catch((err: unknown) => {
            throw s.failure(err, `AddTagsToResource ${cur.DBInstanceIdentifier}`);
          });
        try {
          await s.rds(s.region, true).send(
            new ModifyDBInstanceCommand({
              DBInstanceIdentifier: s.me.instanceIdentifier,
              NewDBInstanceIdentifier: retired,
              ApplyImmediately: true,
            }),
          );
        } catch (err) {
          if (classifyAwsError(err) !== 'permanent') heartbeat({ ...progress, renamedTo: retired });
          throw s.failure(err, `ModifyDBInstance ${s.me.instanceIdentifier} → ${retired}`);
        }
        progress.renamedTo = retired;
        heartbeat({ ...progress });
        notes.push(`${s.me.instanceIdentifier} (${was}) renamed ${retired} and kept for reconciliation`);
        continue;
      }
      // The identifier is free. A rename that a crash interrupted shows as an instance renaming.
      const renaming = (await s.instances()).find((i) => i.DBInstanceStatus === 'renaming');
      if (renaming) {
        await waitOr(deadline, `${renaming.DBInstanceIdentifier} is renaming`, progress);
        continue;
      }
      try {
        await s.rds(s.region, true).send(
          new CreateDBInstanceReadReplicaCommand({
            DBInstanceIdentifier: s.me.instanceIdentifier,
            // The ARN, not the identifier: cross-region, the SDK's RDS middleware reads the source's
            // region from it and adds the PreSignedUrl signed for that region.
            SourceDBInstanceIdentifier: primaryArn,
            ...(s.db.replicaInstanceClass ? { DBInstanceClass: s.db.replicaInstanceClass } : {}),
            Tags: [
              { Key: 'regionshift:service', Value: s.service.name },
              ...(creator ? [{ Key: TAG_CREATED_BY, Value: creator }] : []),
            ],
          }),
        );
      } catch (err) {
        if (awsErrorCode(err) === 'DBInstanceAlreadyExists' || awsErrorCode(err) === 'DBInstanceAlreadyExistsFault')
          continue;
        if (classifyAwsError(err) !== 'permanent') heartbeat({ ...progress, createdAt: Date.now() });
        throw s.failure(err, `CreateDBInstanceReadReplica ${s.me.instanceIdentifier} from ${primaryArn}`);
      }
      progress.createdAt = Date.now();
      heartbeat({ ...progress });
      notes.push(`CreateDBInstanceReadReplica ${s.me.instanceIdentifier} from ${primaryArn}`);
    }
  }

  async function retiredName(s: RdsReplicaService): Promise<string> {
    const prefix = `${s.me.instanceIdentifier}-${s.db.retiredSuffix}-`.toLowerCase();
    const used = (await s.instances())
      .map((i) => (i.DBInstanceIdentifier ?? '').toLowerCase())
      .filter((id) => id.startsWith(prefix))
      .map((id) => Number(id.slice(prefix.length)))
      .filter((n) => Number.isInteger(n));
    return `${prefix}${Math.max(0, ...used) + 1}`;
  }

  async function dbRejoinAsStandby({ service, primaryRegion }: RejoinInput): Promise<RejoinResult> {
    return follow(of(service), primaryRegion);
  }

  async function dbFollowWriter({ service, primaryRegion }: FollowInput): Promise<RejoinResult> {
    const s = of(service);
    let writer = primaryRegion;
    if (!writer) {
      // The one unfenced standalone instance among the other regions.
      const found: string[] = [];
      for (const r of Object.keys(s.db.regions).filter((x) => x !== s.region)) {
        const i = await s.instance(r);
        if (
          i &&
          !sourceOf(i) &&
          !(await s
            .sql(r)
            .isFenced()
            .catch(() => true))
        )
          found.push(r);
      }
      if (found.length !== 1)
        throw ApplicationFailure.retryable(
          `${s.service.name}: ${found.length === 0 ? 'no' : 'more than one'} writable primary among the other regions (${found.join(', ') || 'none'}); waiting`,
          RdsReplicaFailure.OtherPrimary,
        );
      writer = found[0]!;
    }
    const mine = await s.instance();
    if (mine && !sourceOf(mine) && !primaryRegion)
      throw ApplicationFailure.nonRetryable(
        `${s.where()} is a primary, not a replica; rejoin it with a planned run`,
        RdsReplicaFailure.NotStandby,
      );
    return follow(s, writer);
  }

  async function dbVerifyWrites({ service }: ServiceRef): Promise<VerifyWritesResult> {
    const s = of(service);
    const i = await s.mine();
    if (sourceOf(i))
      throw ApplicationFailure.nonRetryable(
        `${s.where()} is not writable: it is a read replica of ${sourceOf(i)}`,
        RdsReplicaFailure.NotWritable,
      );
    const latencyMs = await s.sql().verifyWrite(randomUUID(), s.region);
    return { region: s.region, ok: true, latencyMs };
  }

  async function dbPreserve({ service }: PreserveInput): Promise<PreserveResult> {
    const s = of(service);
    // The old primary is the evidence: it stays as it is, fenced, until a planned rejoin or a
    // failback renames it (kept, never deleted) and puts a replica in its place.
    const retired = (await s.instances()).filter((i) =>
      (i.DBInstanceIdentifier ?? '').startsWith(`${s.me.instanceIdentifier}-${s.db.retiredSuffix}-`),
    );
    return {
      region: s.region,
      preserved: true,
      source: s.me.instanceIdentifier,
      detail: `the old primary ${s.me.instanceIdentifier} is kept as it is (fenced); ${retired.length} earlier instance(s) kept renamed: ${retired.map((i) => i.DBInstanceIdentifier).join(', ') || 'none'}`,
    };
  }

  return {
    dbDescribe: ({ service }) => describe(of(service)),
    dbFenceWrites,
    dbUnfenceWrites,
    dbWaitForLag,
    dbPromote,
    dbRejoinAsStandby,
    dbFollowWriter,
    dbVerifyWrites,
    dbPreserve,
  };
}
