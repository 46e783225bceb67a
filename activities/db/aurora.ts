// The aurora-global provider: the db* activities for an Aurora Global Database. Each region's
// worker calls the RDS and CloudWatch APIs of its own region with its own credentials (the
// switchover is the exception: AWS takes it in the current primary's region, and the worker
// builds a client for that region the same way); where the config gives a writer endpoint it
// also speaks SQL to the cluster, for the database-level fence, verifying writes and
// aurora_global_db_status().
//
// Behaviour taken from the AWS documentation (RDS API reference and the Aurora user guide), which
// test/support/rds-sim.ts implements for the tests that moto cannot serve:
// - DescribeGlobalClusters: GlobalClusterMembers[] with DBClusterArn and IsWriter (one writer);
//   FailoverState {Status, FromDbClusterArn, ToDbClusterArn, IsDataLossAllowed} is present only
//   while a switchover or failover is pending or in progress, and empty otherwise.
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
// - Errors: GlobalClusterNotFoundFault, InvalidGlobalClusterStateFault, DBClusterNotFoundFault,
//   InvalidDBClusterStateFault; a secondary without DB instances (headless) cannot be promoted.
// - AuroraGlobalDBRPOLag (Aurora PostgreSQL) and AuroraGlobalDBReplicationLag (Aurora MySQL) are
//   published in milliseconds by the secondary cluster's region; aurora_global_db_status()
//   returns per region rpo_lag_in_msec (-1 for the primary) and last_lag_calculation_time.
//
// The database-level fence is ALTER ROLE <app> SET default_transaction_read_only = on plus ending
// the application's sessions. A role setting lives in the catalog, which Aurora replicates to
// every secondary: the promoted target inherits it, so promotion lifts it on the new writer.
// Like the postgres-streaming fence, a client that sets the parameter off in its own session
// escapes it; the edge fence (an ARC routing control switched Off) is the complement.
import {
  CopyDBClusterSnapshotCommand,
  DescribeDBClusterSnapshotsCommand,
  DescribeDBClustersCommand,
  DescribeGlobalClustersCommand,
  FailoverGlobalClusterCommand,
  RDSClient,
  RemoveFromGlobalClusterCommand,
  SwitchoverGlobalClusterCommand,
  type DBCluster,
  type DBClusterSnapshot,
  type FailoverState,
  type GlobalCluster,
  type GlobalClusterMember,
} from '@aws-sdk/client-rds';
import { CloudWatchClient, GetMetricDataCommand, ListMetricsCommand, type Dimension } from '@aws-sdk/client-cloudwatch';
import { activityContext, heartbeat, pause } from '../context';
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Client } from 'pg';
import type { AuroraGlobalDatabase, AuroraRegion, Config, Service } from '../../src/lib/config/schema';
import { awsClientConfig, regionOfArn } from '../aws/clients';
import { awsErrorCode, awsFailure, classifyAwsError, errorText } from '../aws/errors';
import { RoutingControls } from '../traffic/arc';
import type {
  DbNodeState, FenceResult, LagResult, PreserveInput, PreserveResult, PromoteInput, PromoteResult, RegionActivities,
  RejoinInput, RejoinResult, ServiceRef, UnfenceResult, VerifyWritesResult, WaitForLagInput,
} from '../../src/contract/activities';
import {
  MissingRoleError, READ_ONLY_SQL_TRANSACTION, WRITE_PROBE, attemptReadWriteLogin, canLogin, connect, close, denyLogin,
  ensureProbeObjects, errorMessage, isConfigError, isConnectionError, quoteIdent, restoreLogin, roleReadOnlySetting, sqlState,
  terminateRoleSessions, type ConnTarget, type ReadWriteAttempt,
} from './sql';

export type AuroraActivities = Pick<
  RegionActivities,
  'dbDescribe' | 'dbFenceWrites' | 'dbUnfenceWrites' | 'dbWaitForLag' | 'dbPromote' | 'dbRejoinAsStandby' | 'dbVerifyWrites' | 'dbPreserve'
>;

/** ApplicationFailure types these activities throw. */
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

const TERMINATE_DEADLINE_MS = 10_000;
const LAG_LOOKBACK_MS = 15 * 60_000;
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

const iso = (ms: number = Date.now()): string => new Date(ms).toISOString();

// ---------------------------------------------------------------------------------------------

/**
 * How long one call may wait on AWS before it hands back a retryable failure: options.waitBudgetMs,
 * else until 10 s before the activity's start-to-close timeout, else 50 s.
 */
export function waitBudgetMs(options: AuroraOptions): number {
  if (options.waitBudgetMs !== undefined) return options.waitBudgetMs;
  const info = activityContext()?.info;
  if (info?.startToCloseTimeoutMs) return Math.max(1_000, info.currentAttemptScheduledTimestampMs + info.startToCloseTimeoutMs - Date.now() - 10_000);
  return 50_000;
}

/** One service's Aurora global database, as the worker of `region` reaches it. */
export class AuroraService {
  readonly db: AuroraGlobalDatabase;
  readonly me: AuroraRegion;
  private readonly rdsClients = new Map<string, RDSClient>();
  private cloudwatch?: CloudWatchClient;
  private lagDimensions?: Dimension[];
  private arns = new Map<string, string>();

  constructor(
    readonly service: Service,
    readonly region: string,
    private readonly options: Required<Pick<AuroraOptions, 'pollMs'>> & AuroraOptions,
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
    this.cloudwatch ??= new CloudWatchClient(awsClientConfig({ region: this.region, endpointUrl: this.db.endpointUrl, roleArn: this.me.roleArn }, this.options.env));
    return this.cloudwatch;
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
    if (/version/i.test(text) && ['InvalidGlobalClusterStateFault', 'InvalidParameterValue', 'InvalidParameterCombination', 'InvalidDBClusterStateFault'].includes(code)) {
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
      return ApplicationFailure.nonRetryable(`${full}; check clusterIdentifier / clusterArn of each region in database.regions`, AuroraFailure.Config);
    }
    if (/AccessDenied|UnauthorizedOperation|InvalidClientTokenId|UnrecognizedClient|SignatureDoesNotMatch/.test(code)) {
      return ApplicationFailure.nonRetryable(
        `${full}; the ${this.region} worker's credentials may not do this: attach iam/region-worker-policy.json to its role (or the role named by roleArn)`,
        code,
      );
    }
    return awsFailure(err, `${what} for ${this.name} (global cluster ${this.globalId}${this.db.endpointUrl ? `, endpoint ${this.db.endpointUrl}` : ''})`);
  }

  async describeGlobal(): Promise<GlobalCluster> {
    const res = await this.call('DescribeGlobalClusters', () => this.rds().send(new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: this.globalId })));
    // Some endpoints (moto) ignore the filter: pick ours by name.
    const g = (res.GlobalClusters ?? []).find((c) => c.GlobalClusterIdentifier?.toLowerCase() === this.globalId.toLowerCase());
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
    if (!cluster) throw ApplicationFailure.nonRetryable(`${this.where()} was not found; check clusterIdentifier`, AuroraFailure.Config);
    if (cluster.DBClusterArn) this.arns.set(this.region, cluster.DBClusterArn);
    return cluster;
  }

  async ownArn(): Promise<string> {
    const known = this.me.clusterArn ?? this.arns.get(this.region);
    if (known) return known;
    const arn = (await this.describeCluster()).DBClusterArn;
    if (!arn) throw ApplicationFailure.nonRetryable(`${this.where()}: DescribeDBClusters gave no DBClusterArn; set clusterArn in the config`, AuroraFailure.Config);
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

  private conn(region: string, user?: string): ConnTarget {
    const r = this.db.regions[region]!;
    const password = r.passwordEnv ? this.options.env?.[r.passwordEnv] ?? process.env[r.passwordEnv] : undefined;
    const asUser = user ?? r.adminUser;
    return { host: r.writerEndpoint!, port: r.port, database: r.database, user: asUser, ...(password !== undefined && asUser === r.adminUser ? { password } : {}) };
  }

  sqlWhere(region = this.region): string {
    const r = this.db.regions[region]!;
    return `${this.where(region)} (${r.writerEndpoint}:${r.port})`;
  }

  /** A session as the admin role on `region`'s writer endpoint; connection trouble is retryable, refusals are not. */
  async withAdmin<T>(region: string, fn: (admin: Client) => Promise<T>): Promise<T> {
    const target = this.conn(region);
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
        throw ApplicationFailure.retryable(`${this.sqlWhere(region)}: lost the connection: ${errorMessage(err)}`, AuroraFailure.Unreachable);
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
    return ApplicationFailure.retryable(`${this.sqlWhere(region)} is unreachable as ${user}: ${errorMessage(err)}`, AuroraFailure.Unreachable);
  }

  async ensureProbe(admin: Client, region: string): Promise<void> {
    try {
      await ensureProbeObjects(admin, this.db.regions[region]!.appUser);
    } catch (err) {
      if (err instanceof MissingRoleError) {
        throw ApplicationFailure.nonRetryable(`${this.sqlWhere(region)}: the application role ${err.role} (appUser) does not exist; create it or fix appUser`, AuroraFailure.Config);
      }
      throw err;
    }
  }

  /** Whether the application role carries the database-level fence (the role-wide read-only default). */
  async isFenced(region: string): Promise<boolean> {
    return this.withAdmin(region, async (admin) => (await roleReadOnlySetting(admin, this.db.regions[region]!.appUser)).roleWide === true);
  }

  /**
   * The database-level fence of `region`'s writer (docs/safety.md, "The fence (aurora-global)"):
   * the application role made NOLOGIN, a wall no session can ask its way through, and its
   * read-only default kept on as well; its sessions ended; then a login as that role asking for
   * read-write refused (or, when the worker cannot log in as it, NOLOGIN read back from the
   * catalog).
   */
  async sqlFence(region: string): Promise<{ alreadyFenced: boolean; verified: boolean; terminated: number; how: string }> {
    const appUser = this.db.regions[region]!.appUser;
    const app = quoteIdent(appUser);
    return this.withAdmin(region, async (admin) => {
      await admin.query('SET SESSION default_transaction_read_only = off');
      await this.ensureProbe(admin, region);
      const before = await roleReadOnlySetting(admin, appUser);
      if (before.inDatabase === false) {
        throw ApplicationFailure.nonRetryable(
          `${this.sqlWhere(region)}: ALTER ROLE ${appUser} IN DATABASE ${this.db.regions[region]!.database} SET default_transaction_read_only = off overrides the fence for this database; reset it (ALTER ROLE ${appUser} IN DATABASE … RESET default_transaction_read_only) and run again`,
          AuroraFailure.FenceNotVerified,
        );
      }
      // Re-asserted on a retry too: it is idempotent.
      await admin.query(`ALTER ROLE ${app} SET default_transaction_read_only = on`);
      const walled = await denyLogin(admin, appUser);
      const alreadyFenced = before.roleWide === true && !walled;
      const { terminated, stillAlive } = await terminateRoleSessions(admin, appUser, { deadlineMs: TERMINATE_DEADLINE_MS, pause });
      if (stillAlive.length > 0) {
        throw ApplicationFailure.retryable(
          `${this.sqlWhere(region)}: sessions ${stillAlive.join(', ')} of ${appUser} were still alive ${TERMINATE_DEADLINE_MS / 1000} s after pg_terminate_backend; the fence is set but not proven (retrying)`,
          AuroraFailure.Unreachable,
        );
      }
      const proof = await this.proveFence(region, admin);
      return { alreadyFenced, verified: proof.verified, terminated, how: proof.how };
    });
  }

  private async proveFence(region: string, admin: Client): Promise<{ verified: boolean; how: string }> {
    const appUser = this.db.regions[region]!.appUser;
    let outcome: ReadWriteAttempt | undefined;
    try {
      outcome = await attemptReadWriteLogin(this.conn(region, appUser));
    } catch (err) {
      if (isConnectionError(err)) throw ApplicationFailure.retryable(`${this.sqlWhere(region)}: lost the connection while proving the fence: ${errorMessage(err)}`, AuroraFailure.Unreachable);
      if (!isConfigError(err)) return { verified: false, how: `the proof login as ${appUser} failed otherwise: ${errorMessage(err)}` };
    }
    if (outcome === 'login-refused') return { verified: true, how: `a login as ${appUser} asking for read-write was refused (NOLOGIN)` };
    if (outcome !== undefined) {
      throw ApplicationFailure.nonRetryable(
        `${this.sqlWhere(region)}: ${appUser} could still log in after ALTER ROLE … NOLOGIN${outcome === 'written' ? ' and write' : ''}; do not promote another region on this fence`,
        AuroraFailure.FenceNotVerified,
      );
    }
    // No login as the application role from here (no password): the catalog says what a login would meet.
    const verified = !(await canLogin(admin, appUser));
    return { verified, how: verified ? `${appUser} is NOLOGIN in pg_roles (no login as ${appUser} from this worker)` : `${appUser} can still log in according to pg_roles` };
  }

  /** Lifts the replicated fence on `region`'s writer; false when there was none. */
  async liftFence(region: string): Promise<boolean> {
    const appUser = this.db.regions[region]!.appUser;
    return this.withAdmin(region, async (admin) => {
      const own = await roleReadOnlySetting(admin, appUser);
      let lifted: boolean;
      try {
        lifted = await restoreLogin(admin, appUser);
        if (own.roleWide !== true && !lifted) return false;
        if (own.roleWide === true) await admin.query(`ALTER ROLE ${quoteIdent(appUser)} RESET default_transaction_read_only`);
      } catch (err) {
        // Just promoted: the instance may take a moment to accept writes.
        if (sqlState(err) === READ_ONLY_SQL_TRANSACTION) throw ApplicationFailure.retryable(`${this.sqlWhere(region)} is not writable yet: ${errorMessage(err)}`, AuroraFailure.NotWritable);
        throw err;
      }
      // Sessions opened while the role was read-only keep that default: end them so the
      // application reconnects writable.
      await terminateRoleSessions(admin, appUser, { deadlineMs: TERMINATE_DEADLINE_MS, pause });
      return true;
    });
  }

  // --- lag ---------------------------------------------------------------------------------------

  /** The newest lag observation for this region's (secondary) cluster: when, and how far behind. */
  async lag(): Promise<{ at: number; lagMs: number; source: string } | undefined> {
    if (this.db.lagMetric === 'aurora_global_db_status') {
      if (!this.hasSql()) return undefined;
      return this.withAdmin(this.region, async (admin) => {
        const { rows } = await admin.query<{ rpo: string | null; at: Date | null }>(
          'SELECT rpo_lag_in_msec::text AS rpo, last_lag_calculation_time AS at FROM aurora_global_db_status() WHERE aws_region = $1',
          [this.region],
        );
        const row = rows[0];
        if (!row || row.rpo === null || !row.at) return undefined;
        // -1 marks the primary: nothing to lag behind.
        return { at: row.at.getTime(), lagMs: Math.max(0, Number(row.rpo)), source: 'aurora_global_db_status()' };
      });
    }
    const metric = this.db.lagMetric;
    if (!this.lagDimensions) {
      // Find the metric's exact dimension set (a GetMetricData query must name all of them).
      const listed = await this.call(`ListMetrics ${metric}`, () =>
        this.cw().send(new ListMetricsCommand({ Namespace: 'AWS/RDS', MetricName: metric, Dimensions: [{ Name: 'DBClusterIdentifier', Value: this.me.clusterIdentifier }] })),
      );
      const dims = listed.Metrics?.map((m) => m.Dimensions ?? []).sort((a, b) => a.length - b.length)[0];
      if (!dims) return undefined;
      this.lagDimensions = dims;
    }
    const period = this.db.lagMetricPeriodSeconds;
    const end = Date.now() + period * 1000;
    const res = await this.call(`GetMetricData ${metric}`, () =>
      this.cw().send(
        new GetMetricDataCommand({
          StartTime: new Date(Date.now() - LAG_LOOKBACK_MS),
          EndTime: new Date(end),
          ScanBy: 'TimestampDescending',
          MetricDataQueries: [{ Id: 'lag', MetricStat: { Metric: { Namespace: 'AWS/RDS', MetricName: metric, Dimensions: this.lagDimensions }, Period: period, Stat: 'Maximum' }, ReturnData: true }],
        }),
      ),
    );
    const result = res.MetricDataResults?.[0];
    const points = (result?.Timestamps ?? []).map((t, i) => ({ at: t.getTime(), value: result?.Values?.[i] })).filter((p) => p.value !== undefined);
    points.sort((a, b) => b.at - a.at);
    const newest = points[0];
    if (!newest) return undefined;
    return { at: newest.at, lagMs: Math.max(0, newest.value!), source: `CloudWatch ${metric} (${period}s, Maximum)` };
  }
}

// ---------------------------------------------------------------------------------------------

export function createAuroraActivities(config: Config, region: string, options: AuroraOptions = {}): AuroraActivities {
  const opts = { pollMs: 5_000, ...options };
  const services = new Map<string, AuroraService>();
  const of = (service: string): AuroraService => {
    let s = services.get(service);
    if (!s) {
      const svc = config.services.find((x) => x.name === service);
      if (!svc) {
        throw ApplicationFailure.nonRetryable(
          `unknown service "${service}": the config of the ${region} worker has no such service (it has: ${config.services.map((x) => x.name).join(', ') || 'none'})`,
          AuroraFailure.UnknownService,
        );
      }
      if (svc.database.provider !== 'aurora-global') {
        throw ApplicationFailure.nonRetryable(`service "${service}" uses database provider ${svc.database.provider}, not aurora-global: routed to the wrong provider (activities/index.ts)`, AuroraFailure.Config);
      }
      s = new AuroraService(svc, region, opts);
      services.set(service, s);
    }
    return s;
  };

  const budgetMs = (): number => waitBudgetMs(opts);

  function edge(s: AuroraService): RoutingControls | undefined {
    if (s.db.edgeFence !== 'routing-control' || s.service.traffic.provider !== 'route53-arc') return undefined;
    return new RoutingControls(s.service, s.service.traffic, opts.env);
  }

  async function describe(s: AuroraService): Promise<DbNodeState> {
    let g: GlobalCluster;
    let cluster: DBCluster;
    try {
      [g, cluster] = await Promise.all([s.describeGlobal(), s.describeCluster()]);
    } catch (err) {
      if (err instanceof ApplicationFailure && err.nonRetryable) throw err;
      return { region: s.region, reachable: false, error: errorText(err) };
    }
    const member = s.memberOf(g, s.region);
    const writer = s.writerOf(g);
    const state: DbNodeState = { region: s.region, reachable: true, lsn: iso() };
    if (!member || member.IsWriter) {
      // Not a member: a detached (standalone) cluster, which is read/write.
      state.role = 'primary';
      if (s.hasSql()) {
        try {
          state.fenced = await s.isFenced(s.region);
        } catch (err) {
          state.error = `could not read the fence over SQL: ${errorText(err)}`;
        }
      }
    } else {
      state.role = 'standby';
      state.streamingFrom = writer?.DBClusterArn;
      try {
        const lag = await s.lag();
        if (lag) {
          state.lastHeardFromPrimaryAt = iso(lag.at);
          state.lastReplayedCommitAt = iso(lag.at - lag.lagMs);
        }
      } catch (err) {
        state.error = `lag unknown: ${errorText(err)}`;
      }
    }
    if (cluster.Status && cluster.Status !== 'available') state.error = `${state.error ? `${state.error}; ` : ''}cluster status ${cluster.Status}`;
    return state;
  }

  async function dbDescribe({ service }: ServiceRef): Promise<DbNodeState> {
    return describe(of(service));
  }

  async function dbFenceWrites({ service }: ServiceRef): Promise<FenceResult> {
    const s = of(service);
    const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
    const member = s.memberOf(g, s.region);
    if (member && !member.IsWriter) {
      // A secondary cannot write: the fence holds by construction (after a switchover or failover
      // Aurora made it one).
      return { region: s.region, alreadyFenced: true, verified: true, lsn: iso(), terminatedSessions: 0, detail: `a secondary of global cluster ${s.globalId}: read-only by construction` };
    }
    const what = member ? `the writer of global cluster ${s.globalId}` : `a standalone cluster (not a member of ${s.globalId})`;
    const notes: string[] = [];
    let result: FenceResult = { region: s.region, alreadyFenced: false, verified: false, lsn: '', terminatedSessions: 0 };
    const routing = edge(s);
    if (!s.hasSql() && !routing) {
      throw ApplicationFailure.nonRetryable(
        `cannot fence ${s.where()}, ${what}: the config gives no writerEndpoint (database-level fence) and no edgeFence; add one of them, or stop the application's writes by hand before promoting`,
        AuroraFailure.CannotFence,
      );
    }
    if (routing) {
      try {
        const shift = await routing.set({ [s.region]: 'Off' }, `fence ${s.region} at the edge`, { allowNoneOn: true });
        notes.push(`edge: routing control of ${s.region} ${shift.changed ? 'switched Off' : 'already Off'}`);
      } catch (err) {
        notes.push(`edge: routing control of ${s.region} not switched: ${errorText(err)}`);
      } finally {
        routing.destroy();
      }
    }
    if (s.hasSql()) {
      const db = await s.sqlFence(s.region);
      result = { ...result, alreadyFenced: db.alreadyFenced, verified: db.verified, terminatedSessions: db.terminated };
      notes.unshift(`database: ALTER ROLE ${s.me.appUser} NOLOGIN, and SET default_transaction_read_only = on; ${db.how}`);
    } else {
      notes.push('database: no writerEndpoint, so no database-level fence or proof; the edge alone does not stop clients that already resolved the region');
    }
    // The fence's position is a time: everything acknowledged before it is older than this.
    result.lsn = iso();
    result.detail = notes.join('; ');
    return result;
  }

  async function dbUnfenceWrites({ service }: ServiceRef): Promise<UnfenceResult> {
    const s = of(service);
    const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
    const member = s.memberOf(g, s.region);
    if (member && !member.IsWriter) {
      const writer = s.regionOfMember(s.writerOf(g));
      return { region: s.region, unfenced: false, detail: `${s.region} is a secondary (the writer is ${writer ?? 'unknown'}); there is no fence to undo` };
    }
    const fs = g.FailoverState?.Status ? g.FailoverState : undefined;
    if (fs) {
      throw ApplicationFailure.retryable(`refusing to unfence ${s.where()} while a ${fs.IsDataLossAllowed ? 'failover' : 'switchover'} of ${s.globalId} is ${fs.Status}`, AuroraFailure.OtherOperation);
    }
    if (!member) {
      // A detached cluster: the service's writer may be this one or another; undoing the fence
      // on a cluster outside the global database is a decision for a person.
      throw ApplicationFailure.nonRetryable(
        `refusing to unfence ${s.where()}: it is not a member of ${s.globalId} (detached), so regionshift cannot tell whether another region writes; lift it by hand (ALTER ROLE ${s.me.appUser} RESET default_transaction_read_only) once you are sure`,
        AuroraFailure.OtherPrimary,
      );
    }
    const notes: string[] = [];
    let unfenced = false;
    if (s.hasSql()) {
      const lifted = await s.liftFence(s.region);
      unfenced ||= lifted;
      notes.push(lifted ? `ALTER ROLE ${s.me.appUser} RESET default_transaction_read_only on ${s.region}: it can write again` : `${s.me.appUser} had no read-only default on ${s.region}`);
    }
    const routing = edge(s);
    if (routing) {
      try {
        const shift = await routing.set({ [s.region]: 'On' }, `unfence ${s.region} at the edge`);
        unfenced ||= shift.changed;
        notes.push(`routing control of ${s.region} ${shift.changed ? 'switched On' : 'already On'}`);
      } finally {
        routing.destroy();
      }
    }
    return { region: s.region, unfenced, detail: notes.join('; ') || 'nothing to undo' };
  }

  async function dbWaitForLag({ service, sourceLsn, timeoutMs }: WaitForLagInput): Promise<LagResult> {
    const s = of(service);
    const fencedAt = Date.parse(sourceLsn);
    if (Number.isNaN(fencedAt)) {
      throw ApplicationFailure.nonRetryable(
        `dbWaitForLag for ${s.where()}: "${sourceLsn}" is not the time of an aurora-global fence (ISO); pass the lsn of dbFenceWrites' result`,
        AuroraFailure.Config,
      );
    }
    const started = Date.now();
    let last: { at: number; lagMs: number; source: string } | undefined;
    for (;;) {
      const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
      const member = s.memberOf(g, s.region);
      if (!member || member.IsWriter) {
        // A retry after the promotion: the writer has everything it will ever have.
        return { region: s.region, replayedLsn: iso(), initialLagBytes: 0, waitedMs: Date.now() - started };
      }
      last = await s.lag();
      // Replicated through (at − lag): once that is past the fence, every fenced write is here.
      if (last && last.at - last.lagMs >= fencedAt) {
        return { region: s.region, replayedLsn: iso(last.at - last.lagMs), initialLagBytes: 0, waitedMs: Date.now() - started };
      }
      heartbeat({ lag: last });
      if (Date.now() - started >= timeoutMs) {
        const seen = last ? `newest ${last.source}: ${last.lagMs} ms behind at ${iso(last.at)}` : `no ${s.db.lagMetric} observation for ${s.me.clusterIdentifier}`;
        throw ApplicationFailure.nonRetryable(
          `${s.where()} did not show replication past the fence (${sourceLsn}) within ${timeoutMs} ms (${seen}). ` +
            (s.db.lagMetric === 'aurora_global_db_status'
              ? 'Check the secondary with aurora_global_db_status() before promoting'
              : `CloudWatch publishes it per ${s.db.lagMetricPeriodSeconds} s and a datapoint from after the fence is needed: give policy.lagTimeout a few periods (3m), or use lagMetric aurora_global_db_status`),
          AuroraFailure.LagTimeout,
        );
      }
      await pause(Math.min(opts.pollMs, 5_000));
    }
  }

  async function dbPromote({ service, mode = 'planned', source }: PromoteInput): Promise<PromoteResult> {
    const s = of(service);
    if (source === s.region) {
      throw ApplicationFailure.nonRetryable(`dbPromote: ${s.region} is the run's source; promote runs on the target's worker`, AuroraFailure.Config);
    }
    const prior = (activityContext()?.info.heartbeatDetails ?? {}) as PromoteProgress;
    const progress: PromoteProgress = { ...prior };
    const deadline = Date.now() + budgetMs();
    const before = await describe(s);
    const targetArn = await s.ownArn();
    const notes: string[] = [];
    const beat = (extra: Record<string, unknown> = {}): void => heartbeat({ ...progress, ...extra });

    const waitOrGiveUp = async (what: string): Promise<void> => {
      if (Date.now() >= deadline) {
        beat();
        throw ApplicationFailure.retryable(
          `${s.where()}: ${what}; still waiting when this attempt's time ran out (the retry keeps waiting and does not issue it again)`,
          AuroraFailure.InProgress,
        );
      }
      beat({ waiting: what });
      await pause(opts.pollMs);
    };

    for (;;) {
      const g = await s.describeGlobal();
      const fs: FailoverState | undefined = g.FailoverState?.Status ? g.FailoverState : undefined;
      const member = s.memberOf(g, s.region);
      if (progress.startedAsSecondary === undefined) progress.startedAsSecondary = Boolean(member && !member.IsWriter);

      if (fs) {
        if (fs.ToDbClusterArn && fs.ToDbClusterArn !== targetArn) {
          throw ApplicationFailure.nonRetryable(
            `cannot promote ${s.where()}: a ${fs.IsDataLossAllowed ? 'failover' : 'switchover'} of ${s.globalId} to ${fs.ToDbClusterArn} is ${fs.Status}; let it finish, then run again with that region as the target or fail back`,
            AuroraFailure.OtherOperation,
          );
        }
        if (fs.IsDataLossAllowed !== undefined) progress.dataLossAllowed = fs.IsDataLossAllowed;
        progress.observed = fs.Status;
        if (fs.Status === 'cancelling') progress.cancelled = true;
        await waitOrGiveUp(`the ${fs.IsDataLossAllowed ? 'failover' : 'switchover'} of ${s.globalId} to ${s.region} is ${fs.Status}`);
        continue;
      }

      if (!member) {
        // Detached: a standalone read/write cluster. Ours when this chain of attempts detached it.
        return finish(s, before, progress, progress.issued === 'detach' ? 'detach-and-promote' : undefined, notes, deadline);
      }
      if (member.IsWriter) {
        const method: Method | undefined = progress.issued === 'switchover' ? 'switchover' : progress.issued === 'failover' ? 'failover' : undefined;
        return finish(s, before, progress, method, notes, deadline);
      }

      // A secondary, with no operation in progress.
      if (progress.issued === 'switchover' || progress.issued === 'failover') {
        const sinceIssue = Date.now() - (progress.issuedAt ?? 0);
        if (!progress.observed && sinceIssue < VISIBILITY_GRACE_MS) {
          await waitOrGiveUp(`waiting for the ${progress.issued} to show in DescribeGlobalClusters`);
          continue;
        }
        if (progress.observed || progress.cancelled) {
          const op = progress.issued;
          const writer = s.regionOfMember(s.writerOf(g)) ?? 'unknown';
          if (mode === 'unplanned' && s.db.fallback === 'detach-and-promote') {
            notes.push(`Aurora cancelled the ${op} (FailoverState went ${progress.cancelled ? 'to cancelling and ' : ''}away with ${writer} still the writer): detached and promoted instead`);
            await detachAndPromote(s, g, targetArn, progress, notes, deadline);
            continue;
          }
          throw ApplicationFailure.nonRetryable(
            `Aurora cancelled the ${op} of ${s.globalId} to ${s.region}: FailoverState went ${progress.cancelled ? 'to cancelling and ' : ''}away and ${writer} is still the writer. ` +
              `See the global cluster's events (aws rds describe-events --source-identifier ${s.globalId} --source-type global-cluster ...) and run again` +
              (mode === 'planned' ? '; a planned run never falls back to detach-and-promote' : '; set database.fallback: detach-and-promote to fall back'),
            AuroraFailure.OperationCancelled,
          );
        }
        // Issued long ago and never seen: it was not taken. Issue again below.
        notes.push(`the earlier ${progress.issued} request never showed in DescribeGlobalClusters; issued again`);
      }
      if (progress.issued === 'detach') {
        await detachAndPromote(s, g, targetArn, progress, notes, deadline);
        continue;
      }

      // Checks AWS would refuse on, with a message that says what to do.
      const cluster = await s.describeCluster();
      if ((cluster.DBClusterMembers ?? []).length === 0) {
        throw ApplicationFailure.nonRetryable(
          `cannot promote ${s.where()}: it is a headless secondary (no DB instances), which Aurora cannot promote; add an instance (aws rds create-db-instance --db-cluster-identifier ${s.me.clusterIdentifier} --engine ${s.db.engine} --db-instance-class …) and run again`,
          AuroraFailure.HeadlessSecondary,
        );
      }
      if (cluster.Status && cluster.Status !== 'available') {
        await waitOrGiveUp(`${s.me.clusterIdentifier} is ${cluster.Status}, not available`);
        continue;
      }
      if (mode === 'planned' && g.EngineVersion && cluster.EngineVersion && majorMinor(g.EngineVersion) !== majorMinor(cluster.EngineVersion)) {
        throw ApplicationFailure.nonRetryable(
          `cannot switch ${s.globalId} over to ${s.where()}: it runs ${s.db.engine} ${cluster.EngineVersion} and the global cluster ${g.EngineVersion}; a switchover needs the same major and minor version. Upgrade the lagging cluster, or run an unplanned failover (which allows it)`,
          AuroraFailure.VersionMismatch,
        );
      }

      const op = mode === 'planned' ? 'switchover' : 'failover';
      const writer = s.writerOf(g);
      const writerRegion = s.regionOfMember(writer);
      try {
        let res: { GlobalCluster?: GlobalCluster };
        if (op === 'switchover') {
          if (!writerRegion) throw ApplicationFailure.nonRetryable(`cannot switch ${s.globalId} over: it has no writer member to switch from; run an unplanned failover`, AuroraFailure.InvalidGlobalClusterState);
          // Sent to the current primary's region, which runs the switchover.
          res = await s.rds(writerRegion).send(new SwitchoverGlobalClusterCommand({ GlobalClusterIdentifier: s.globalId, TargetDbClusterIdentifier: targetArn }));
        } else {
          // Sent to the target's own region: the old primary's may be down.
          res = await s.rds().send(new FailoverGlobalClusterCommand({ GlobalClusterIdentifier: s.globalId, TargetDbClusterIdentifier: targetArn, AllowDataLoss: true }));
        }
        progress.issued = op;
        progress.issuedAt = Date.now();
        progress.observed = res.GlobalCluster?.FailoverState?.Status;
        if (res.GlobalCluster?.FailoverState?.IsDataLossAllowed !== undefined) progress.dataLossAllowed = res.GlobalCluster.FailoverState.IsDataLossAllowed;
        beat({ issued: op });
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
          notes.push(`${name} is unavailable here (${errorText(err)}): detached and promoted instead`);
          await detachAndPromote(s, g, targetArn, progress, notes, deadline);
          continue;
        }
        // Throttled or transient: retryable, and the retry describes first, so a request that
        // was taken is waited on, not sent twice. Permanent: says what to do.
        throw s.failure(err, op === 'switchover' ? `SwitchoverGlobalCluster to ${s.region}` : `FailoverGlobalCluster to ${s.region}`);
      }
    }
  }

  /**
   * The manual unplanned failover: detach the target (a standalone writer from then on), then
   * keep the old primary from writing: fence it at the edge and in the database where this
   * worker reaches it. Other secondaries stay attached to the old global cluster: they cannot
   * write, and detaching them would make each a writer.
   */
  async function detachAndPromote(s: AuroraService, g: GlobalCluster, targetArn: string, progress: PromoteProgress, notes: string[], deadline: number): Promise<void> {
    if (s.memberOf(g, s.region)) {
      await s.call(`RemoveFromGlobalCluster ${s.me.clusterIdentifier}`, () =>
        s.rds().send(new RemoveFromGlobalClusterCommand({ GlobalClusterIdentifier: s.globalId, DbClusterIdentifier: targetArn })),
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
        throw ApplicationFailure.retryable(`${s.where()}: detached from ${s.globalId} but not yet available (${cluster.Status}); the retry keeps waiting`, AuroraFailure.InProgress);
      }
      heartbeat({ ...progress, waiting: 'detach' });
      await pause(opts.pollMs);
    }
    const oldWriter = s.regionOfMember(s.writerOf(g));
    const others = (g.GlobalClusterMembers ?? []).filter((m) => !m.IsWriter && m.DBClusterArn !== targetArn).map((m) => s.regionOfMember(m) ?? m.DBClusterArn);
    if (oldWriter && oldWriter !== s.region) {
      const routing = edge(s);
      if (routing) {
        try {
          const shift = await routing.set({ [oldWriter]: 'Off' }, `fence ${oldWriter} at the edge`, { allowNoneOn: true });
          notes.push(`old primary ${oldWriter}: routing control ${shift.changed ? 'switched Off' : 'already Off'}`);
        } catch (err) {
          notes.push(`old primary ${oldWriter}: routing control not switched (${errorText(err)})`);
        } finally {
          routing.destroy();
        }
      }
      if (s.hasSql(oldWriter)) {
        try {
          const db = await s.sqlFence(oldWriter);
          notes.push(`old primary ${oldWriter}: fenced in the database (${db.how})`);
        } catch (err) {
          notes.push(`old primary ${oldWriter}: not reachable to fence in the database (${errorText(err)}); fence-on-return fences it when it answers`);
        }
      } else if (!routing) {
        notes.push(`old primary ${oldWriter}: no writerEndpoint or edge fence configured, so it is not fenced; stop its application writes by hand`);
      }
    }
    if (others.length > 0) notes.push(`secondaries ${others.join(', ')} stay read-only members of ${s.globalId}, following ${oldWriter ?? 'the old primary'}`);
    notes.push(`${s.me.clusterIdentifier} is now a standalone cluster: create a new global database from it to add secondaries again`);
  }

  async function finish(s: AuroraService, before: DbNodeState, progress: PromoteProgress, method: Method | undefined, notes: string[], deadline: number): Promise<PromoteResult> {
    const promoted = progress.issued !== undefined;
    // The database-level fence replicated here from the old primary: lift it now that this is
    // the writer. Only for a promotion this run made: a cluster that already was the writer
    // and is fenced is more likely the old source named by mistake.
    if (s.hasSql() && (promoted || progress.startedAsSecondary)) {
      for (;;) {
        try {
          if (await s.liftFence(s.region)) notes.push(`lifted the database-level fence that replicated here (${s.me.appUser} can write)`);
          break;
        } catch (err) {
          if (!(err instanceof ApplicationFailure) || err.nonRetryable || Date.now() >= deadline) throw err;
          heartbeat({ ...progress, waiting: 'writable' });
          await pause(Math.min(opts.pollMs, 1_000));
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
      ...(progress.dataLossAllowed !== undefined ? { dataLossAllowed: progress.dataLossAllowed } : method === 'failover' ? { dataLossAllowed: true } : {}),
      ...(notes.length ? { detail: notes.join('; ') } : {}),
    };
  }

  async function dbRejoinAsStandby({ service, primaryRegion }: RejoinInput): Promise<RejoinResult> {
    const s = of(service);
    const deadline = Date.now() + budgetMs();
    for (;;) {
      const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
      const member = s.memberOf(g, s.region);
      const writer = s.writerOf(g);
      const fs = g.FailoverState?.Status ? g.FailoverState : undefined;
      if (fs) {
        if (Date.now() >= deadline) throw ApplicationFailure.retryable(`${s.globalId} is ${fs.Status}; waiting before ${s.region} can be seen as a secondary`, AuroraFailure.InProgress);
        heartbeat({ waiting: fs.Status });
        await pause(opts.pollMs);
        continue;
      }
      if (member && !member.IsWriter && s.regionOfMember(writer) === primaryRegion) {
        // Aurora's switchover demoted it to a secondary of the new primary: nothing to do.
        return { region: s.region, rejoined: false, rewound: false, streamingFrom: writer?.DBClusterArn ?? primaryRegion, detail: `a secondary of ${primaryRegion} in ${s.globalId} (Aurora demoted it)` };
      }
      const why = !member ? `it is not a member of ${s.globalId}` : member.IsWriter ? `it is still the writer of ${s.globalId}` : `it follows ${s.regionOfMember(writer) ?? 'another region'}`;
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

  async function dbVerifyWrites({ service }: ServiceRef): Promise<VerifyWritesResult> {
    const s = of(service);
    const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
    const member = s.memberOf(g, s.region);
    if (member && !member.IsWriter) {
      throw ApplicationFailure.nonRetryable(
        `${s.where()} is not writable: it is a secondary of ${s.globalId}; dbVerifyWrites must run in the region that should now be the writer`,
        AuroraFailure.NotWritable,
      );
    }
    if (!s.hasSql()) {
      const cluster = await s.describeCluster();
      return {
        region: s.region,
        ok: cluster.Status === 'available',
        latencyMs: 0,
        detail: `API check only (no writerEndpoint): ${member ? 'the writer of' : 'detached from'} ${s.globalId}, cluster status ${cluster.Status}`,
      };
    }
    const appUser = s.me.appUser;
    await s.withAdmin(s.region, async (admin) => {
      try {
        await admin.query('SET SESSION default_transaction_read_only = off');
        await s.ensureProbe(admin, s.region);
      } catch (err) {
        if (sqlState(err) === READ_ONLY_SQL_TRANSACTION) throw ApplicationFailure.retryable(`${s.sqlWhere()} is not writable yet: ${errorMessage(err)}`, AuroraFailure.NotWritable);
        throw err;
      }
      const own = await roleReadOnlySetting(admin, appUser);
      if (own.roleWide === true || own.inDatabase === true) {
        throw ApplicationFailure.nonRetryable(
          `${s.sqlWhere()} is not writable for ${appUser}: the role's default is read-only (a fence); lift it with dbUnfenceWrites or ALTER ROLE ${appUser} RESET default_transaction_read_only if this region should write`,
          AuroraFailure.NotWritable,
        );
      }
    });
    const id = randomUUID();
    return s.withAdmin(s.region, async (admin) => {
      // As the application role: a login when this worker can (its settings then apply), else SET ROLE.
      let session: Client = admin;
      let own: Client | undefined;
      try {
        own = await connect({ host: s.me.writerEndpoint!, port: s.me.port, database: s.me.database, user: appUser });
        session = own;
      } catch {
        await admin.query(`SET ROLE ${quoteIdent(appUser)}`);
      }
      try {
        const t0 = performance.now();
        try {
          await session.query(`INSERT INTO ${WRITE_PROBE} (id, region) VALUES ($1, $2)`, [id, s.region]);
        } catch (err) {
          if (sqlState(err) === READ_ONLY_SQL_TRANSACTION) {
            throw ApplicationFailure.nonRetryable(`${s.sqlWhere()} is not writable: ${appUser}'s insert was refused as read-only (${errorMessage(err)})`, AuroraFailure.NotWritable);
          }
          throw err;
        }
        const { rows } = await session.query(`SELECT 1 FROM ${WRITE_PROBE} WHERE id = $1`, [id]);
        return { region: s.region, ok: rows.length === 1, latencyMs: Math.round((performance.now() - t0) * 10) / 10 };
      } finally {
        await close(own);
      }
    });
  }

  /**
   * Keeps what Aurora kept of the old primary after an unplanned failover: the
   * rds:unplanned-global-failover-<cluster>-<time> snapshot it takes when the old primary's region
   * is back, copied to a manual snapshot (automated ones expire with the retention period).
   * Runs in the old primary's region. Not there yet: retryable, so the caller keeps waiting.
   */
  async function dbPreserve({ service, since }: PreserveInput): Promise<PreserveResult> {
    const s = of(service);
    const cluster = s.me.clusterIdentifier;
    const prefix = `rds:unplanned-global-failover-${cluster}-`.toLowerCase();
    const notBefore = Date.parse(since) - 5 * 60_000;
    const snapshots: DBClusterSnapshot[] = [];
    let marker: string | undefined;
    do {
      const page = await s.call(`DescribeDBClusterSnapshots ${cluster}`, () =>
        s.rds().send(new DescribeDBClusterSnapshotsCommand({ DBClusterIdentifier: cluster, Marker: marker })),
      );
      snapshots.push(...(page.DBClusterSnapshots ?? []));
      marker = page.Marker;
    } while (marker);
    const candidates = snapshots
      .filter((snap) => (snap.DBClusterSnapshotIdentifier ?? '').toLowerCase().startsWith(prefix))
      .filter((snap) => !snap.SnapshotCreateTime || Number.isNaN(notBefore) || snap.SnapshotCreateTime.getTime() >= notBefore)
      .sort((a, b) => (b.SnapshotCreateTime?.getTime() ?? 0) - (a.SnapshotCreateTime?.getTime() ?? 0));
    const found = candidates[0];
    if (!found) {
      throw ApplicationFailure.retryable(
        `no ${prefix}… snapshot of ${s.where()} yet: Aurora takes it when the old primary's region is back after the failover; still waiting`,
        AuroraFailure.SnapshotNotYet,
      );
    }
    const sourceId = found.DBClusterSnapshotIdentifier!;
    if (found.Status && found.Status !== 'available') {
      throw ApplicationFailure.retryable(`snapshot ${sourceId} of ${s.where()} is ${found.Status}; waiting until it is available to copy it`, AuroraFailure.SnapshotNotYet);
    }
    const stamp = (found.SnapshotCreateTime ?? new Date()).toISOString().replace(/[-:T]/g, '').slice(0, 12);
    const copyId = `${s.db.preserveSnapshotPrefix}-${cluster}-${stamp}`.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 255);
    const existing = await s.rds()
      .send(new DescribeDBClusterSnapshotsCommand({ DBClusterSnapshotIdentifier: copyId }))
      .then((r) => r.DBClusterSnapshots?.[0])
      .catch((err: unknown) => {
        if (awsErrorCode(err) === 'DBClusterSnapshotNotFoundFault') return undefined;
        throw s.failure(err, `DescribeDBClusterSnapshots ${copyId}`);
      });
    if (existing) return { region: s.region, preserved: true, source: sourceId, copy: copyId, detail: `already copied: ${sourceId} → ${copyId} (${existing.Status})` };
    try {
      await s.rds().send(
        new CopyDBClusterSnapshotCommand({
          SourceDBClusterSnapshotIdentifier: sourceId,
          TargetDBClusterSnapshotIdentifier: copyId,
          CopyTags: true,
          Tags: [{ Key: 'regionshift:preserved-from', Value: sourceId.slice(0, 256) }, { Key: 'regionshift:service', Value: s.name }],
        }),
      );
    } catch (err) {
      if (awsErrorCode(err) !== 'DBClusterSnapshotAlreadyExistsFault') throw s.failure(err, `CopyDBClusterSnapshot ${sourceId}`);
    }
    return { region: s.region, preserved: true, source: sourceId, copy: copyId, detail: `copied ${sourceId} → ${copyId}: the old primary's data as of the failover, for reconciliation` };
  }

  return { dbDescribe, dbFenceWrites, dbUnfenceWrites, dbWaitForLag, dbPromote, dbRejoinAsStandby, dbVerifyWrites, dbPreserve };
}

function majorMinor(version: string): string {
  return version.split('.').slice(0, 2).join('.');
}
