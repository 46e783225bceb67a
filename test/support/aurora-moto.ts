// Builds an Aurora global database in moto through the real SDK: the global cluster, one regional
// cluster per region (the first is the primary), and DB instances so none is headless. Also
// publishes lag datapoints into moto's CloudWatch as Aurora would from a secondary's region.
import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import {
  CreateDBClusterCommand,
  CreateDBClusterSnapshotCommand,
  CreateDBInstanceCommand,
  CreateGlobalClusterCommand,
  RDSClient,
} from '@aws-sdk/client-rds';

const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

export function rdsOn(url: string, region: string): RDSClient {
  return new RDSClient({ region, endpoint: url, credentials: CREDENTIALS });
}

export interface MotoAurora {
  arns: Record<string, string>;
}

export async function createAuroraOnMoto(
  url: string,
  globalId: string,
  clusters: { id: string; region: string }[],
  engineVersion = '15.4',
): Promise<MotoAurora> {
  const arns: Record<string, string> = {};
  // moto keeps global clusters in us-east-1 whichever region is asked.
  await rdsOn(url, clusters[0]!.region).send(
    new CreateGlobalClusterCommand({
      GlobalClusterIdentifier: globalId,
      Engine: 'aurora-postgresql',
      EngineVersion: engineVersion,
    }),
  );
  for (const [i, c] of clusters.entries()) {
    const rds = rdsOn(url, c.region);
    const created = await rds.send(
      new CreateDBClusterCommand({
        DBClusterIdentifier: c.id,
        Engine: 'aurora-postgresql',
        EngineVersion: engineVersion,
        GlobalClusterIdentifier: globalId,
        ...(i === 0 ? { MasterUsername: 'postgres', MasterUserPassword: 'not-a-secret' } : {}),
      }),
    );
    await rds.send(
      new CreateDBInstanceCommand({
        DBInstanceIdentifier: `${c.id}-1`,
        DBClusterIdentifier: c.id,
        Engine: 'aurora-postgresql',
        DBInstanceClass: 'db.r6g.large',
      }),
    );
    arns[c.region] = created.DBCluster!.DBClusterArn!;
    rds.destroy();
  }
  return { arns };
}

/** A lag datapoint as Aurora publishes it for a secondary cluster (milliseconds). */
export async function putLag(
  url: string,
  region: string,
  cluster: string,
  lagMs: number,
  at = new Date(),
  metric = 'AuroraGlobalDBRPOLag',
): Promise<void> {
  const cw = new CloudWatchClient({ region, endpoint: url, credentials: CREDENTIALS });
  try {
    await cw.send(
      new PutMetricDataCommand({
        Namespace: 'AWS/RDS',
        MetricData: [
          {
            MetricName: metric,
            Dimensions: [{ Name: 'DBClusterIdentifier', Value: cluster }],
            Timestamp: at,
            Value: lagMs,
            Unit: 'Milliseconds',
          },
        ],
      }),
    );
  } finally {
    cw.destroy();
  }
}

/** What Aurora does when the old primary's region is back after a failover (moto cannot). */
export async function createUnplannedFailoverSnapshot(url: string, region: string, cluster: string): Promise<string> {
  const id = `rds:unplanned-global-failover-${cluster}-${new Date().toISOString().replace(/[T:]/g, '-').slice(0, 16)}`;
  const rds = rdsOn(url, region);
  try {
    await rds.send(
      new CreateDBClusterSnapshotCommand({ DBClusterIdentifier: cluster, DBClusterSnapshotIdentifier: id }),
    );
  } finally {
    rds.destroy();
  }
  return id;
}

/**
 * Regional clusters (each with an instance) that moto can restore snapshots of: standalone, with
 * a master user. moto cannot restore a snapshot of a cluster it created as a global-database
 * member (it has no master password to copy: a KeyError in moto, not AWS behaviour), so tests
 * that restore keep the global database's membership in test/support/rds-sim.ts instead.
 */
export async function createRestorableClustersOnMoto(
  url: string,
  clusters: { id: string; region: string }[],
  engineVersion = '15.4',
): Promise<Record<string, string>> {
  const arns: Record<string, string> = {};
  for (const c of clusters) {
    const rds = rdsOn(url, c.region);
    try {
      const created = await rds.send(
        new CreateDBClusterCommand({
          DBClusterIdentifier: c.id,
          Engine: 'aurora-postgresql',
          EngineVersion: engineVersion,
          MasterUsername: 'postgres',
          MasterUserPassword: 'not-a-secret',
        }),
      );
      await rds.send(
        new CreateDBInstanceCommand({
          DBInstanceIdentifier: `${c.id}-1`,
          DBClusterIdentifier: c.id,
          Engine: 'aurora-postgresql',
          DBInstanceClass: 'db.r6g.large',
        }),
      );
      arns[c.region] = created.DBCluster!.DBClusterArn!;
    } finally {
      rds.destroy();
    }
  }
  return arns;
}
