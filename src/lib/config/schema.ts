// The shape of regionshift.yaml (services, their regions, providers and policies) and of
// runbooks/<kind>.yaml. Validated when loaded; see load.ts for how errors are reported.
import { z } from 'zod';
import { residencyRuleOf } from '../../contract/policy/residency';
import { ServiceTriggers, Triggers } from './triggers';
import { ReconcileConfig } from './reconcile';

const regionName = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'a region name like us-west-2');
const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like 500ms, 30s, 5m or 1h');

export const PostgresRegion = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  database: z.string().default('postgres'),
  /** Role the application writes as; the fence is verified against it. */
  appUser: z.string().default('app'),
  /** Role the worker administers the server as. Its password, if any, comes from passwordEnv. */
  adminUser: z.string().default('postgres'),
  /** Name of an environment variable on that region's worker holding the admin password. */
  passwordEnv: z.string().optional(),
  /** Data directory, for the steps that need the server's files (rejoin as standby). */
  dataDir: z.string().min(1),
  /** PostgreSQL's bin directory on that region's host; found automatically when absent. */
  pgBin: z.string().optional(),
});

export const PostgresStreamingDatabase = z.strictObject({
  provider: z.literal('postgres-streaming'),
  regions: z.record(regionName, PostgresRegion),
});

const HostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'host:port of a Temporal frontend, like 127.0.0.1:7233');
const roleArn = z
  .string()
  .regex(
    /^arn:aws[a-z-]*:iam::\d{12}:role\/.+/,
    'an IAM role ARN like arn:aws:iam::123456789012:role/regionshift-worker',
  );

/** How a region's worker reaches an RDS or Aurora PostgreSQL database for the SQL fence, lag and writes. */
const rdsSqlAccess = {
  port: z.number().int().min(1).max(65535).default(5432),
  database: z.string().default('postgres'),
  /** Role the application writes as; the fence makes it read-only (and, rds-postgres-replicas, NOLOGIN). */
  appUser: z.string().default('app'),
  /** Role the worker connects as (the master user, or one granted rds_superuser). */
  adminUser: z.string().default('postgres'),
  /** Name of an environment variable on this region's worker holding adminUser's password. */
  passwordEnv: z.string().optional(),
  /** A role this region's worker assumes for its AWS calls; absent: the default credential chain. */
  roleArn: roleArn.optional(),
};

/** One region's member of an Aurora global database, as that region's worker reaches it. */
export const AuroraRegion = z.strictObject({
  /** The regional DB cluster's identifier (DescribeDBClusters in this region). */
  clusterIdentifier: z.string().min(1),
  /** Its ARN; read from DescribeDBClusters when absent. */
  clusterArn: z
    .string()
    .regex(
      /^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster:.+/,
      'a DB cluster ARN like arn:aws:rds:us-west-2:123456789012:cluster:ledger-west',
    )
    .optional(),
  /**
   * The cluster's writer endpoint, for what needs SQL: the database-level fence, verifying
   * writes, and lagMetric aurora_global_db_status. Absent: those fall back to the AWS APIs only.
   */
  writerEndpoint: z.string().min(1).optional(),
  ...rdsSqlAccess,
  /**
   * Where reconciliation restores this region's cluster's preserved snapshot (when this region was
   * the old primary): the subnet group and security groups the restored cluster gets, so that the
   * other regions' workers can reach it. Absent: the account's defaults (AWS: default VPC and
   * security group).
   */
  restore: z
    .strictObject({
      dbSubnetGroupName: z.string().min(1).optional(),
      vpcSecurityGroupIds: z.array(z.string().min(1)).optional(),
    })
    .optional(),
});

export const AuroraGlobalDatabase = z.strictObject({
  provider: z.literal('aurora-global'),
  engine: z.enum(['aurora-postgresql', 'aurora-mysql']).default('aurora-postgresql'),
  globalClusterIdentifier: z.string().min(1),
  regions: z.record(regionName, AuroraRegion),
  /**
   * Where replication lag (the RPO gate, waitForLag, target-by-policy) is read: the CloudWatch
   * metric AuroraGlobalDBRPOLag (Aurora PostgreSQL), AuroraGlobalDBReplicationLag (older Aurora
   * MySQL), both from the secondary's region; or SQL aurora_global_db_status() on the writer
   * endpoint (Aurora PostgreSQL, needs writerEndpoint).
   */
  lagMetric: z
    .enum(['AuroraGlobalDBRPOLag', 'AuroraGlobalDBReplicationLag', 'aurora_global_db_status'])
    .default('AuroraGlobalDBRPOLag'),
  /** CloudWatch period of the lag metric: 60 for Aurora's standard-resolution metrics. */
  lagMetricPeriodSeconds: z.number().int().min(1).default(60),
  /**
   * When SwitchoverGlobalCluster / FailoverGlobalCluster is unavailable or Aurora cancels it:
   * detach the target (RemoveFromGlobalCluster) and fence the old primary, or fail the step.
   */
  fallback: z.enum(['detach-and-promote', 'none']).default('detach-and-promote'),
  /**
   * Fence at the network edge too: switch the region's Route 53 ARC routing control Off (needs
   * traffic.provider route53-arc). Best effort when the region is down; recorded either way.
   */
  edgeFence: z.enum(['none', 'routing-control']).default('none'),
  /** After an unplanned failover the rds:unplanned-global-failover-… snapshot is copied to <prefix>-<cluster>-<time>. */
  preserveSnapshotPrefix: z
    .string()
    .regex(/^[a-zA-Z][a-zA-Z0-9-]*$/, 'letters, digits and dashes, starting with a letter')
    .default('regionshift-preserved'),
  /** The instance class of the one instance reconciliation adds to the restored cluster (it only reads). */
  restoreInstanceClass: z
    .string()
    .regex(/^db\.[a-z0-9][a-z0-9.-]*$/, 'a DB instance class like db.r6g.large or db.serverless')
    .default('db.r6g.large'),
  /** Overrides the RDS and CloudWatch endpoint (moto in the local stack). */
  endpointUrl: z.string().url().optional(),
});

/** One region's RDS for PostgreSQL instance (the primary or a cross-region read replica), as that region's worker reaches it. */
export const RdsReplicaRegion = z.strictObject({
  /**
   * The instance that serves this region (DescribeDBInstances in this region). After a failover the
   * instance that stood here is renamed <id>-<retiredSuffix>-<n> and kept, and a new read replica of
   * the new primary takes this identifier.
   */
  instanceIdentifier: z
    .string()
    .regex(
      /^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{0,40}[a-zA-Z0-9]$/,
      'an RDS DB instance identifier: a letter, then letters, digits and single dashes, at most 42 characters (room for the retired suffix)',
    ),
  /** The instance's endpoint, for the SQL fence, lag (lagSource sql), making the promoted instance writable, and verifying writes. */
  endpoint: z.string().min(1),
  ...rdsSqlAccess,
});

/**
 * Amazon RDS for PostgreSQL with cross-region read replicas (replicate_source_db): one primary
 * instance, one read replica of it in every other region. A failover promotes the target's replica
 * (PromoteReadReplica) and re-creates the other regions' replicas from it.
 */
export const RdsPostgresReplicasDatabase = z.strictObject({
  provider: z.literal('rds-postgres-replicas'),
  regions: z.record(regionName, RdsReplicaRegion),
  /**
   * Where replication lag is read: sql (pg_last_wal_replay_lsn() and pg_last_xact_replay_timestamp()
   * on the replica against the fence's pg_current_wal_lsn(): exact, the default), or the CloudWatch
   * metric ReplicaLag (seconds, published by the replica's region).
   */
  lagSource: z.enum(['sql', 'ReplicaLag']).default('sql'),
  /** CloudWatch period of ReplicaLag: 60 for RDS's standard metrics. */
  lagMetricPeriodSeconds: z.number().int().min(1).default(60),
  /** Replaced instances are renamed <instanceIdentifier>-<retiredSuffix>-<n> and kept (never deleted) for reconciliation. */
  retiredSuffix: z
    .string()
    .regex(/^[a-z][a-z0-9]{0,11}$/, 'lowercase letters and digits, at most 12, starting with a letter')
    .default('retired'),
  /** The instance class of re-created replicas; absent: the new primary's class (CreateDBInstanceReadReplica's default). */
  replicaInstanceClass: z
    .string()
    .regex(/^db\.[a-z0-9][a-z0-9.-]*$/, 'a DB instance class like db.r6g.large')
    .optional(),
  /** Overrides the RDS and CloudWatch endpoint (moto in the local stack). */
  endpointUrl: z.string().url().optional(),
});

export const Database = z.discriminatedUnion('provider', [
  PostgresStreamingDatabase,
  AuroraGlobalDatabase,
  RdsPostgresReplicasDatabase,
]);

/** One region's self-managed Redis, as every worker reaches it (re-pointing is done from the target's worker). */
export const RedisRegion = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(6379),
  /** Name of an environment variable on the workers holding the AUTH password (requirepass). */
  passwordEnv: z.string().optional(),
});

/**
 * Self-managed Redis with replication: one primary (in the service's writer region) and a
 * replica in every other region. Fenced with min-replicas-to-write, promoted with REPLICAOF NO
 * ONE, the others re-pointed with REPLICAOF host port.
 */
export const RedisCache = z.strictObject({
  provider: z.literal('redis'),
  regions: z.record(regionName, RedisRegion),
  /** How long a planned promotion waits for the target to replicate the fenced primary's offset. */
  syncTimeout: duration.default('10s'),
});

/** ElastiCache (Redis OSS / Valkey) Global Datastore: one primary replication group, read-only secondaries in other regions. */
export const ElastiCacheGlobalCache = z.strictObject({
  provider: z.literal('elasticache-global'),
  globalReplicationGroupId: z.string().min(1),
  /** Per region, the member replication group. */
  regions: z.record(regionName, z.strictObject({ replicationGroupId: z.string().min(1), roleArn: roleArn.optional() })),
  /** Overrides the ElastiCache endpoint (a stand-in in tests). */
  endpointUrl: z.string().url().optional(),
});

export const Cache = z.discriminatedUnion('provider', [RedisCache, ElastiCacheGlobalCache]);

const continent = z.enum(['AF', 'AN', 'AS', 'EU', 'NA', 'OC', 'SA']);
/** A Route 53 geolocation: a continent, a country (ISO 3166 alpha-2) with an optional subdivision, or the default. */
export const GeoLocation = z.union([
  z.literal('default'),
  z.strictObject({ continent }),
  z.strictObject({
    country: z.string().regex(/^[A-Z]{2}$/, 'a two-letter country code like DE'),
    subdivision: z
      .string()
      .regex(/^[A-Z0-9]{1,3}$/, 'a subdivision code like CA')
      .optional(),
  }),
]);

export const Route53Traffic = z.strictObject({
  provider: z.literal('route53'),
  hostedZone: z.string().min(1),
  recordName: z.string().min(1),
  routing: z.enum(['weighted', 'failover', 'geolocation']).default('weighted'),
  ttl: z.number().int().min(0).default(30),
  /** Per region, the CNAME target clients are sent to. */
  endpoints: z.record(regionName, z.string().min(1)),
  /** weighted: each region's weight when every region is in service (seeding, undrain). Default: the first region 100, the others 0. */
  weights: z.record(regionName, z.number().int().min(0).max(255)).optional(),
  /**
   * geolocation: which region answers which location; one rule must be `default`. `residency`
   * names a residency class whose regions alone may answer the location when its region drains
   * (EU locations without one: eu-* only; see src/contract/traffic/geo-drain.ts).
   */
  geolocation: z
    .array(z.strictObject({ location: GeoLocation, region: regionName, residency: z.string().min(1).optional() }))
    .optional(),
  /**
   * weighted routing with geolocation rules in front (the EU on eu-west-1, everyone else by
   * weight): the name the weighted records live under. recordName then holds the geolocation
   * records, and its default location answers with this name.
   */
  weightedRecordName: z.string().min(1).optional(),
  /**
   * weighted: where a drained region's weight goes. proportional: spread over the other regions
   * in proportion to their weights (all to the target when none has any); to-target: all of it
   * to the failover target.
   */
  drain: z.enum(['proportional', 'to-target']).default('proportional'),
  /** Overrides the AWS endpoint (moto in the local stack). */
  endpointUrl: z.string().url().optional(),
  /** A role the workers assume for Route 53 calls; absent: the default credential chain. */
  roleArn: roleArn.optional(),
});

/**
 * Route 53 Application Recovery Controller: traffic moves by switching routing controls On and
 * Off through the cluster's data plane (five regional endpoints), not by editing records.
 */
export const Route53ArcTraffic = z.strictObject({
  provider: z.literal('route53-arc'),
  /** The cluster's regional data-plane endpoints, tried in turn (aws route53-recovery-control-config describe-cluster). */
  clusterEndpoints: z
    .array(z.strictObject({ url: z.string().url(), region: regionName }))
    .min(1, 'an ARC cluster has at least one endpoint'),
  /** Per region, the routing control that lets clients reach it. */
  routingControls: z.record(
    regionName,
    z
      .string()
      .regex(
        /^arn:aws[a-z-]*:route53-recovery-control::\d{12}:controlpanel\/[a-z0-9]+\/routingcontrol\/[a-z0-9]+$/,
        'a routing control ARN',
      ),
  ),
  /** TTL of the DNS records the routing controls gate: how long clients may keep the old answer. */
  ttl: z.number().int().min(0).default(30),
  /** A role the workers assume for ARC calls; absent: the default credential chain. */
  roleArn: roleArn.optional(),
});

export const Traffic = z.discriminatedUnion('provider', [Route53Traffic, Route53ArcTraffic]);

const approvalRequirement = z.enum(['none', 'required']);

/** One public key as ssh-keygen prints it: type, base64 blob, optional comment. */
const SSH_PUBLIC_KEY =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) AAAA[A-Za-z0-9+/]+={0,3}( .*)?$/;

export const Approver = z
  .strictObject({
    name: z
      .string()
      .regex(
        /^[A-Za-z0-9][A-Za-z0-9._@-]*$/,
        'letters, digits and . _ @ - (it is the signer identity ssh-keygen checks)',
      ),
    /** Public keys that may sign for this person (`cat ~/.ssh/id_ed25519.pub`). */
    sshKeys: z
      .array(
        z
          .string()
          .trim()
          .regex(
            SSH_PUBLIC_KEY,
            'not an SSH public key: paste a line like "ssh-ed25519 AAAA… you@host" (cat ~/.ssh/id_ed25519.pub)',
          ),
      )
      .default([]),
    /** A file of such lines, read by the workers when they verify (relative to the config file). */
    sshKeysFile: z.string().min(1).optional(),
  })
  .refine((a) => a.sshKeys.length > 0 || a.sshKeysFile !== undefined, {
    message:
      'an approver needs the SSH public keys that sign for them: sshKeys: ["ssh-ed25519 AAAA…"] or sshKeysFile: <path>',
  });
export type Approver = z.infer<typeof Approver>;

/** A bare name used to be enough; it is refused, saying what to write instead. */
const ApproverEntry = z
  .unknown()
  .refine((v) => typeof v !== 'string', {
    error: (iss) =>
      `"${String(iss.input)}" is a bare name: approvers sign their decisions now. Write { name: ${String(iss.input)}, sshKeys: ["ssh-ed25519 AAAA…"] } with the public key of their SSH key (docs/approvals.md)`,
  })
  .pipe(Approver);

export const Policy = z.strictObject({
  /** Largest replication lag, in seconds, an unplanned failover may promote at without asking. */
  rpoBudgetSeconds: z.number().min(0).default(5),
  /** Unplanned promotion without a verified fence is allowed without a human. */
  allowDataLoss: z.boolean().default(false),
  approval: z
    .strictObject({ planned: approvalRequirement.default('none'), unplanned: approvalRequirement.default('required') })
    .default({ planned: 'none', unplanned: 'required' }),
  /**
   * Who may approve, abort and decide cases from the CLI, each with the SSH public keys that sign
   * for them (docs/approvals.md). Nobody else: an empty list means no CLI approver at all.
   */
  approvers: z.array(ApproverEntry).default([]),
  approvalTimeout: duration.default('15m'),
  onApprovalTimeout: z.enum(['reject', 'proceed']).default('reject'),
  /** How long to wait for the target to replay everything the fenced source wrote. */
  lagTimeout: duration.default('60s'),
  cooldown: duration.default('5m'),
  /**
   * The service's data-residency rule, filled in when the config is parsed (from dataResidency and
   * residency.classes; not written by hand). It travels with the policy into every run however the
   * run is started (CLI, Slack, the guardian), so the runbook's preflight can refuse a target
   * outside it.
   */
  residency: z
    .strictObject({ class: z.string(), allowedRegions: z.array(z.string()), allowOutside: z.boolean() })
    .optional(),
});

/**
 * A required approval nobody may give is a run that can only time out: said when a config file is
 * loaded (loadConfig), not mid-incident. An empty list means nobody, never anyone.
 */
export function approvalProblems(config: { services: Service[] }): string[] {
  const problems: string[] = [];
  config.services.forEach((svc, i) => {
    for (const mode of ['planned', 'unplanned'] as const) {
      const slack = svc.triggers?.approvers?.[mode] ?? [];
      if (svc.policy.approval[mode] !== 'required' || svc.policy.approvers.length > 0 || slack.length > 0) continue;
      problems.push(
        `services[${i}] (${svc.name}).policy.approvers: ${mode} runs require approval (policy.approval.${mode}: required) but nobody may give it: ` +
          `list approvers with their SSH keys (approvers: [{ name: carol, sshKeys: ["ssh-ed25519 AAAA…"] }]), or Slack approvers in triggers.approvers.${mode}, ` +
          `or set policy.approval.${mode}: none (docs/approvals.md)`,
      );
    }
  });
  return problems;
}

export const Service = z
  .strictObject({
    name: z.string().regex(/^[a-z][a-z0-9-]*$/, 'lowercase letters, digits and dashes'),
    /** Region names in order of preference as failover targets; the first is the initial primary. */
    regions: z.array(regionName).min(2, 'a service needs at least two regions'),
    database: Database,
    traffic: Traffic,
    policy: Policy.default(Policy.parse({})),
    /** The data-residency class of the service's data: a key of the top-level residency.classes. */
    dataResidency: z.strictObject({ class: z.string().min(1) }).optional(),
    /** Alarms that concern the service, debounce, and the approval policy of alarm and Slack runs (triggers.ts). */
    triggers: ServiceTriggers.optional(),
    /** Evacuation order: services with a lower number are moved first (regionshift evacuate). */
    priority: z.number().int().min(0).default(100),
    /** Where reconciliation finds the journal, entries, balances and mutable state (reconcile.ts); defaults: the demo ledger's. */
    reconcile: ReconcileConfig.optional(),
    /** The service's own runbooks by kind (paths relative to the config file); absent: runbooks/<kind>.yaml. */
    runbooks: z
      .partialRecord(z.enum(['failover', 'failback', 'reconcile', 'drain', 'undrain']), z.string().min(1))
      .optional(),
    /** A second store that moves with the database (runbooks/failover.yaml: cache.fence, cache.promote, cache.repoint). */
    cache: Cache.optional(),
  })
  .superRefine((svc, ctx) => {
    // Every region the service runs in needs a database node and a way to send it traffic.
    for (const region of svc.regions) {
      if (!svc.database.regions[region]) {
        ctx.addIssue({ code: 'custom', path: ['database', 'regions'], message: `no entry for region ${region}` });
      }
      if (svc.traffic.provider === 'route53' && !svc.traffic.endpoints[region]) {
        ctx.addIssue({ code: 'custom', path: ['traffic', 'endpoints'], message: `no entry for region ${region}` });
      }
      if (svc.traffic.provider === 'route53-arc' && !svc.traffic.routingControls[region]) {
        ctx.addIssue({
          code: 'custom',
          path: ['traffic', 'routingControls'],
          message: `no routing control for region ${region}`,
        });
      }
    }
    const names = svc.policy.approvers.map((a) => a.name);
    if (new Set(names).size !== names.length)
      ctx.addIssue({ code: 'custom', path: ['policy', 'approvers'], message: 'an approver is listed twice' });
    if (new Set(svc.regions).size !== svc.regions.length) {
      ctx.addIssue({ code: 'custom', path: ['regions'], message: 'a region is listed twice' });
    }
    const notARegion = (path: (string | number)[], region: string, what: string): void => {
      if (!svc.regions.includes(region))
        ctx.addIssue({
          code: 'custom',
          path,
          message: `${what} ${region} is not one of the service's regions (${svc.regions.join(', ')})`,
        });
    };
    const db = svc.database;
    if (db.provider === 'aurora-global') {
      const arns = new Set<string>();
      for (const [region, member] of Object.entries(db.regions)) {
        notARegion(['database', 'regions', region], region, 'region');
        const arnRegion = member.clusterArn?.split(':')[3];
        if (arnRegion && arnRegion !== region) {
          ctx.addIssue({
            code: 'custom',
            path: ['database', 'regions', region, 'clusterArn'],
            message: `the ARN is in region ${arnRegion}, not ${region}`,
          });
        }
        if (member.clusterArn && arns.has(member.clusterArn))
          ctx.addIssue({
            code: 'custom',
            path: ['database', 'regions', region, 'clusterArn'],
            message: 'the same cluster is named for two regions',
          });
        if (member.clusterArn) arns.add(member.clusterArn);
        if (db.engine === 'aurora-mysql' && member.writerEndpoint) {
          ctx.addIssue({
            code: 'custom',
            path: ['database', 'regions', region, 'writerEndpoint'],
            message:
              'SQL access (database-level fence, verify, aurora_global_db_status) is implemented for aurora-postgresql only; remove writerEndpoint, and fence at the edge (edgeFence: routing-control)',
          });
        }
      }
      // The database-level fence is a role setting, which Aurora replicates to every secondary: the
      // promoted target must be reachable by SQL too so that promotion can lift it.
      const withSql = Object.values(db.regions).filter((m) => m.writerEndpoint).length;
      if (withSql > 0 && withSql < Object.keys(db.regions).length) {
        ctx.addIssue({
          code: 'custom',
          path: ['database', 'regions'],
          message:
            'give every region a writerEndpoint or none: the database-level fence replicates to the secondaries, and promotion lifts it on the new writer',
        });
      }
      if (db.lagMetric === 'aurora_global_db_status' && (db.engine !== 'aurora-postgresql' || withSql === 0)) {
        ctx.addIssue({
          code: 'custom',
          path: ['database', 'lagMetric'],
          message:
            'aurora_global_db_status needs engine aurora-postgresql and a writerEndpoint for every region; use AuroraGlobalDBRPOLag (CloudWatch) otherwise',
        });
      }
      if (db.lagMetric === 'AuroraGlobalDBReplicationLag' && db.engine !== 'aurora-mysql') {
        ctx.addIssue({
          code: 'custom',
          path: ['database', 'lagMetric'],
          message:
            'AuroraGlobalDBReplicationLag is published for Aurora MySQL; Aurora PostgreSQL publishes AuroraGlobalDBRPOLag',
        });
      }
      if (db.edgeFence === 'routing-control' && svc.traffic.provider !== 'route53-arc') {
        ctx.addIssue({
          code: 'custom',
          path: ['database', 'edgeFence'],
          message:
            "edgeFence routing-control switches the region's ARC routing control: it needs traffic.provider route53-arc",
        });
      }
    }
    if (db.provider === 'rds-postgres-replicas') {
      const ids = new Set<string>();
      for (const [region, member] of Object.entries(db.regions)) {
        notARegion(['database', 'regions', region], region, 'region');
        // Each region's worker calls RDS in its own region: the same identifier in two regions is fine for AWS, confusing in reports.
        if (ids.has(member.instanceIdentifier))
          ctx.addIssue({
            code: 'custom',
            path: ['database', 'regions', region, 'instanceIdentifier'],
            message: 'the same instance identifier is named for two regions; give each region its own',
          });
        ids.add(member.instanceIdentifier);
      }
    }
    for (const region of svc.cache ? svc.regions : []) {
      if (!svc.cache!.regions[region])
        ctx.addIssue({
          code: 'custom',
          path: ['cache', 'regions'],
          message: `no entry for region ${region}: the cache moves with the database, so every region needs one`,
        });
    }
    for (const region of Object.keys(svc.cache?.regions ?? {}))
      notARegion(['cache', 'regions', region], region, 'region');
    const traffic = svc.traffic;
    if (traffic.provider === 'route53') {
      for (const region of Object.keys(traffic.weights ?? {}))
        notARegion(['traffic', 'weights', region], region, 'weights names region');
      if (traffic.weights && Object.values(traffic.weights).every((w) => w === 0)) {
        ctx.addIssue({
          code: 'custom',
          path: ['traffic', 'weights'],
          message: 'every weight is 0: give at least one region a weight above 0',
        });
      }
      if (traffic.routing !== 'weighted' && traffic.weights) {
        ctx.addIssue({
          code: 'custom',
          path: ['traffic', 'weights'],
          message: `weights apply to weighted routing, not ${traffic.routing}`,
        });
      }
      if (traffic.routing === 'failover' && svc.regions.length !== 2) {
        ctx.addIssue({
          code: 'custom',
          path: ['traffic', 'routing'],
          message: `failover routing takes exactly two regions (a PRIMARY and a SECONDARY), the service has ${svc.regions.length}; use weighted or geolocation routing`,
        });
      }
      if (traffic.routing === 'weighted' && (traffic.geolocation || traffic.weightedRecordName)) {
        if (!traffic.geolocation?.length) {
          ctx.addIssue({
            code: 'custom',
            path: ['traffic', 'weightedRecordName'],
            message:
              'weightedRecordName puts geolocation rules in front of the weights: add traffic.geolocation, or remove it',
          });
        } else if (!traffic.weightedRecordName) {
          ctx.addIssue({
            code: 'custom',
            path: ['traffic', 'geolocation'],
            message: `geolocation rules in front of weighted records need traffic.weightedRecordName, the name the weights live under (e.g. weighted.${traffic.recordName})`,
          });
        }
        if (
          traffic.weightedRecordName &&
          traffic.weightedRecordName.replace(/\.$/, '').toLowerCase() ===
            traffic.recordName.replace(/\.$/, '').toLowerCase()
        ) {
          ctx.addIssue({
            code: 'custom',
            path: ['traffic', 'weightedRecordName'],
            message:
              'weightedRecordName must differ from recordName: recordName holds the geolocation records in front',
          });
        }
        (traffic.geolocation ?? []).forEach((rule, i) => {
          notARegion(['traffic', 'geolocation', i, 'region'], rule.region, 'geolocation rule names region');
          if (rule.location === 'default')
            ctx.addIssue({
              code: 'custom',
              path: ['traffic', 'geolocation', i, 'location'],
              message: 'in front of weighted records the default location is the weights: remove this rule',
            });
        });
      } else if (traffic.routing === 'geolocation') {
        const rules = traffic.geolocation ?? [];
        if (rules.length === 0)
          ctx.addIssue({
            code: 'custom',
            path: ['traffic', 'geolocation'],
            message:
              'geolocation routing needs rules: a list of { location, region }, one of them with location: default',
          });
        else if (!rules.some((r) => r.location === 'default'))
          ctx.addIssue({
            code: 'custom',
            path: ['traffic', 'geolocation'],
            message: 'no rule with location: default, so clients outside every listed location would get no answer',
          });
        const seen = new Set<string>();
        rules.forEach((rule, i) => {
          notARegion(['traffic', 'geolocation', i, 'region'], rule.region, 'geolocation rule names region');
          const key = JSON.stringify(rule.location);
          if (seen.has(key))
            ctx.addIssue({
              code: 'custom',
              path: ['traffic', 'geolocation', i, 'location'],
              message: `location ${key} is listed twice`,
            });
          seen.add(key);
        });
      } else if (traffic.geolocation || traffic.weightedRecordName) {
        ctx.addIssue({
          code: 'custom',
          path: ['traffic', traffic.geolocation ? 'geolocation' : 'weightedRecordName'],
          message: `geolocation rules apply to routing: geolocation, or weighted with weightedRecordName, not ${traffic.routing}`,
        });
      }
    } else {
      for (const region of Object.keys(traffic.routingControls))
        notARegion(['traffic', 'routingControls', region], region, 'routingControls names region');
    }
  });

/**
 * A data-residency class: where data of that class may live. A failover target outside
 * allowedRegions is refused unless allowOutside is set (an explicit, reviewable exception).
 * allowedRegions entries are region names or prefixes ending in `*` (eu-*).
 */
export const ResidencyClass = z.strictObject({
  allowedRegions: z
    .array(z.string().regex(/^[a-z]{2}(-[a-z]+)*(-\d+|-?\*)$/, 'a region name like eu-west-1, or a prefix like eu-*'))
    .min(1),
  allowOutside: z.boolean().default(false),
});

const MetricsPort = z
  .number({ error: 'must be a port number: an integer from 0 to 65535 (0 picks a free port)' })
  .int({ error: 'must be a port number: an integer from 0 to 65535 (0 picks a free port)' })
  .min(0, { error: 'must be a port number: an integer from 0 to 65535 (0 picks a free port)' })
  .max(65535, { error: 'must be a port number: an integer from 0 to 65535 (0 picks a free port)' });

/**
 * The region workers' /metrics endpoints (docs/observability.md; the intake serves GET /metrics
 * on its own port). Optional: without it each worker serves on a free port it prints. Keyed by
 * region ("control" for a control-only worker), so one config gives every worker of the local
 * stack its own port.
 */
export const Metrics = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    workers: z.record(z.string().min(1), MetricsPort).default({}),
  })
  .superRefine((m, ctx) => {
    const seen = new Map<number, string>();
    for (const [region, port] of Object.entries(m.workers)) {
      if (port === 0) continue;
      const other = seen.get(port);
      if (other)
        ctx.addIssue({
          code: 'custom',
          path: ['workers', region],
          message: `port ${port} is also metrics.workers.${other}'s: each worker needs its own`,
        });
      seen.set(port, region);
    }
  });
export type Metrics = z.infer<typeof Metrics>;

/** Files for TLS to Temporal, PEM; paths relative to the config file. */
const TemporalTls = z
  .strictObject({
    /** mTLS: this client's certificate and its key, both or neither. */
    clientCert: z.string().min(1).optional(),
    clientKey: z.string().min(1).optional(),
    /** The CA that signed the server's certificate, when it is not one the system trusts. */
    serverCA: z.string().min(1).optional(),
    /** The name the server's certificate carries, when it is not the address's host. */
    serverName: z.string().min(1).optional(),
  })
  .superRefine((tls, ctx) => {
    if ((tls.clientCert === undefined) !== (tls.clientKey === undefined))
      ctx.addIssue({
        code: 'custom',
        path: [tls.clientCert === undefined ? 'clientCert' : 'clientKey'],
        message: 'mTLS needs both clientCert and clientKey (the certificate and its private key)',
      });
  });

export const Config = z
  .strictObject({
    temporal: z
      .strictObject({
        address: z.string().default('127.0.0.1:7233'),
        namespace: z.string().default('default'),
        uiUrl: z.string().default('http://127.0.0.1:8233'),
        /**
         * A replicated control plane: one Temporal cluster per region (host:port of its frontend),
         * the namespace global across them. Clients use the cluster the namespace is active in;
         * workers their own region's (it forwards to the active one while passive). Absent: the one
         * cluster at `address`.
         */
        clusters: z.record(regionName, HostPort).optional(),
        /**
         * A replicated control plane only: how long the cluster the namespace is active in may stay
         * silent to an intake that has an alarm to deliver before that intake fails the namespace
         * over to the first region (in config order) whose cluster answers. Long enough that a
         * restart or a network blip does not move it; `off`: only an operator moves it.
         */
        controlPlaneFailoverAfter: z.union([duration, z.literal('off')]).default('60s'),
        /**
         * TLS to every cluster: `true` trusts the system's roots (Temporal Cloud); files (relative to
         * this file) add mTLS with a client certificate, or trust a private CA. Absent: plaintext,
         * unless apiKeyEnv is set (an API key is only ever sent over TLS).
         */
        tls: z.union([z.boolean(), TemporalTls]).optional(),
        /**
         * The environment variable that holds an API key (Temporal Cloud), sent as a bearer token.
         * The key itself never goes in this file, which is in git and in every run's record.
         */
        apiKeyEnv: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name, e.g. TEMPORAL_API_KEY (not the key itself)')
          .optional(),
      })
      .default({
        address: '127.0.0.1:7233',
        namespace: 'default',
        uiUrl: 'http://127.0.0.1:8233',
        controlPlaneFailoverAfter: '60s',
      }),
    /** Ports of the embedded local stack (regionshift stack up). */
    stack: z
      .strictObject({
        temporalPort: z.number().int().default(7233),
        temporalUiPort: z.number().int().default(8233),
        /**
         * replicated: `stack up` runs the full Temporal server once per region (temporal.clusters,
         * or temporalPort + 10 × the region's index), linked, the namespace global and active in
         * the first service's writer region (src/stack/control-plane.ts). single: the CLI's dev server.
         */
        controlPlane: z.enum(['single', 'replicated']).default('single'),
        motoPort: z.number().int().default(5055),
        /** The codec server the Temporal UI decrypts payloads through (docs/codec.md). */
        codecServerPort: z.number().int().default(8234),
        /**
         * The demo's banking application (src/demo/app.ts): it writes to the region it was last told
         * is primary, told by the service's runbooks through http.call. Absent: `stack up` starts none.
         */
        app: z.strictObject({ service: z.string().min(1), port: z.number().int().min(1).max(65535) }).optional(),
        /** Prometheus, Alertmanager and the exporters that close the alarm loop (src/stack/monitoring/). */
        monitoring: z
          .strictObject({
            /** Off: `stack up` starts none of them (nothing then fails over by itself). */
            enabled: z.boolean().default(true),
            prometheusPort: z.number().int().default(9090),
            alertmanagerPort: z.number().int().default(9093),
            /** The first region's blackbox exporter (its vantage point); the next region's is one up, and so on. */
            blackboxPort: z.number().int().default(9115),
            /** The first PostgreSQL node's exporter; the next node's is one up, and so on. */
            postgresExporterPort: z.number().int().default(9187),
            /** Where the stack's `regionshift intake` listens; absent: triggers.intake.port. */
            intakePort: z.number().int().optional(),
            /** More alert rule files (paths relative to the config file), checked with promtool before anything starts. */
            ruleFiles: z.array(z.string().min(1)).default([]),
          })
          .prefault({}),
      })
      // prefault, not default: the nested monitoring block gets its defaults too.
      .prefault({}),
    /** Data-residency classes services refer to with dataResidency.class. */
    residency: z.strictObject({ classes: z.record(z.string().min(1), ResidencyClass) }).optional(),
    /** The alarm intake, the health watcher and the Slack bot (triggers.ts). */
    triggers: Triggers.optional(),
    /** regionshift evacuate: how many services move at once (each runs its own failover or drain). */
    evacuation: z.strictObject({ maxConcurrent: z.number().int().min(1).default(2) }).prefault({}),
    /** The readiness evaluation each service's Temporal Schedule runs (src/readiness/, `regionshift readiness`). */
    readiness: z.strictObject({ every: duration.default('30m') }).prefault({}),
    /** regionshift's own /metrics endpoints; optional. */
    metrics: Metrics.optional(),
    /** Modules that add runbook steps (custom.<name>), relative to the config file's folder (docs/plugins.md). */
    plugins: z.array(z.strictObject({ module: z.string().min(1) })).default([]),
    services: z.array(Service).min(1),
  })
  .superRefine((config, ctx) => {
    if (config.temporal.apiKeyEnv && config.temporal.tls === false)
      ctx.addIssue({
        code: 'custom',
        path: ['temporal', 'tls'],
        message: 'an API key is sent only over TLS: remove tls: false (or apiKeyEnv)',
      });
    const clusters = config.temporal.clusters;
    if (clusters) {
      for (const region of new Set(config.services.flatMap((s) => s.regions))) {
        if (!clusters[region])
          ctx.addIssue({
            code: 'custom',
            path: ['temporal', 'clusters'],
            message: `no cluster for region ${region}: list one Temporal cluster per region the services run in (${Object.keys(clusters).join(', ')} listed)`,
          });
      }
    }
    const app = config.stack.app;
    if (app) {
      const svc = config.services.find((s) => s.name === app.service);
      // The application writes to the service's databases itself, with the role the config gives it.
      if (!svc)
        ctx.addIssue({
          code: 'custom',
          path: ['stack', 'app', 'service'],
          message: `no service named "${app.service}" (services: ${config.services.map((s) => s.name).join(', ')})`,
        });
      else if (svc.database.provider !== 'postgres-streaming')
        ctx.addIssue({
          code: 'custom',
          path: ['stack', 'app', 'service'],
          message: `service ${app.service} is on ${svc.database.provider}; the demo application writes to postgres-streaming databases only`,
        });
    }
    config.services.forEach((svc, i) => {
      const cls = svc.dataResidency?.class;
      if (cls !== undefined && !config.residency?.classes[cls]) {
        const known = Object.keys(config.residency?.classes ?? {});
        ctx.addIssue({
          code: 'custom',
          path: ['services', i, 'dataResidency', 'class'],
          message: `unknown residency class "${cls}"; define it under residency.classes (known: ${known.join(', ') || 'none'})`,
        });
      }
      if (svc.traffic.provider === 'route53') {
        svc.traffic.geolocation?.forEach((rule, j) => {
          if (rule.residency !== undefined && !config.residency?.classes[rule.residency]) {
            ctx.addIssue({
              code: 'custom',
              path: ['services', i, 'traffic', 'geolocation', j, 'residency'],
              message: `unknown residency class "${rule.residency}"; define it under residency.classes (known: ${Object.keys(config.residency?.classes ?? {}).join(', ') || 'none'})`,
            });
          }
        });
      }
      const given = svc.policy.residency;
      if (given !== undefined && JSON.stringify(given) !== JSON.stringify(residencyRuleOf(config, svc))) {
        ctx.addIssue({
          code: 'custom',
          path: ['services', i, 'policy', 'residency'],
          message:
            'policy.residency is derived from dataResidency and residency.classes: remove it and set those instead',
        });
      }
    });
  })
  .transform((config) => {
    for (const svc of config.services) {
      const rule = residencyRuleOf(config, svc);
      if (rule) svc.policy = { ...svc.policy, residency: rule };
    }
    return config;
  });

export type PostgresRegion = z.infer<typeof PostgresRegion>;
export type PostgresStreamingDatabase = z.infer<typeof PostgresStreamingDatabase>;
export type AuroraRegion = z.infer<typeof AuroraRegion>;
export type AuroraGlobalDatabase = z.infer<typeof AuroraGlobalDatabase>;
export type RdsReplicaRegion = z.infer<typeof RdsReplicaRegion>;
export type RedisCache = z.infer<typeof RedisCache>;
export type ElastiCacheGlobalCache = z.infer<typeof ElastiCacheGlobalCache>;
export type RdsPostgresReplicasDatabase = z.infer<typeof RdsPostgresReplicasDatabase>;
export type Database = z.infer<typeof Database>;
export type GeoLocation = z.infer<typeof GeoLocation>;
export type Route53Traffic = z.infer<typeof Route53Traffic>;
export type Route53ArcTraffic = z.infer<typeof Route53ArcTraffic>;
export type Traffic = z.infer<typeof Traffic>;
export type ResidencyClass = z.infer<typeof ResidencyClass>;
export type Policy = z.infer<typeof Policy>;
export type Service = z.infer<typeof Service>;
export type Config = z.infer<typeof Config>;

/** The service's postgres-streaming settings, for code that only works with that provider. */
export function postgresDatabase(svc: Service): PostgresStreamingDatabase {
  if (svc.database.provider !== 'postgres-streaming') {
    throw new Error(
      `service ${svc.name} uses database provider ${svc.database.provider}; this needs postgres-streaming`,
    );
  }
  return svc.database;
}

/** The service's Route 53 record settings, for code that only works with that provider. */
export function route53Traffic(svc: Service): Route53Traffic {
  if (svc.traffic.provider !== 'route53') {
    throw new Error(`service ${svc.name} uses traffic provider ${svc.traffic.provider}; this needs route53`);
  }
  return svc.traffic;
}
