// What a run's record becomes in the metrics, without servers: the summary the workflow
// interceptor hands to the sink (src/contract/run-summary.ts) and what the worker's registry makes
// of it. The end-to-end path (a real run, a real /metrics) is in observability.test.ts; the cases
// here are the ones a planned failover does not reach: refusals, aborts, dry runs, approvals.
import { describe, expect, it } from 'vitest';
import { newRegistry, WorkerMetrics } from '../src/lib/metrics/registry';
import { summarizeRun } from '../src/contract/run-summary';
import type { RunRecord } from '../src/contract/runbook/types';
import { find, parseExposition } from './support/prom-text';

const T0 = Date.parse('2026-12-04T10:00:00.000Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();

function record(over: Partial<RunRecord> = {}): RunRecord {
  return {
    workflowId: 'regionshift-ledger',
    runId: 'r1',
    kind: 'failover',
    runbookHash: 'h',
    service: 'ledger',
    mode: 'unplanned',
    dryRun: false,
    source: 'us-west-2',
    target: 'us-east-1',
    requestedBy: 'guardian',
    trigger: 'alarm:sns:x',
    status: 'succeeded',
    startedAt: at(0),
    endedAt: at(100),
    steps: [
      { id: 'preflight', title: 'Preflight', action: 'preflight', status: 'done', startedAt: at(0), endedAt: at(1) },
      { id: 'approve', title: 'Approve', action: 'approval', status: 'done', startedAt: at(1), endedAt: at(61) },
      {
        id: 'promote',
        title: 'Promote',
        action: 'db.promote',
        region: 'us-east-1',
        status: 'done',
        startedAt: at(61),
        endedAt: at(63),
      },
      {
        id: 'rejoin',
        title: 'Rejoin',
        action: 'db.rejoinAsStandby',
        status: 'skipped',
        detail: 'condition not met: planned',
      },
    ],
    approvals: [{ stepId: 'approve', by: 'carol', decision: 'approve', at: at(61) }],
    rtoMs: 70_000,
    rpo: { estimateSeconds: 4.2, zeroLoss: false },
    ...over,
  };
}

describe('run summary', () => {
  it("keeps the steps a run went through, with their times, and each approval's wait", () => {
    const s = summarizeRun(record());
    expect(s).toMatchObject({
      kind: 'failover',
      mode: 'unplanned',
      result: 'succeeded',
      rtoMs: 70_000,
      rpoSeconds: 4.2,
      startedMs: T0,
      endedMs: T0 + 100_000,
    });
    expect(s.steps.map((x) => [x.id, x.endedMs - x.startedMs])).toEqual([
      ['preflight', 1000],
      ['approve', 60_000],
      ['promote', 2000],
    ]);
    expect(s.steps.find((x) => x.id === 'promote')!.region).toBe('us-east-1');
    expect(s.approvals).toEqual([{ stepId: 'approve', decision: 'approve', waitMs: 60_000 }]);
  });

  it('tells refused from failed by the failure type, and counts a dry run as its own mode', () => {
    expect(summarizeRun(record({ status: 'failed' }), 'RunRefused').result).toBe('refused');
    expect(summarizeRun(record({ status: 'failed' }), 'RunFailed').result).toBe('failed');
    expect(summarizeRun(record({ status: 'aborted' }), 'RunAborted').result).toBe('aborted');
    expect(summarizeRun(record({ dryRun: true, mode: 'planned' })).mode).toBe('dry-run');
  });

  it('leaves out what a run never reached: no RTO, no RPO', () => {
    const { rtoMs: _r, rpo: _p, ...early } = record({ status: 'failed' });
    const s = summarizeRun(early as RunRecord, 'RunFailed');
    expect(s.rtoMs).toBeUndefined();
    expect(s.rpoSeconds).toBeUndefined();
  });
});

describe('worker metrics', () => {
  it('a run becomes one count, its RTO, RPO, step and approval observations', async () => {
    const metrics = new WorkerMetrics(newRegistry());
    metrics.recordRun(summarizeRun(record()));
    metrics.recordRun(summarizeRun(record({ status: 'failed', rtoMs: undefined, rpo: undefined }), 'RunRefused'));
    const e = parseExposition(await metrics.registry.metrics());
    const labels = { kind: 'failover', mode: 'unplanned', service: 'ledger' };
    expect(find(e, 'regionshift_runs_total', { ...labels, result: 'succeeded' }).map((s) => s.value)).toEqual([1]);
    expect(find(e, 'regionshift_runs_total', { ...labels, result: 'refused' }).map((s) => s.value)).toEqual([1]);
    expect(find(e, 'regionshift_run_rto_seconds_count', labels).map((s) => s.value)).toEqual([1]);
    expect(find(e, 'regionshift_run_rto_seconds_sum', labels).map((s) => s.value)).toEqual([70]);
    expect(find(e, 'regionshift_run_rpo_seconds_bucket', { ...labels, le: '5' }).map((s) => s.value)).toEqual([1]);
    expect(find(e, 'regionshift_run_rpo_seconds_bucket', { ...labels, le: '1' }).map((s) => s.value)).toEqual([0]);
    expect(
      find(e, 'regionshift_approval_wait_seconds_sum', { kind: 'failover', decision: 'approve' }).map((s) => s.value),
    ).toEqual([120]);
    expect(
      find(e, 'regionshift_step_duration_seconds_count', { step: 'approve', action: 'approval' }).map((s) => s.value),
    ).toEqual([2]);
    expect(find(e, 'regionshift_step_duration_seconds_count', { step: 'rejoin' })).toEqual([]);
  });

  it("a standby's lag is set from what the worker saw; a node that became the writer drops it", async () => {
    const metrics = new WorkerMetrics(newRegistry());
    metrics.recordNode(
      'ledger',
      {
        region: 'us-east-1',
        reachable: true,
        role: 'standby',
        lsn: '0/3000060',
        receivedLsn: '0/3000160',
        lastReplayedCommitAt: at(10),
        lastHeardFromPrimaryAt: at(12.5),
        streamingFrom: 'h:1',
      },
      T0 + 20_000,
    );
    let e = parseExposition(await metrics.registry.metrics());
    const labels = { service: 'ledger', region: 'us-east-1' };
    expect(find(e, 'regionshift_replication_lag_seconds', labels).map((s) => s.value)).toEqual([2.5]);
    expect(find(e, 'regionshift_replication_replay_lag_bytes', labels).map((s) => s.value)).toEqual([256]);
    expect(find(e, 'regionshift_replication_lag_observed_timestamp_seconds', labels).map((s) => s.value)).toEqual([
      (T0 + 20_000) / 1000,
    ]);
    metrics.recordNode('ledger', { region: 'us-east-1', reachable: true, role: 'primary', lsn: '0/4000000' });
    e = parseExposition(await metrics.registry.metrics());
    expect(e.samples.filter((s) => s.name.startsWith('regionshift_replication_'))).toEqual([]);
  });
});
