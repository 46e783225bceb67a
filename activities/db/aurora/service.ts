// The RDS and CloudWatch side of an Aurora Global Database as one region's worker reaches it:
// clients with that worker's credentials (its own region, except the switchover, which AWS takes
// in the current primary's region), the describes, what a failed call means, and SQL sessions on
// a region's writer endpoint. The activities built on it live beside it: fence.ts, lag.ts,
// promote.ts, preserve.ts, wired by index.ts.
//
// Behaviour taken from the AWS documentation (RDS API reference and the Aurora user guide), which
// test/support/rds-sim.ts implements for the tests that moto cannot serve:
// - DescribeGlobalClusters: GlobalClusterMembers[] with DBClusterArn and IsWriter (one writer);
//   FailoverState {Status, FromDbClusterArn, ToDbClusterArn, IsDataLossAllowed} is present only
//   while a switchover or failover is pending or in progress, and empty otherwise.
// - Errors: GlobalClusterNotFoundFault, InvalidGlobalClusterStateFault, DBClusterNotFoundFault,
//   InvalidDBClusterStateFault; a secondary without DB instances (headless) cannot be promoted.
import {
  DescribeDBClustersCommand,
  DescribeGlobalClustersCommand,
  RDSClient,
  type DBCluster,
  type GlobalCluster,
  type GlobalClusterMember,
} from '@aws-sdk/client-rds';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { activityContext } from '../../context';
import type { AuroraGlobalDatabase, AuroraRegion, Service } from '../../../src/lib/config/schema';
import { awsClientConfig, regionOfArn } from '../../aws/clients';
import { awsErrorCode, awsFailure, errorText } from '../../aws/errors';
import { RoutingControls } from '../../traffic/arc';
import { close, connect, errorMessage, isConfigError, isConnectionError, type ConnTarget } from '../sql';

export const AuroraFailure = {
  UnknownService: 'UnknownService',
  Config: 'AuroraConfig',
  Unreachable: 'DbUnreachable',
  GlobalClusterNotFound: 'GlobalClusterNotFound',
  InvalidGlobalClusterState: 'InvalidGlobalClusterState',
  VersionMismatch: 'EngineVersionMismatch',
  HeadlessSecondary: 'HeadlessSecondary',
  /** A switchover or failover to another cluster is under way. */
  OtherOperation: 'OtherOperationInProgress',
  /** Aurora cancelled the switchover or failover (FailoverState went to cancelling). */
  OperationCancelled: 'OperationCancelled',
  ManagedOperationUnavailable: 'ManagedOperationUnavailable',
  /** Still switching over / failing over when this attempt's time ran out (retryable: the retry waits, never re-issues). */
  InProgress: 'PromotionInProgress',
  LagTimeout: 'LagTimeout',
  NotWritable: 'NotWritable',
  FenceNotVerified: 'FenceNotVerified',
  CannotFence: 'CannotFence',
  OtherPrimary: 'OtherPrimary',
  SnapshotNotYet: 'SnapshotNotYet',
  /** Restoring the preserved snapshot for reconciliation: the copy, cluster or instance is not available yet (retryable). */
  RestoreInProgress: 'RestoreInProgress',
  /** The restored cluster or its instance ended in a state it will not leave by waiting. */
  RestoreFailed: 'RestoreFailed',
} as const;

export interface AuroraOptions {
  env?: NodeJS.ProcessEnv;
  /** How often an operation in progress is polled. Default 5 s. */
  pollMs?: number;
  /**
   * How long one call waits for an operation before it hands back a retryable PromotionInProgress
   * (the retry keeps waiting and never re-issues). Default: until 10 s before the activity's
   * start-to-close timeout; 50 s outside an activity.
   */
  waitBudgetMs?: number;
}

export const iso = (ms: number = Date.now()): string => new Date(ms).toISOString();

// ---------------------------------------------------------------------------------------------

/**
 * How long one call may wait on AWS before it hands back a retryable failure: options.waitBudgetMs,
 * else until 10 s before the activity's start-to-close timeout, else 50 s.
 */
export function waitBudgetMs(options: AuroraOptions): number {
  if (options.waitBudgetMs !== undefined) return options.waitBudgetMs;
  const info = activityContext()?.info;
  if (info?.startToCloseTimeoutMs)
    return Math.max(1_000, info.currentAttemptScheduledTimestampMs + info.startToCloseTimeoutMs - Date.now() - 10_000);
  return 50_000;
}

/** One service's Aurora global database, as the worker of `region` reaches it. */
export class AuroraService {
  readonly db: AuroraGlobalDatabase;
  readonly me: AuroraRegion;
  private readonly rdsClients = new Map<string, RDSClient>();
  private cloudwatch?: CloudWatchClient;
  private arns = new Map<string, string>();

  constructor(
    readonly service: Service,
    readonly region: string,
    readonly options: Required<Pick<AuroraOptions, 'pollMs'>> & AuroraOptions,
  ) {
    if (service.database.provider !== 'aurora-global') throw new Error('not an aurora-global service');
    this.db = service.database;
    const me = this.db.regions[region];
    if (!me) {
      throw ApplicationFailure.nonRetryable(
        `service "${service.name}" has no Aurora cluster in region ${region} (it has: ${Object.keys(this.db.regions).join(', ')}); this activity was routed to the wrong region's worker, or the config lacks services[${service.name}].database.regions.${region}`,
        AuroraFailure.UnknownService,
      );
    }
    this.me = me;
  }

  get name(): string {
    return this.service.name;
  }

  get globalId(): string {
    return this.db.globalClusterIdentifier;
  }

  where(region = this.region): string {
    return `${this.name}'s Aurora cluster ${this.db.regions[region]?.clusterIdentifier ?? '?'} in ${region}`;
  }

  /** The RDS API of a region, called with this worker's credentials (its own region unless an API demands another). */
  rds(region = this.region): RDSClient {
    const roleArn = this.db.regions[region]?.roleArn ?? this.me.roleArn;
    const key = `${region}|${roleArn ?? ''}`;
    let client = this.rdsClients.get(key);
    if (!client) {
      client = new RDSClient(awsClientConfig({ region, endpointUrl: this.db.endpointUrl, roleArn }, this.options.env));
      this.rdsClients.set(key, client);
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

  /** How long one call may wait on AWS (waitBudgetMs). */
  budgetMs(): number {
    return waitBudgetMs(this.options);
  }

  /** The edge fence (an ARC routing control per region), when the config asks for it. */
  edge(): RoutingControls | undefined {
    if (this.db.edgeFence !== 'routing-control' || this.service.traffic.provider !== 'route53-arc') return undefined;
    return new RoutingControls(this.service, this.service.traffic, this.options.env);
  }

  /** An RDS call, its failure made a Temporal failure that says what to do. */
  async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.failure(err, what);
    }
  }

  failure(err: unknown, what: string): ApplicationFailure {
    if (err instanceof ApplicationFailure) return err;
    const code = awsErrorCode(err);
    const text = errorText(err);
    const full = `${what} for ${this.name} (global cluster ${this.globalId}) failed: ${text}`;
    if (code === 'GlobalClusterNotFoundFault') {
      return ApplicationFailure.nonRetryable(
        `${full}; check database.globalClusterIdentifier in the config. After a detach-and-promote the promoted cluster is standalone: create a new global database from it and name that one`,
        AuroraFailure.GlobalClusterNotFound,
      );
    }
    if (
      /version/i.test(text) &&
      [
        'InvalidGlobalClusterStateFault',
        'InvalidParameterValue',
        'InvalidParameterCombination',
        'InvalidDBClusterStateFault',
      ].includes(code)
    ) {
      return ApplicationFailure.nonRetryable(
        `${full}; a switchover needs the same engine major and minor version in the primary and the target: upgrade the lagging cluster (aws rds modify-db-cluster --engine-version …), or run an unplanned failover, which allows different versions`,
        AuroraFailure.VersionMismatch,
      );
    }
    if (code === 'InvalidGlobalClusterStateFault') {
      return ApplicationFailure.nonRetryable(
        `${full}; the global cluster is busy or not in a state that allows this: let the operation in progress finish (aws rds describe-global-clusters --global-cluster-identifier ${this.globalId} shows Status and FailoverState), then run again`,
        AuroraFailure.InvalidGlobalClusterState,
      );
    }
    if (code === 'InvalidDBClusterStateFault') {
      return ApplicationFailure.nonRetryable(
        `${full}; a member cluster is not available (modifying, upgrading, or a secondary without DB instances): check aws rds describe-db-clusters in each region, add an instance to a headless secondary, then run again`,
        AuroraFailure.InvalidGlobalClusterState,
      );
    }
    if (code === 'DBClusterNotFoundFault') {
      return ApplicationFailure.nonRetryable(
        `${full}; check clusterIdentifier / clusterArn of each region in database.regions`,
        AuroraFailure.Config,
      );
    }
    if (/AccessDenied|UnauthorizedOperation|InvalidClientTokenId|UnrecognizedClient|SignatureDoesNotMatch/.test(code)) {
      return ApplicationFailure.nonRetryable(
        `${full}; the ${this.region} worker's credentials may not do this: attach iam/region-worker-policy.json to its role (or the role named by roleArn)`,
        code,
      );
    }
    return awsFailure(
      err,
      `${what} for ${this.name} (global cluster ${this.globalId}${this.db.endpointUrl ? `, endpoint ${this.db.endpointUrl}` : ''})`,
    );
  }

  async describeGlobal(): Promise<GlobalCluster> {
    const res = await this.call('DescribeGlobalClusters', () =>
      this.rds().send(new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: this.globalId })),
    );
    // Some endpoints (moto) ignore the filter: pick ours by name.
    const g = (res.GlobalClusters ?? []).find(
      (c) => c.GlobalClusterIdentifier?.toLowerCase() === this.globalId.toLowerCase(),
    );
    if (!g) {
      throw ApplicationFailure.nonRetryable(
        `global cluster ${this.globalId} of ${this.name} does not exist (as seen from ${this.region}); check database.globalClusterIdentifier`,
        AuroraFailure.GlobalClusterNotFound,
      );
    }
    return g;
  }

  /** This region's cluster (DescribeDBClusters in this region). */
  async describeCluster(): Promise<DBCluster> {
    const res = await this.call(`DescribeDBClusters ${this.me.clusterIdentifier}`, () =>
      this.rds().send(new DescribeDBClustersCommand({ DBClusterIdentifier: this.me.clusterIdentifier })),
    );
    const cluster = res.DBClusters?.[0];
    if (!cluster)
      throw ApplicationFailure.nonRetryable(
        `${this.where()} was not found; check clusterIdentifier`,
        AuroraFailure.Config,
      );
    if (cluster.DBClusterArn) this.arns.set(this.region, cluster.DBClusterArn);
    return cluster;
  }

  async ownArn(): Promise<string> {
    const known = this.me.clusterArn ?? this.arns.get(this.region);
    if (known) return known;
    const arn = (await this.describeCluster()).DBClusterArn;
    if (!arn)
      throw ApplicationFailure.nonRetryable(
        `${this.where()}: DescribeDBClusters gave no DBClusterArn; set clusterArn in the config`,
        AuroraFailure.Config,
      );
    return arn;
  }

  /** The member of the global cluster that is `region`'s cluster: by configured ARN, else by the ARN's region. */
  memberOf(g: GlobalCluster, region: string): GlobalClusterMember | undefined {
    const arn = this.db.regions[region]?.clusterArn ?? (region === this.region ? this.arns.get(region) : undefined);
    const members = g.GlobalClusterMembers ?? [];
    if (arn) return members.find((m) => m.DBClusterArn === arn);
    return members.find((m) => m.DBClusterArn && regionOfArn(m.DBClusterArn) === region);
  }

  writerOf(g: GlobalCluster): GlobalClusterMember | undefined {
    return (g.GlobalClusterMembers ?? []).find((m) => m.IsWriter);
  }

  regionOfMember(m: GlobalClusterMember | undefined): string | undefined {
    if (!m?.DBClusterArn) return undefined;
    const configured = Object.entries(this.db.regions).find(([, r]) => r.clusterArn === m.DBClusterArn)?.[0];
    return configured ?? regionOfArn(m.DBClusterArn);
  }

  // --- SQL --------------------------------------------------------------------------------------

  hasSql(region = this.region): boolean {
    return this.db.engine === 'aurora-postgresql' && Boolean(this.db.regions[region]?.writerEndpoint);
  }

  /** How to reach `region`'s writer endpoint as `user` (the admin role by default, the only one given a password). */
  sqlTarget(region: string, user?: string): ConnTarget {
    const r = this.db.regions[region]!;
    const password = r.passwordEnv ? (this.options.env?.[r.passwordEnv] ?? process.env[r.passwordEnv]) : undefined;
    const asUser = user ?? r.adminUser;
    return {
      host: r.writerEndpoint!,
      port: r.port,
      database: r.database,
      user: asUser,
      ...(password !== undefined && asUser === r.adminUser ? { password } : {}),
    };
  }

  sqlWhere(region = this.region): string {
    const r = this.db.regions[region]!;
    return `${this.where(region)} (${r.writerEndpoint}:${r.port})`;
  }

  /** A session as the admin role on `region`'s writer endpoint; connection trouble is retryable, refusals are not. */
  async withAdmin<T>(region: string, fn: (admin: Client) => Promise<T>): Promise<T> {
    const target = this.sqlTarget(region);
    let admin: Client;
    try {
      admin = await connect(target);
    } catch (err) {
      throw this.connectFailure(region, target.user, err);
    }
    try {
      return await fn(admin);
    } catch (err) {
      if (!(err instanceof TemporalFailure) && isConnectionError(err)) {
        throw ApplicationFailure.retryable(
          `${this.sqlWhere(region)}: lost the connection: ${errorMessage(err)}`,
          AuroraFailure.Unreachable,
        );
      }
      throw err;
    } finally {
      await close(admin);
    }
  }

  connectFailure(region: string, user: string, err: unknown): ApplicationFailure {
    const r = this.db.regions[region]!;
    if (isConfigError(err)) {
      return ApplicationFailure.nonRetryable(
        `${this.sqlWhere(region)}: the server refused ${user}: ${errorMessage(err)}; check adminUser/database for ${region} and that ${r.passwordEnv ?? 'its passwordEnv variable'} is set in the ${this.region} worker's environment`,
        AuroraFailure.Config,
      );
    }
    return ApplicationFailure.retryable(
      `${this.sqlWhere(region)} is unreachable as ${user}: ${errorMessage(err)}`,
      AuroraFailure.Unreachable,
    );
  }
}
