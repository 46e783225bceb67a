// What dbDescribe reports of an aurora-global region: its role in the global cluster, the fence
// on a writer, the lag of a secondary.
import type { DBCluster, GlobalCluster } from '@aws-sdk/client-rds';
import { ApplicationFailure } from '@temporalio/common';
import type { DbNodeState } from '../../../src/contract/activities';
import { errorText } from '../../aws/errors';
import { isFenced } from './fence';
import { observeLag } from './lag';
import { iso, type AuroraService } from './service';

export async function describeNode(s: AuroraService): Promise<DbNodeState> {
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
        state.fenced = await isFenced(s, s.region);
      } catch (err) {
        state.error = `could not read the fence over SQL: ${errorText(err)}`;
      }
    }
  } else {
    state.role = 'standby';
    state.streamingFrom = writer?.DBClusterArn;
    try {
      const lag = await observeLag(s);
      if (lag) {
        state.lastHeardFromPrimaryAt = iso(lag.at);
        state.lastReplayedCommitAt = iso(lag.at - lag.lagMs);
      }
    } catch (err) {
      state.error = `lag unknown: ${errorText(err)}`;
    }
  }
  if (cluster.Status && cluster.Status !== 'available')
    state.error = `${state.error ? `${state.error}; ` : ''}cluster status ${cluster.Status}`;
  return state;
}
