// How far an aurora-global secondary is behind, and the wait until it has replicated past the fence.
//
// From the AWS documentation: AuroraGlobalDBRPOLag (Aurora PostgreSQL) and
// AuroraGlobalDBReplicationLag (Aurora MySQL) are published in milliseconds by the secondary
// cluster's region; aurora_global_db_status() returns per region rpo_lag_in_msec (-1 for the
// primary) and last_lag_calculation_time.
import { GetMetricDataCommand, ListMetricsCommand, type Dimension } from '@aws-sdk/client-cloudwatch';
import { ApplicationFailure } from '@temporalio/common';
import type { LagResult, WaitForLagInput } from '../../../src/contract/activities';
import { heartbeat, pause } from '../../context';
import { AuroraFailure, iso, type AuroraService } from './service';

const LAG_LOOKBACK_MS = 15 * 60_000;

/** Per service, the lag metric's exact dimension set, found once (ListMetrics). */
const lagDimensions = new WeakMap<AuroraService, Dimension[]>();

/** The newest lag observation for this region's (secondary) cluster: when, and how far behind. */
export async function observeLag(s: AuroraService): Promise<{ at: number; lagMs: number; source: string } | undefined> {
  if (s.db.lagMetric === 'aurora_global_db_status') {
    if (!s.hasSql()) return undefined;
    return s.withAdmin(s.region, async (admin) => {
      const { rows } = await admin.query<{ rpo: string | null; at: Date | null }>(
        'SELECT rpo_lag_in_msec::text AS rpo, last_lag_calculation_time AS at FROM aurora_global_db_status() WHERE aws_region = $1',
        [s.region],
      );
      const row = rows[0];
      if (!row || row.rpo === null || !row.at) return undefined;
      // -1 marks the primary: nothing to lag behind.
      return { at: row.at.getTime(), lagMs: Math.max(0, Number(row.rpo)), source: 'aurora_global_db_status()' };
    });
  }
  const metric = s.db.lagMetric;
  let dimensions = lagDimensions.get(s);
  if (!dimensions) {
    // Find the metric's exact dimension set (a GetMetricData query must name all of them).
    const listed = await s.call(`ListMetrics ${metric}`, () =>
      s.cw().send(
        new ListMetricsCommand({
          Namespace: 'AWS/RDS',
          MetricName: metric,
          Dimensions: [{ Name: 'DBClusterIdentifier', Value: s.me.clusterIdentifier }],
        }),
      ),
    );
    const dims = listed.Metrics?.map((m) => m.Dimensions ?? []).sort((a, b) => a.length - b.length)[0];
    if (!dims) return undefined;
    dimensions = dims;
    lagDimensions.set(s, dims);
  }
  const period = s.db.lagMetricPeriodSeconds;
  const end = Date.now() + period * 1000;
  const res = await s.call(`GetMetricData ${metric}`, () =>
    s.cw().send(
      new GetMetricDataCommand({
        StartTime: new Date(Date.now() - LAG_LOOKBACK_MS),
        EndTime: new Date(end),
        ScanBy: 'TimestampDescending',
        MetricDataQueries: [
          {
            Id: 'lag',
            MetricStat: {
              Metric: { Namespace: 'AWS/RDS', MetricName: metric, Dimensions: dimensions },
              Period: period,
              Stat: 'Maximum',
            },
            ReturnData: true,
          },
        ],
      }),
    ),
  );
  const result = res.MetricDataResults?.[0];
  const points = (result?.Timestamps ?? [])
    .map((t, i) => ({ at: t.getTime(), value: result?.Values?.[i] }))
    .filter((p) => p.value !== undefined);
  points.sort((a, b) => b.at - a.at);
  const newest = points[0];
  if (!newest) return undefined;
  return { at: newest.at, lagMs: Math.max(0, newest.value!), source: `CloudWatch ${metric} (${period}s, Maximum)` };
}

export async function dbWaitForLag(s: AuroraService, { sourceLsn, timeoutMs }: WaitForLagInput): Promise<LagResult> {
  const fencedAt = Date.parse(sourceLsn);
  if (Number.isNaN(fencedAt)) {
    throw ApplicationFailure.nonRetryable(
      `dbWaitForLag for ${s.where()}: "${sourceLsn}" is not the time of an aurora-global fence (ISO); pass the lsn of dbFenceWrites' result`,
      AuroraFailure.Config,
    );
  }
  const started = Date.now();
  let last: { at: number; lagMs: number; source: string } | undefined;
  for (;;) {
    const [g] = await Promise.all([s.describeGlobal(), s.ownArn()]);
    const member = s.memberOf(g, s.region);
    if (!member || member.IsWriter) {
      // A retry after the promotion: the writer has everything it will ever have.
      return { region: s.region, replayedLsn: iso(), initialLagBytes: 0, waitedMs: Date.now() - started };
    }
    last = await observeLag(s);
    // Replicated through (at − lag): once that is past the fence, every fenced write is here.
    if (last && last.at - last.lagMs >= fencedAt) {
      return {
        region: s.region,
        replayedLsn: iso(last.at - last.lagMs),
        initialLagBytes: 0,
        waitedMs: Date.now() - started,
      };
    }
    heartbeat({ lag: last });
    if (Date.now() - started >= timeoutMs) {
      const seen = last
        ? `newest ${last.source}: ${last.lagMs} ms behind at ${iso(last.at)}`
        : `no ${s.db.lagMetric} observation for ${s.me.clusterIdentifier}`;
      throw ApplicationFailure.nonRetryable(
        `${s.where()} did not show replication past the fence (${sourceLsn}) within ${timeoutMs} ms (${seen}). ` +
          (s.db.lagMetric === 'aurora_global_db_status'
            ? 'Check the secondary with aurora_global_db_status() before promoting'
            : `CloudWatch publishes it per ${s.db.lagMetricPeriodSeconds} s and a datapoint from after the fence is needed: give policy.lagTimeout a few periods (3m), or use lagMetric aurora_global_db_status`),
        AuroraFailure.LagTimeout,
      );
    }
    await pause(Math.min(s.options.pollMs, 5_000));
  }
}
