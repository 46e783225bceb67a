// Promoting the target standby to primary, with no fence or wall of its own left on it.
import { ApplicationFailure } from '@temporalio/common';
import { heartbeat } from '../../context';
import { logFile } from '../../../src/lib/postgres/node';
import type { PromoteResult } from '../../../src/contract/activities';
import { sqlState } from '../sql';
import { DbFailure, type ResolvedNode, withAdmin, probe, describeNode, waitUntil } from './node';
import { autoConfReadOnly, setSystemReadOnly, setWall } from './fence';

const PROMOTE_WAIT_S = 60;

export async function dbPromote(n: ResolvedNode): Promise<PromoteResult> {
  const before = await describeNode(n);
  if (!before.reachable) {
    throw ApplicationFailure.retryable(
      `cannot promote ${n.where}: unreachable: ${before.error}`,
      DbFailure.Unreachable,
    );
  }
  if (before.role === 'primary') {
    // Deliberately leaves a fence in place: a fenced primary here is more likely the old
    // source named by mistake than our own promotion, and unfencing it would make two writers.
    // dbVerifyWrites will say NotWritable, and the workflow decides.
    return {
      region: n.region,
      promoted: false,
      alreadyPrimary: true,
      timeline: before.timeline!,
      lsn: before.lsn!,
      before,
    };
  }
  return withAdmin(
    n,
    async (admin) => {
      // A fence carried in the standby's own postgresql.auto.conf would make the new primary
      // read-only. Reset while still a standby, so the node is never a fenced primary of ours.
      const now = await probe(admin, n.region);
      if (now.readOnlyFromAutoConf || (await autoConfReadOnly(admin)) !== undefined) {
        await setSystemReadOnly(admin, n, false);
      }
      // Likewise a wall this node kept from a time it was a fenced primary (pg_rewind found
      // nothing to rewind, so its own pg_hba.conf stayed): it would lock the application out.
      await setWall(admin, n, false);
      try {
        await admin.query('SELECT pg_promote(true, $1)', [PROMOTE_WAIT_S]);
      } catch (err) {
        // 55000 "recovery is not in progress": promoted between our look and our call.
        if (sqlState(err) !== '55000') throw err;
      }
      const promoted = await waitUntil(PROMOTE_WAIT_S * 1000, async () => {
        heartbeat({ promoting: n.region });
        const { rows } = await admin.query<{ in_recovery: boolean }>('SELECT pg_is_in_recovery() AS in_recovery');
        return rows[0]!.in_recovery ? undefined : true;
      });
      if (!promoted) {
        throw ApplicationFailure.retryable(
          `${n.where} was asked to promote but is still in recovery after ${PROMOTE_WAIT_S} s; see its server log (${logFile(n.node)} on the local stack)`,
          DbFailure.NotConverged,
        );
      }
      // pg_promote does not wait for the end-of-recovery checkpoint, and until one completes the
      // control file still names the old timeline: pg_rewind reading it then finds "no rewind
      // required" and the old primary can never follow. Force it now.
      await admin.query('CHECKPOINT');
      const after = (await probe(admin, n.region)).state;
      return {
        region: n.region,
        promoted: true,
        alreadyPrimary: false,
        timeline: after.timeline!,
        lsn: after.lsn!,
        before,
      };
    },
    { statementTimeoutMs: (PROMOTE_WAIT_S + 30) * 1000 },
  );
}
