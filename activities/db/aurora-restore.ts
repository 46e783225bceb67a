// Aurora's snapshot of an old primary, restored as a cluster reconciliation can read: the restore
// and the instance through the RDS API of the old primary's region, then a database-level
// read-only default over SQL. Called by reconcile.preserve (activities/reconcile/preserve.ts) on
// the old primary's worker, after dbPreserve (aurora/preserve.ts) has made sure the manual copy exists.
//
// Behaviour taken from the AWS documentation (RDS API reference), which test/support/rds-restore.ts
// reproduces in front of moto for the tests:
// - RestoreDBClusterFromSnapshot (DBClusterIdentifier, SnapshotIdentifier, Engine required) creates
//   the cluster only, with no DB instances; its Status is creating, then available. DB instances can
//   be created "only after the RestoreDBClusterFromSnapshot operation has completed and the DB
//   cluster is available": CreateDBInstance with DBClusterIdentifier. The request takes no master
//   user or password: the restored cluster has the snapshot's (the users live in the restored
//   catalog). It is standalone: in no global database unless one is named.
// - CreateDBInstance: DBInstanceStatus creating (then possibly backing-up, configuring-*), then
//   available; the cluster's writer endpoint (DBCluster.Endpoint, Port) answers once an instance is
//   available.
// - Errors: DBClusterNotFoundFault and DBInstanceNotFound(Fault) for describes of what does not
//   exist; DBClusterAlreadyExistsFault, DBInstanceAlreadyExists(Fault) when creating twice;
//   InvalidDBClusterStateFault for an instance added to a cluster that is not available yet.
// - DeleteDBInstance, then DeleteDBCluster (SkipFinalSnapshot) removes it; manual snapshots are kept.
import { createHash } from 'node:crypto';
import {
  CreateDBInstanceCommand,
  DescribeDBClusterSnapshotsCommand,
  DescribeDBClustersCommand,
  DescribeDBInstancesCommand,
  RestoreDBClusterFromSnapshotCommand,
  type DBCluster,
  type DBInstance,
} from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { awsErrorCode } from '../aws/errors';
import { heartbeat, pause } from '../context';
import { AuroraFailure, type AuroraService } from './aurora/service';
import {
  MissingRoleError,
  attemptProbeWrite,
  close,
  connect,
  ensureProbeObjects,
  errorMessage,
  isConfigError,
  quoteIdent,
  readOnlyDefaultFor,
  sqlState,
  terminateRoleSessions,
  type ConnTarget,
} from './sql';

/**
 * The restored cluster's and instance's identifiers, derived from the snapshot copy's: a retry, or
 * a second reconciliation of the same failover, finds the cluster the first one restored instead
 * of restoring another. RDS identifiers: at most 63 letters, digits and single hyphens, starting
 * with a letter.
 */
export function restoredIds(copyId: string): { cluster: string; instance: string } {
  let base = copyId
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .replace(/-+$/, '');
  if (base.length > 56)
    base = `${base.slice(0, 47).replace(/-+$/, '')}-${createHash('sha256').update(copyId).digest('hex').slice(0, 8)}`;
  return { cluster: base, instance: `${base}-r1` };
}

// Statuses a cluster or instance does not leave by waiting (the API reference's status tables).
const STUCK = /^(failed|incompatible-|inaccessible|deleting|stopped|stopping|storage-full|insufficient-capacity)/;

export interface RestoreProgress {
  cluster: string;
  instance: string;
  /** What this call created (a retry that finds them does not create them again). */
  created: ('cluster' | 'instance')[];
  host: string;
  port: number;
}

/**
 * Restores the snapshot copy `copyId` as a cluster with one instance (each created once) and waits,
 * heartbeating, until both are available and the cluster has a writer endpoint. When `budgetMs`
 * runs out first it throws a retryable RestoreInProgress that says what it is waiting for; the
 * retry carries on from where AWS is (it never issues a restore twice).
 */
export async function restoreSnapshotCopy(
  s: AuroraService,
  copyId: string,
  opts: { pollMs: number; budgetMs: number },
): Promise<RestoreProgress> {
  const { cluster, instance } = restoredIds(copyId);
  const region = s.region;
  const deadline = Date.now() + opts.budgetMs;
  const created: RestoreProgress['created'] = [];
  const tags = [
    { Key: 'regionshift:reconcile-of', Value: copyId.slice(0, 256) },
    { Key: 'regionshift:service', Value: s.name },
  ];
  const wait = async (what: string): Promise<void> => {
    if (Date.now() >= deadline) {
      throw ApplicationFailure.retryable(
        `restoring ${copyId} in ${region} for reconciliation: ${what}; still waiting (the retry carries on and creates nothing twice)`,
        AuroraFailure.RestoreInProgress,
      );
    }
    heartbeat({ restoring: cluster, waiting: what });
    await pause(opts.pollMs);
  };
  const describeCluster = async (): Promise<DBCluster | undefined> => {
    try {
      const res = await s.rds().send(new DescribeDBClustersCommand({ DBClusterIdentifier: cluster }));
      return res.DBClusters?.find((c) => c.DBClusterIdentifier?.toLowerCase() === cluster);
    } catch (err) {
      if (awsErrorCode(err) === 'DBClusterNotFoundFault') return undefined;
      throw s.failure(err, `DescribeDBClusters ${cluster}`);
    }
  };
  const describeInstance = async (): Promise<DBInstance | undefined> => {
    try {
      const res = await s.rds().send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: instance }));
      return res.DBInstances?.find((i) => i.DBInstanceIdentifier?.toLowerCase() === instance);
    } catch (err) {
      if (/^DBInstanceNotFound/.test(awsErrorCode(err))) return undefined;
      throw s.failure(err, `DescribeDBInstances ${instance}`);
    }
  };
  const stuck = (what: string, status: string): never => {
    throw ApplicationFailure.nonRetryable(
      `${what} in ${region}, restored for reconciliation from ${copyId}, is ${status}, which waiting will not change: look at it (aws rds describe-events --region ${region} --source-identifier ${cluster} --source-type db-cluster), delete it if it is broken (the snapshot copy ${copyId} stays), and run regionshift reconcile --service ${s.name} again`,
      AuroraFailure.RestoreFailed,
    );
  };

  for (;;) {
    let c = await describeCluster();
    if (!c) {
      // A copy still being made cannot be restored (InvalidDBClusterSnapshotStateFault).
      const copy = await s.call(`DescribeDBClusterSnapshots ${copyId}`, () =>
        s.rds().send(new DescribeDBClusterSnapshotsCommand({ DBClusterSnapshotIdentifier: copyId })),
      );
      const status = copy.DBClusterSnapshots?.[0]?.Status;
      if (status !== 'available') {
        if (status && STUCK.test(status)) stuck(`snapshot copy ${copyId}`, status);
        await wait(`the snapshot copy ${copyId} is ${status ?? 'not listed yet'}`);
        continue;
      }
      try {
        await s.rds().send(
          new RestoreDBClusterFromSnapshotCommand({
            DBClusterIdentifier: cluster,
            SnapshotIdentifier: copyId,
            Engine: s.db.engine,
            DeletionProtection: false,
            Tags: tags,
            ...(s.me.restore?.dbSubnetGroupName ? { DBSubnetGroupName: s.me.restore.dbSubnetGroupName } : {}),
            ...(s.me.restore?.vpcSecurityGroupIds ? { VpcSecurityGroupIds: s.me.restore.vpcSecurityGroupIds } : {}),
          }),
        );
        created.push('cluster');
      } catch (err) {
        if (awsErrorCode(err) !== 'DBClusterAlreadyExistsFault')
          throw s.failure(err, `RestoreDBClusterFromSnapshot ${copyId} as ${cluster}`);
      }
      continue;
    }
    if (c.Status !== 'available') {
      if (c.Status && STUCK.test(c.Status)) stuck(`cluster ${cluster}`, c.Status);
      await wait(`cluster ${cluster} is ${c.Status ?? 'not reporting a status'}`);
      continue;
    }
    const i = await describeInstance();
    if (!i) {
      try {
        await s.rds().send(
          new CreateDBInstanceCommand({
            DBInstanceIdentifier: instance,
            DBClusterIdentifier: cluster,
            Engine: s.db.engine,
            DBInstanceClass: s.db.restoreInstanceClass,
            Tags: tags,
          }),
        );
        created.push('instance');
      } catch (err) {
        const code = awsErrorCode(err);
        // Right after a restore the cluster may still refuse instances for a moment.
        if (code === 'InvalidDBClusterStateFault') {
          await wait(`cluster ${cluster} does not take an instance yet (${errorMessage(err)})`);
          continue;
        }
        if (!/^DBInstanceAlreadyExists/.test(code)) throw s.failure(err, `CreateDBInstance ${instance} in ${cluster}`);
      }
      continue;
    }
    if (i.DBInstanceStatus !== 'available') {
      if (i.DBInstanceStatus && STUCK.test(i.DBInstanceStatus)) stuck(`instance ${instance}`, i.DBInstanceStatus);
      await wait(`instance ${instance} is ${i.DBInstanceStatus ?? 'not reporting a status'}`);
      continue;
    }
    // The writer endpoint is read after the instance is available: it answers from then on.
    c = await describeCluster();
    if (!c?.Endpoint || !c.Port) {
      await wait(`cluster ${cluster} reports no writer endpoint yet`);
      continue;
    }
    return { cluster, instance, created, host: c.Endpoint, port: c.Port };
  }
}

/** The commands that delete what restoreSnapshotCopy made: the instance, then the cluster (the snapshot copy holds the same data). */
export function deleteCommands(region: string, cluster: string, instance: string): string[] {
  return [
    `aws rds delete-db-instance --region ${region} --db-instance-identifier ${instance}`,
    `aws rds wait db-instance-deleted --region ${region} --db-instance-identifier ${instance}`,
    `aws rds delete-db-cluster --region ${region} --db-cluster-identifier ${cluster} --skip-final-snapshot`,
  ];
}

/** Shorter than the activity's heartbeat timeout: ending sessions does not heartbeat. */
const TERMINATE_DEADLINE_MS = 5_000;

/**
 * Makes the restored database read-only for everyone who logs in: ALTER DATABASE … SET
 * default_transaction_read_only = on (every role), plus the same for the application role in that
 * database (the most specific setting, so no role-wide setting of its own undoes it), then proves
 * it with a write as the application role that must be refused (the fence's probe, sql.ts), or,
 * when this worker cannot log in as it, from the catalog. Only this restored copy's catalog
 * changes: the service's clusters are untouched. Idempotent.
 */
export async function makeRestoredReadOnly(
  admin: ConnTarget,
  appUser: string,
  where: string,
): Promise<{ alreadyReadOnly: boolean; how: string }> {
  let c: Client;
  try {
    c = await connect(admin);
  } catch (err) {
    if (isConfigError(err)) {
      throw ApplicationFailure.nonRetryable(
        `${where}: the server refused ${admin.user}: ${errorMessage(err)}; a restored cluster keeps the source cluster's master user and password, so check adminUser and passwordEnv of the old primary's region`,
        AuroraFailure.Config,
      );
    }
    // A new endpoint can take a moment to resolve and answer.
    throw ApplicationFailure.retryable(`${where} does not answer yet: ${errorMessage(err)}`, AuroraFailure.Unreachable);
  }
  const notes: string[] = [];
  try {
    // A retry finds the database read-only already; this session must still write the settings.
    await c.query('SET SESSION default_transaction_read_only = off');
    const dbName = (await c.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db;
    const before = await readOnlyDefaultFor(c, appUser);
    const dbWide =
      (
        await c.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_db_role_setting s, unnest(s.setconfig) c
        WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND lower(c) IN ('default_transaction_read_only=on', 'default_transaction_read_only=true')`,
        )
      ).rows[0]!.n !== '0';
    try {
      await ensureProbeObjects(c, appUser);
    } catch (err) {
      if (err instanceof MissingRoleError)
        throw ApplicationFailure.nonRetryable(
          `${where}: the application role ${appUser} (appUser) does not exist in the restored copy; fix appUser in the config`,
          AuroraFailure.Config,
        );
      throw err;
    }
    try {
      await c.query(`ALTER DATABASE ${quoteIdent(dbName)} SET default_transaction_read_only = on`);
      notes.push(`ALTER DATABASE ${dbName} SET default_transaction_read_only = on`);
    } catch (err) {
      // Only the database's owner (or a superuser) may; the master user usually is, and the
      // application role's own setting below holds either way.
      if (sqlState(err) !== '42501') throw err;
      notes.push(`ALTER DATABASE ${dbName} not permitted for ${admin.user} (${errorMessage(err)})`);
    }
    await c.query(
      `ALTER ROLE ${quoteIdent(appUser)} IN DATABASE ${quoteIdent(dbName)} SET default_transaction_read_only = on`,
    );
    notes.push(`ALTER ROLE ${appUser} IN DATABASE ${dbName} SET default_transaction_read_only = on`);
    const { stillAlive } = await terminateRoleSessions(c, appUser, { deadlineMs: TERMINATE_DEADLINE_MS, pause });
    if (stillAlive.length > 0) {
      throw ApplicationFailure.retryable(
        `${where}: sessions ${stillAlive.join(', ')} of ${appUser} opened before it was made read-only are still alive`,
        AuroraFailure.Unreachable,
      );
    }
    // The proof: a write as the application role, refused.
    let app: Client | undefined;
    try {
      app = await connect({ host: admin.host, port: admin.port, database: admin.database, user: appUser });
    } catch (err) {
      if (!isConfigError(err))
        throw ApplicationFailure.retryable(
          `${where}: could not log in as ${appUser} to prove it is read-only: ${errorMessage(err)}`,
          AuroraFailure.Unreachable,
        );
    }
    if (app) {
      try {
        if ((await attemptProbeWrite(app)) !== 'refused') {
          throw ApplicationFailure.nonRetryable(
            `${where}: ${appUser} could still write after ${notes.join(' and ')}: a setting overrides it (see pg_db_role_setting); reconciliation does not read an old side that can still change`,
            AuroraFailure.FenceNotVerified,
          );
        }
        notes.push(`a write as ${appUser} was refused as read-only`);
      } finally {
        await close(app);
      }
    } else {
      if ((await readOnlyDefaultFor(c, appUser)) !== true) {
        throw ApplicationFailure.nonRetryable(
          `${where}: ${appUser}'s read-only default is not in pg_db_role_setting after ${notes.join(' and ')}`,
          AuroraFailure.FenceNotVerified,
        );
      }
      notes.push(
        `${appUser}'s read-only default confirmed in pg_db_role_setting (no login as ${appUser} from this worker)`,
      );
    }
    return { alreadyReadOnly: before === true && dbWide, how: notes.join('; ') };
  } finally {
    await close(c);
  }
}
