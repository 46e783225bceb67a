// Making a region's instance a read replica of the writer (AWS documentation: "Working with DB
// instance read replicas", "Renaming a DB instance" in the RDS user guide), walked by
// test/support/rds-replicas-proxy.ts where moto does not:
// - A read replica cannot be re-pointed at another source: the other regions get new replicas,
//   CreateDBInstanceReadReplica in their own region with SourceDBInstanceIdentifier = the new
//   primary's ARN (cross-region replicas need the ARN), status creating → available. An
//   identifier in use is refused with DBInstanceAlreadyExists.
// - ModifyDBInstance NewDBInstanceIdentifier + ApplyImmediately renames an instance (status
//   renaming, endpoint renamed); the old identifier is free once the rename is done. Renaming
//   keeps the instance, its data and its tags: the replaced instance is kept that way, never
//   deleted, for reconciliation (tagged regionshift:retired-from / regionshift:retired-at).
import {
  AddTagsToResourceCommand,
  CreateDBInstanceReadReplicaCommand,
  ModifyDBInstanceCommand,
  type DBInstance,
} from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import { regionOfArn } from '../../aws/clients';
import { awsErrorCode, classifyAwsError } from '../../aws/errors';
import { activityContext, heartbeat } from '../../context';
import type { FollowInput, RejoinResult } from '../../../src/contract/activities';
import { waitBudgetMs } from '../aurora/service';
import {
  RdsReplicaFailure,
  TAG_RETIRED_FROM,
  TAG_RETIRED_AT,
  TAG_CREATED_BY,
  iso,
  sourceOf,
  prior,
  waitOr,
  type RdsReplicaService,
} from './service';

/**
 * Makes this region's instance a read replica of `primaryRegion`'s: the instance standing here
 * (the old primary, or a replica of it) is tagged, renamed <id>-<suffix>-<n> and kept; a new
 * replica takes the configured identifier. Each turn describes first, so a retry after a crash
 * waits on a rename or create in flight instead of issuing it again.
 */
export async function follow(s: RdsReplicaService, primaryRegion: string): Promise<RejoinResult> {
  if (primaryRegion === s.region)
    throw ApplicationFailure.nonRetryable(`${s.where()} is asked to follow itself`, RdsReplicaFailure.NotStandby);
  const progress = prior();
  const deadline = Date.now() + waitBudgetMs(s.options);
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
            (creator !== undefined && (cur.TagList ?? []).some((t) => t.Key === TAG_CREATED_BY && t.Value === creator));
          return {
            region: s.region,
            rejoined: made,
            rewound: false,
            how: made ? 'reclone' : 'already',
            streamingFrom: primaryArn,
            detail: `${s.me.instanceIdentifier} ${made ? 'is a new read replica' : 'already is a read replica'} of ${primaryArn}${notes.length ? `; ${notes.join('; ')}` : ''}`,
          };
        }
        await waitOr(s, deadline, `new replica ${s.me.instanceIdentifier} is ${status}`, progress);
        continue;
      }
      if (status !== 'available') {
        await waitOr(s, deadline, `${s.where()} is ${status} (a rename in flight?)`, progress);
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
      await waitOr(s, deadline, `${renaming.DBInstanceIdentifier} is renaming`, progress);
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

export async function dbFollowWriter(s: RdsReplicaService, { primaryRegion }: FollowInput): Promise<RejoinResult> {
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
