// dbDescribe: the instance's role from RDS (a replica names its source), its lag from SQL or
// CloudWatch, and the fence from SQL.
import type { DBInstance } from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import { errorText } from '../../aws/errors';
import type { DbNodeState } from '../../../src/contract/activities';
import { iso, sourceOf, type RdsReplicaService } from './service';

export async function describeNode(s: RdsReplicaService): Promise<DbNodeState> {
  let i: DBInstance | undefined;
  try {
    i = await s.instance();
  } catch (err) {
    if (err instanceof ApplicationFailure && err.nonRetryable) throw err;
    return { region: s.region, reachable: false, error: errorText(err) };
  }
  if (!i)
    return {
      region: s.region,
      reachable: false,
      error: `${s.where()} does not exist (being renamed or re-created?)`,
    };
  const state: DbNodeState = { region: s.region, reachable: true };
  const notes: string[] = [];
  const src = sourceOf(i);
  if (src) {
    state.role = 'standby';
    state.streamingFrom = src;
    try {
      if (s.db.lagSource === 'sql') {
        const r = await s.sql().replay();
        state.lsn = r.lsn;
        // The replica's own clock: it heard from the primary now, and has replayed up to that commit.
        state.lastHeardFromPrimaryAt = iso();
        if (r.lastCommitAt) state.lastReplayedCommitAt = r.lastCommitAt;
      } else {
        const lag = await s.replicaLag();
        state.lsn = iso();
        if (lag) {
          state.lastHeardFromPrimaryAt = iso(lag.at);
          state.lastReplayedCommitAt = iso(lag.at - lag.lagMs);
        }
      }
    } catch (err) {
      notes.push(`lag unknown: ${errorText(err)}`);
    }
  } else {
    state.role = 'primary';
    try {
      const sql = s.sql();
      state.fenced = await sql.isFenced();
      state.lsn = s.db.lagSource === 'sql' ? (await sql.replay()).lsn : iso();
    } catch (err) {
      notes.push(`could not read the fence over SQL: ${errorText(err)}`);
    }
  }
  if (i.DBInstanceStatus && i.DBInstanceStatus !== 'available') notes.push(`instance status ${i.DBInstanceStatus}`);
  if (notes.length) state.error = notes.join('; ');
  return state;
}
