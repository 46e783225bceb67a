// Waiting until the target replica has replayed up to the fence: by WAL position over SQL, or
// by CloudWatch's ReplicaLag (AWS/RDS, dimension DBInstanceIdentifier, seconds), which is
// published for a replica by its region: replicated through (datapoint time − lag).
import { ApplicationFailure } from '@temporalio/common';
import { heartbeat, pause } from '../../context';
import type { LagResult, WaitForLagInput } from '../../../src/contract/activities';
import { isLsn, lsnToBigInt } from '../sql';
import { RdsReplicaFailure, iso, sourceOf, type RdsReplicaService } from './service';

export async function dbWaitForLag(
  s: RdsReplicaService,
  { sourceLsn, timeoutMs }: WaitForLagInput,
): Promise<LagResult> {
  const started = Date.now();
  const bySql = s.db.lagSource === 'sql';
  if (bySql ? !isLsn(sourceLsn) : Number.isNaN(Date.parse(sourceLsn))) {
    throw ApplicationFailure.nonRetryable(
      `dbWaitForLag for ${s.where()}: "${sourceLsn}" is not ${bySql ? 'a WAL position' : 'the time of a fence (ISO)'}; pass the lsn of dbFenceWrites' result`,
      RdsReplicaFailure.Config,
    );
  }
  let initialLagBytes: number | undefined;
  let seen = 'no observation';
  for (;;) {
    const i = await s.mine();
    if (!sourceOf(i))
      return {
        region: s.region,
        replayedLsn: bySql ? (await s.sql().replay()).lsn : iso(),
        initialLagBytes: initialLagBytes ?? 0,
        waitedMs: Date.now() - started,
      };
    if (bySql) {
      const r = await s.sql().replay();
      const behind = lsnToBigInt(sourceLsn) - lsnToBigInt(r.lsn);
      initialLagBytes ??= Number(behind > 0n ? behind : 0n);
      if (behind <= 0n)
        return { region: s.region, replayedLsn: r.lsn, initialLagBytes, waitedMs: Date.now() - started };
      seen = `replayed ${r.lsn}, ${behind} bytes short`;
    } else {
      const lag = await s.replicaLag();
      initialLagBytes ??= 0;
      // Replicated through (at − lag): once that is past the fence, every fenced write is here.
      if (lag && lag.at - lag.lagMs >= Date.parse(sourceLsn))
        return {
          region: s.region,
          replayedLsn: iso(lag.at - lag.lagMs),
          initialLagBytes,
          waitedMs: Date.now() - started,
        };
      if (lag) seen = `ReplicaLag ${lag.lagMs / 1000} s at ${iso(lag.at)}`;
    }
    if (Date.now() - started >= timeoutMs) {
      throw ApplicationFailure.nonRetryable(
        `${s.where()} did not replay up to the fence (${sourceLsn}) within ${timeoutMs} ms (${seen})` +
          (bySql
            ? ''
            : `; ReplicaLag is published per ${s.db.lagMetricPeriodSeconds} s: give policy.lagTimeout a few periods, or use lagSource sql`),
        RdsReplicaFailure.LagTimeout,
      );
    }
    heartbeat({ seen });
    await pause(Math.min(s.options.pollMs, 1_000));
  }
}
