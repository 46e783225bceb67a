// Preservation of an aurora-global old primary's data after an unplanned failover.
//
// From the AWS documentation: after FailoverGlobalCluster, when the old primary's region is back,
// Aurora snapshots the old primary (rds:unplanned-global-failover-<cluster>-<time>) and makes it a
// secondary.
import {
  CopyDBClusterSnapshotCommand,
  DescribeDBClusterSnapshotsCommand,
  type DBClusterSnapshot,
} from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import type { PreserveInput, PreserveResult } from '../../../src/contract/activities';
import { awsErrorCode } from '../../aws/errors';
import { AuroraFailure, type AuroraService } from './service';

/**
 * Keeps what Aurora kept of the old primary after an unplanned failover: the
 * rds:unplanned-global-failover-<cluster>-<time> snapshot it takes when the old primary's region
 * is back, copied to a manual snapshot (automated ones expire with the retention period).
 * Runs in the old primary's region. Not there yet: retryable, so the caller keeps waiting.
 */
export async function dbPreserve(s: AuroraService, { since }: PreserveInput): Promise<PreserveResult> {
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
    .filter(
      (snap) => !snap.SnapshotCreateTime || Number.isNaN(notBefore) || snap.SnapshotCreateTime.getTime() >= notBefore,
    )
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
    throw ApplicationFailure.retryable(
      `snapshot ${sourceId} of ${s.where()} is ${found.Status}; waiting until it is available to copy it`,
      AuroraFailure.SnapshotNotYet,
    );
  }
  const stamp = (found.SnapshotCreateTime ?? new Date()).toISOString().replace(/[-:T]/g, '').slice(0, 12);
  const copyId = `${s.db.preserveSnapshotPrefix}-${cluster}-${stamp}`
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 255);
  const existing = await s
    .rds()
    .send(new DescribeDBClusterSnapshotsCommand({ DBClusterSnapshotIdentifier: copyId }))
    .then((r) => r.DBClusterSnapshots?.[0])
    .catch((err: unknown) => {
      if (awsErrorCode(err) === 'DBClusterSnapshotNotFoundFault') return undefined;
      throw s.failure(err, `DescribeDBClusterSnapshots ${copyId}`);
    });
  if (existing)
    return {
      region: s.region,
      preserved: true,
      source: sourceId,
      copy: copyId,
      detail: `already copied: ${sourceId} → ${copyId} (${existing.Status})`,
    };
  try {
    await s.rds().send(
      new CopyDBClusterSnapshotCommand({
        SourceDBClusterSnapshotIdentifier: sourceId,
        TargetDBClusterSnapshotIdentifier: copyId,
        CopyTags: true,
        Tags: [
          { Key: 'regionshift:preserved-from', Value: sourceId.slice(0, 256) },
          { Key: 'regionshift:service', Value: s.name },
        ],
      }),
    );
  } catch (err) {
    if (awsErrorCode(err) !== 'DBClusterSnapshotAlreadyExistsFault')
      throw s.failure(err, `CopyDBClusterSnapshot ${sourceId}`);
  }
  return {
    region: s.region,
    preserved: true,
    source: sourceId,
    copy: copyId,
    detail: `copied ${sourceId} → ${copyId}: the old primary's data as of the failover, for reconciliation`,
  };
}
