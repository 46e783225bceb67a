// Connections and small SQL helpers for the reconciliation activities. A region's worker reaches
// its own region's database and, for reconciliation, the old side in the other region (the old
// primary, or for Aurora the cluster restored from its snapshot), with the addresses from its own
// config (or the preserve step's result) and passwords from its own environment (docs/safety.md, invariant 6).
import { performance } from 'node:perf_hooks';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { reconcileConfigOf, type ReconcileConfig } from '../../src/lib/config/reconcile';
import {
  postgresDatabase,
  type AuroraGlobalDatabase,
  type Config,
  type PostgresRegion,
  type Service,
} from '../../src/lib/config/schema';
import type { PgNode } from '../../src/lib/postgres/node';
import type { RestoredOldSide } from '../../src/contract/reconcile';
import {
  close,
  connect,
  errorMessage,
  isConfigError,
  isConnectionError,
  quoteIdent,
  sqlState,
  type ConnTarget,
} from '../db/sql';

/** ApplicationFailure types of the reconciliation activities. */
export const ReconcileFailure = {
  Config: 'ReconcileConfig',
  Unreachable: 'ReconcileUnreachable',
  /** The old primary can no longer show its divergent writes (it rejoined, or its data is gone). */
  OldSideLost: 'ReconcileOldSideLost',
  /** The database is not the writable primary reconciliation writes to. */
  NotPrimary: 'ReconcileNotPrimary',
  /** Something changed between classification and apply: classify again. */
  Stale: 'ReconcileStale',
  /** An invariant did not hold at commit: nothing was committed. */
  Invariant: 'ReconcileInvariant',
  CaseNotFound: 'CaseNotFound',
  /** A case cannot be resolved that way (unknown action, already resolved otherwise). */
  CaseRefused: 'CaseRefused',
} as const;

/**
 * A database reconciliation speaks SQL to: a region's primary (postgres-streaming: the node's
 * host; aurora-global: the cluster's writer endpoint), or the old side it reads (postgres-streaming:
 * the old primary itself, read-only on its own timeline; aurora-global: the cluster restored from
 * Aurora's snapshot of it).
 */
export interface RcNode {
  service: string;
  region: string;
  provider: 'postgres-streaming' | 'aurora-global';
  admin: ConnTarget;
  where: string;
  /** postgres-streaming only: the node's settings and files (the preserve step starts it read-only). */
  pg?: { cfg: PostgresRegion; node: PgNode };
}

function serviceOf(config: Config, service: string): Service {
  const svc = config.services.find((s) => s.name === service);
  if (!svc)
    throw ApplicationFailure.nonRetryable(
      `unknown service "${service}" (this worker knows: ${config.services.map((s) => s.name).join(', ')})`,
      ReconcileFailure.Config,
    );
  return svc;
}

export function rcConfig(config: Config, service: string): ReconcileConfig {
  const svc = serviceOf(config, service);
  try {
    return reconcileConfigOf(svc as { reconcile?: unknown });
  } catch (err) {
    throw ApplicationFailure.nonRetryable(
      `services[${service}].reconcile is not valid: ${errorMessage(err)}`,
      ReconcileFailure.Config,
    );
  }
}

/**
 * Reconciliation compares journals by SQL, which regionshift does for postgres-streaming and Aurora
 * PostgreSQL only: any other service is refused with what to do instead.
 */
export function requireSqlReconcilable(svc: Service): AuroraGlobalDatabase | undefined {
  if (svc.database.provider === 'postgres-streaming') return undefined;
  if (svc.database.provider !== 'aurora-global') {
    // A plain error here would be retried for ever by the failback's first step: say it once.
    throw ApplicationFailure.nonRetryable(
      `service ${svc.name} uses ${svc.database.provider}: regionshift reconciles by SQL on postgres-streaming and aurora-global only. ` +
        "Reconcile the old primary's writes (kept, renamed, by the provider) against the new primary by hand; then record the outcome before failing back (regionshift failback --override-reason)",
      ReconcileFailure.Config,
    );
  }
  const db = svc.database;
  if (db.engine !== 'aurora-postgresql') {
    throw ApplicationFailure.nonRetryable(
      `service ${svc.name} runs ${db.engine}: regionshift reconciles by SQL on aurora-postgresql only, so it cannot read and re-apply the old primary's writes here. ` +
        `Aurora keeps the old primary's data in its rds:unplanned-global-failover-<cluster>-<time> snapshot (after a managed failover regionshift's fence-on-return watcher copies it to ${db.preserveSnapshotPrefix}-<cluster>-<time>): ` +
        'restore it (aws rds restore-db-cluster-from-snapshot, then aws rds create-db-instance in it) and reconcile its journal against the new primary by hand; then record the outcome before failing back (regionshift failback --override-reason)',
      ReconcileFailure.Config,
    );
  }
  return db;
}

/** The SQL target of `region`'s database of the service: where reconciliation writes, lists and resolves cases. */
export function rcNode(config: Config, service: string, region: string): RcNode {
  const svc = serviceOf(config, service);
  const aurora = requireSqlReconcilable(svc);
  if (aurora) {
    const r = aurora.regions[region];
    if (!r)
      throw ApplicationFailure.nonRetryable(
        `service ${service} has no Aurora cluster in region ${region} (it has: ${Object.keys(aurora.regions).join(', ')})`,
        ReconcileFailure.Config,
      );
    if (!r.writerEndpoint) {
      throw ApplicationFailure.nonRetryable(
        `services[${service}].database.regions.${region}.writerEndpoint is not set: reconciliation reads and writes ${region}'s journal by SQL through its cluster's writer endpoint. ` +
          `Add it (aws rds describe-db-clusters --region ${region} --db-cluster-identifier ${r.clusterIdentifier} --query 'DBClusters[0].Endpoint'), with adminUser and passwordEnv`,
        ReconcileFailure.Config,
      );
    }
    const password = r.passwordEnv ? process.env[r.passwordEnv] : undefined;
    return {
      service,
      region,
      provider: 'aurora-global',
      admin: {
        host: r.writerEndpoint,
        port: r.port,
        database: r.database,
        user: r.adminUser,
        ...(password !== undefined ? { password } : {}),
      },
      where: `${service}'s Aurora cluster ${r.clusterIdentifier} in ${region} (${r.writerEndpoint}:${r.port})`,
    };
  }
  const db = postgresDatabase(svc);
  const cfg = db.regions[region];
  if (!cfg)
    throw ApplicationFailure.nonRetryable(
      `service ${service} has no database in region ${region}`,
      ReconcileFailure.Config,
    );
  const password = cfg.passwordEnv ? process.env[cfg.passwordEnv] : undefined;
  return {
    service,
    region,
    provider: 'postgres-streaming',
    admin: {
      host: cfg.host,
      port: cfg.port,
      database: cfg.database,
      user: cfg.adminUser,
      ...(password !== undefined ? { password } : {}),
    },
    where: `${service}'s database in ${region} (${cfg.host}:${cfg.port})`,
    pg: { cfg, node: { region, dataDir: cfg.dataDir, port: cfg.port, host: cfg.host } },
  };
}

/**
 * The old side reconciliation reads: postgres-streaming, the old primary itself (kept read-only
 * on its own timeline by reconcile.preserve); aurora-global, the cluster reconcile.preserve
 * restored from Aurora's snapshot of it, as its result names it. The credentials are the old
 * region's admin role from this worker's config and environment: a cluster restored from a
 * snapshot keeps the source cluster's master user and password.
 */
export function rcOldSide(config: Config, service: string, region: string, restored?: RestoredOldSide): RcNode {
  const svc = serviceOf(config, service);
  const aurora = requireSqlReconcilable(svc);
  if (!aurora) return rcNode(config, service, region);
  const r = aurora.regions[region];
  if (!r)
    throw ApplicationFailure.nonRetryable(
      `service ${service} has no Aurora cluster in region ${region} (it has: ${Object.keys(aurora.regions).join(', ')})`,
      ReconcileFailure.Config,
    );
  if (!restored) {
    throw ApplicationFailure.nonRetryable(
      `the old side of ${service}'s Aurora reconciliation is the cluster reconcile.preserve restores from Aurora's snapshot of ${r.clusterIdentifier}, and no restored cluster was passed: run the reconcile runbook (regionshift reconcile --service ${service}), whose preserve step comes first`,
      ReconcileFailure.Config,
    );
  }
  const password = r.passwordEnv ? process.env[r.passwordEnv] : undefined;
  return {
    service,
    region,
    provider: 'aurora-global',
    admin: {
      host: restored.host,
      port: restored.port,
      database: restored.database,
      user: r.adminUser,
      ...(password !== undefined ? { password } : {}),
    },
    where: `${service}'s old primary ${r.clusterIdentifier} as restored in ${restored.cluster} (${region}, ${restored.host}:${restored.port}, read-only)`,
  };
}

function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/**
 * Runs `fn` with a session on the node (UTC, so times read from both sides compare as text), a
 * heartbeat every second (long statements must not look like a dead worker), and the session
 * closed when the activity is cancelled (its open transaction then rolls back).
 */
export async function withNode<T>(
  n: RcNode,
  what: string,
  fn: (c: Client) => Promise<T>,
  statementTimeoutMs = 600_000,
): Promise<T> {
  let client: Client;
  try {
    client = await connect(n.admin, { statementTimeoutMs });
  } catch (err) {
    if (isConfigError(err))
      throw ApplicationFailure.nonRetryable(
        `${n.where}: the server refused ${n.admin.user}: ${errorMessage(err)}`,
        ReconcileFailure.Config,
      );
    throw ApplicationFailure.retryable(`${n.where} is unreachable: ${errorMessage(err)}`, ReconcileFailure.Unreachable);
  }
  const ctx = activityContext();
  const beat = ctx ? setInterval(() => ctx.heartbeat({ [what]: n.region }), 1_000) : undefined;
  const onCancel = () => void close(client);
  ctx?.cancellationSignal.addEventListener('abort', onCancel);
  try {
    // A worker that dies mid-transaction must not leave it waiting on a lock for ever: the server
    // checks the client is still there and rolls the transaction back when it is not.
    // work_mem: a window's rows sorted with their JSON (about 7 MB for 10,000 transactions) and
    // the per-account sums of their entries overflow the default 4 MB and went to temporary
    // files. A few sessions per activity, each sorting one window: the memory stays bounded.
    await client.query("SET TIME ZONE 'UTC'; SET client_connection_check_interval = '1s'; SET work_mem = '64MB'");
    return await fn(client);
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    if (ctx?.cancellationSignal.aborted) throw err;
    if (isConnectionError(err))
      throw ApplicationFailure.retryable(
        `${n.where}: lost the connection: ${errorMessage(err)}`,
        ReconcileFailure.Unreachable,
      );
    // A deadlock, a serialization failure or a lock timeout is worth another attempt; any other
    // error the server sent (a missing table or column, a constraint) will not change by retrying.
    const state = sqlState(err);
    if (state && !state.startsWith('40') && state !== '55P03') {
      throw ApplicationFailure.nonRetryable(
        `${n.where}: ${errorMessage(err)} (SQLSTATE ${state}); check the service's reconcile config against its schema`,
        ReconcileFailure.Config,
      );
    }
    throw err;
  } finally {
    if (beat) clearInterval(beat);
    ctx?.cancellationSignal.removeEventListener('abort', onCancel);
    await close(client);
  }
}

/** "ledger.journal" → "ledger"."journal". */
export function qTable(name: string): string {
  return name.split('.').map(quoteIdent).join('.');
}

export const q = quoteIdent;

/**
 * A FROM item: the rows of `table` (alias x inside `select`) whose `column` equals one of the
 * values of `param` (an array of `type`), found by one index probe per distinct value, in value
 * order, so the work follows the number of values, not the size of the table. `column = ANY($n)`
 * gives the same rows, but the planner estimates it element by element (about a tenth of a second
 * for 20,000 values) and, for a few thousand values, judges a scan of the whole table cheaper: at
 * 10,000,000 entries that scan is most of reconciliation's time. OFFSET 0 keeps the lateral
 * subquery from being flattened into a join the planner could hash over the table again.
 */
export function probeRows(table: string, column: string, param: string, type: string, select = 'x.*'): string {
  return `(SELECT DISTINCT v FROM unnest(${param}::${type}[]) AS u(v) WHERE v IS NOT NULL ORDER BY v) AS w
          CROSS JOIN LATERAL (SELECT ${select} FROM ${qTable(table)} x WHERE x.${q(column)} = w.v OFFSET 0) AS p`;
}

/** Columns a copied row may be inserted with: not serial, identity or generated (those are the new side's own). */
export async function insertableColumns(c: Client, table: string): Promise<string[]> {
  const { rows } = await c.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_attribute a
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity = '' AND a.attgenerated = ''
        AND NOT EXISTS (SELECT 1 FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')
      ORDER BY a.attnum`,
    [table],
  );
  if (rows.length === 0)
    throw ApplicationFailure.nonRetryable(
      `table ${table} has no columns here (does it exist?)`,
      ReconcileFailure.Config,
    );
  return rows.map((r) => r.name);
}

/** Throws unless the session is on a writable primary. */
export async function requireWritablePrimary(c: Client, n: RcNode, why: string): Promise<void> {
  const { rows } = await c.query<{ rec: boolean; ro: string }>(
    `SELECT pg_is_in_recovery() AS rec, current_setting('default_transaction_read_only') AS ro`,
  );
  const r = rows[0]!;
  if (r.rec || r.ro === 'on') {
    throw ApplicationFailure.nonRetryable(
      `${n.where} is ${r.rec ? 'a standby' : 'read-only (fenced)'}; ${why} writes to the service's current primary: run it there`,
      ReconcileFailure.NotPrimary,
    );
  }
}

/** Records the time since the previous lap under `name`: where an activity's time went. */
export function laps(): { lap(name: string): void; phases: Record<string, number> } {
  const phases: Record<string, number> = {};
  let last = performance.now();
  return {
    phases,
    lap(name) {
      const now = performance.now();
      phases[name] = Math.round((phases[name] ?? 0) + now - last);
      last = now;
    },
  };
}
