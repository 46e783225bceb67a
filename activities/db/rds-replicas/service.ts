// One service's RDS instances as a region's worker reaches them (the rds-postgres-replicas
// provider: Amazon RDS for PostgreSQL with one primary instance and a cross-region read replica
// of it in every other region): the RDS and CloudWatch clients, describes, errors, and the wait
// between polls of an operation in flight.
//
// Mutating calls go out with the SDK's retries off: a request whose answer was lost is not sent
// again blindly; the activity's retry describes first and waits on what is in flight.
import { CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeDBInstancesCommand, RDSClient, type DBInstance } from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import type { RdsPostgresReplicasDatabase, RdsReplicaRegion, Service } from '../../../src/lib/config/schema';
import { awsClientConfig, regionOfArn } from '../../aws/clients';
import { awsErrorCode, awsFailure, errorText } from '../../aws/errors';
import { activityContext, heartbeat, pause } from '../../context';
import type { AuroraOptions } from '../aurora/service';
import { RoleFence } from '../role-fence';

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
export const VISIBILITY_GRACE_MS = 60_000;
const LAG_LOOKBACK_MS = 15 * 60_000;
export const TAG_RETIRED_FROM = 'regionshift:retired-from';
export const TAG_RETIRED_AT = 'regionshift:retired-at';
/** On a replica this provider created: the activity (workflow, run, activity id) that did. */
export const TAG_CREATED_BY = 'regionshift:created-by';

export const iso = (ms: number = Date.now()): string => new Date(ms).toISOString();
export const sourceOf = (i: DBInstance): string | undefined => i.ReadReplicaSourceDBInstanceIdentifier || undefined;

/** One service's instances, as the worker of `region` reaches them. */
export class RdsReplicaService {
  readonly db: RdsPostgresReplicasDatabase;
  readonly me: RdsReplicaRegion;
  private readonly clients = new Map<string, RDSClient>();
  private cloudwatch?: CloudWatchClient;

  constructor(
    readonly service: Service,
    readonly region: string,
    readonly options: AuroraOptions & { pollMs: number } = { pollMs: 5_000 },
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
        awsClientConfig(
          { region, endpointUrl: this.db.endpointUrl, roleArn },
          this.options.env,
          mutating ? 1 : undefined,
        ),
      );
      this.clients.set(key, client);
    }
    return client;
  }

  cw(): CloudWatchClient {
    this.cloudwatch ??= new CloudWatchClient(
      awsClientConfig(
        { region: this.region, endpointUrl: this.db.endpointUrl, roleArn: this.me.roleArn },
        this.options.env,
      ),
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
    const password = r.passwordEnv ? (this.options.env?.[r.passwordEnv] ?? process.env[r.passwordEnv]) : undefined;
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

export interface Progress {
  promoteIssuedAt?: number;
  renamedTo?: string;
  createdAt?: number;
}

/** What earlier attempts of this activity did, from their heartbeats. */
export const prior = (): Progress => ({ ...((activityContext()?.info.heartbeatDetails ?? {}) as Progress) });

/** Waits a poll interval, or hands back a retryable failure when this attempt's budget is spent. */
export async function waitOr(s: RdsReplicaService, deadline: number, what: string, progress: Progress): Promise<void> {
  if (Date.now() >= deadline)
    throw ApplicationFailure.retryable(
      `${what}; the retry keeps waiting and issues nothing again`,
      RdsReplicaFailure.InProgress,
    );
  heartbeat({ ...progress, waiting: what });
  await pause(s.options.pollMs);
}
