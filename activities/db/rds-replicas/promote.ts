// Promoting the target replica (AWS documentation: RDS API reference, "Promoting a read replica"):
// PromoteReadReplica turns a replica into a standalone read/write instance: it is rebooted,
// DBInstanceStatus goes modifying (then rebooting/backing-up) and back to available, and
// ReadReplicaSourceDBInstanceIdentifier disappears once it is done. It works while the source's
// region is down. A second call on an instance that is no longer a replica is refused with
// InvalidDBInstanceState; the promotion cannot be undone. test/support/rds-replicas-proxy.ts
// walks these states where moto does not.
import { PromoteReadReplicaCommand } from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import { awsErrorCode, classifyAwsError, errorText } from '../../aws/errors';
import { heartbeat } from '../../context';
import type { PromoteInput, PromoteResult } from '../../../src/contract/activities';
import { waitBudgetMs } from '../aurora/service';
import {
  RdsReplicaFailure,
  VISIBILITY_GRACE_MS,
  iso,
  sourceOf,
  prior,
  waitOr,
  type RdsReplicaService,
} from './service';
import { describeNode } from './describe';

export async function dbPromote(
  s: RdsReplicaService,
  { mode = 'planned', source }: PromoteInput,
): Promise<PromoteResult> {
  if (source === s.region)
    throw ApplicationFailure.nonRetryable(
      `dbPromote: ${s.region} is the run's source; promote runs on the target's worker`,
      RdsReplicaFailure.Config,
    );
  const progress = prior();
  const deadline = Date.now() + waitBudgetMs(s.options);
  const before = await describeNode(s);
  const notes: string[] = [];
  let startedAsReplica = before.role === 'standby';
  for (;;) {
    const i = await s.mine();
    const status = i.DBInstanceStatus ?? 'available';
    if (!sourceOf(i)) {
      if (status === 'available') break;
      await waitOr(s, deadline, `${s.where()} is ${status} after PromoteReadReplica`, progress);
      continue;
    }
    startedAsReplica = true;
    const issuedRecently =
      progress.promoteIssuedAt !== undefined && Date.now() - progress.promoteIssuedAt < VISIBILITY_GRACE_MS;
    if (status !== 'available' || issuedRecently) {
      // Promoting already (this attempt's call, or one whose answer a crash lost), or busy otherwise.
      await waitOr(s, deadline, `${s.where()} is still a replica of ${sourceOf(i)}, status ${status}`, progress);
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
      if (classifyAwsError(err) !== 'permanent') ((progress.promoteIssuedAt = Date.now()), heartbeat({ ...progress }));
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
        await waitOr(s, deadline, `${s.where()} is promoted but not writable yet (${err.message})`, progress);
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
