// The first line of a run, as the CLI and the Slack bot print it: a reconciliation carries mode
// unplanned and a failback is a planned switchover, but neither header may say so. Also the facts
// printed under the steps.
import { describe, expect, it } from 'vitest';
import { formatRecord, headline } from '../src/present/run';
import { guardianLines } from '../src/present/guardian';
import type { GuardianView } from '../src/contract/guardian/types';
import { formatFailbackRun } from '../src/cli/reconcile-report';
import type { RunRecord } from '../src/contract/runbook/types';

function rec(kind: string, mode: 'planned' | 'unplanned', extra: Partial<RunRecord> = {}): RunRecord {
  return {
    kind,
    service: 'ledger',
    source: 'us-west-2',
    target: 'us-east-1',
    mode,
    dryRun: false,
    status: 'succeeded',
    steps: [],
    ...extra,
  } as unknown as RunRecord;
}

describe('run headers', () => {
  it('name the mode of a failover, and what a reconciliation or failback does instead', () => {
    expect(headline(rec('failover', 'unplanned'))).toBe('failover ledger: us-west-2 → us-east-1 (unplanned) SUCCEEDED');
    expect(headline(rec('failover', 'planned', { dryRun: true, status: 'running' }))).toBe(
      'failover ledger: us-west-2 → us-east-1 (dry run) RUNNING',
    );
    expect(headline(rec('reconcile', 'unplanned'))).toBe(
      'reconcile ledger: old primary us-west-2 → us-east-1 SUCCEEDED',
    );
    expect(headline(rec('failback', 'planned', { source: 'us-east-1', target: 'us-west-2', status: 'failed' }))).toBe(
      'failback ledger: us-east-1 → us-west-2 (back to the old primary) FAILED',
    );
    expect(formatRecord(rec('reconcile', 'unplanned')).split('\n')[0]).not.toContain('unplanned');
  });

  it("call a failover's time its RTO, and an undrain's the time until its region was back in service", () => {
    expect(formatRecord(rec('failover', 'planned', { rtoMs: 512 }))).toContain('\nRTO 512 ms');
    const undrain = formatRecord(rec('undrain', 'planned', { rtoMs: 245 }));
    expect(undrain).toContain('\nback in service after 245 ms');
    expect(undrain).not.toContain('RTO');
  });

  it('say, for a run waiting for approval, the whole command that approves it, signing key included', () => {
    const waiting = rec('failover', 'unplanned', {
      status: 'running',
      pendingApproval: { stepId: 'approval', reason: 'policy asks', timeoutAt: '2026-12-05T14:00:00.000Z' },
    } as Partial<RunRecord>);
    expect(formatRecord(waiting)).toContain(
      'WAITING FOR APPROVAL (policy asks), until 2026-12-05T14:00:00.000Z:\n  regionshift approve ledger --by <you> --key <ssh key>     (or, to refuse it, add --reject)',
    );
  });

  it('end with every region as the run left it: role, upstream, timeline, position', () => {
    const text = formatRecord(
      rec('failover', 'planned', {
        topologyAfter: [
          {
            region: 'us-west-2',
            reachable: true,
            role: 'standby',
            fenced: false,
            streamingFrom: '127.0.0.1:5433',
            timeline: 2,
            lsn: '0/3000148',
          },
          { region: 'us-east-1', reachable: true, role: 'primary', fenced: false, timeline: 2, lsn: '0/3000148' },
          { region: 'ap-southeast-1', reachable: false, error: '127.0.0.1:5435: connect ECONNREFUSED' },
        ],
      }),
    );
    expect(text.split('\n').slice(-4)).toEqual([
      'regions after the run:',
      '  us-west-2       standby ← 127.0.0.1:5433, timeline 2, replayed 0/3000148',
      '  us-east-1       primary, timeline 2, at 0/3000148',
      '  ap-southeast-1  unreachable: 127.0.0.1:5435: connect ECONNREFUSED',
    ]);
  });

  it('name every record a failback restored, a geolocation record by its location', () => {
    const record = (region: string, extra: object) => ({ region, target: `${region}.db`, ttl: 5, ...extra });
    const restored = {
      recordName: 'ledger.example.',
      records: [
        record('us-west-2', { weight: 57 }),
        record('eu-west-1', { weight: 29 }),
        record('eu-west-1', { location: 'continent:EU' }),
      ],
    };
    const text = formatFailbackRun(
      rec('failback', 'planned', {
        source: 'us-east-1',
        target: 'us-west-2',
        failback: { reconciliationId: 'rc-1', trafficRestored: { before: restored, after: restored } },
      }),
    );
    expect(text).toContain('traffic restored: us-west-2 57, eu-west-1 29, continent:EU→eu-west-1');
  });
});

describe("the guardian's view", () => {
  it('counts the failing signals of a region against the number it acts at, however many came', () => {
    const view = {
      primary: 'us-east-1',
      debounce: { failures: 2, window: '1m' },
      cooldown: '15s',
      received: 12,
      runsStarted: 1,
      inCooldown: false,
      failing: [
        { region: 'us-east-1', count: 6, since: '2026-12-05T13:44:34.453Z' },
        { region: 'eu-west-1', count: 1, since: '2026-12-05T13:44:40.000Z' },
      ],
      drained: [],
      decisions: [],
    } as unknown as GuardianView;
    expect(guardianLines(view).filter((l) => l.includes('failing:'))).toEqual([
      '  failing: us-east-1, 6 failing signals since 2026-12-05T13:44:34.453Z (acts at 2)',
      '  failing: eu-west-1, 1 failing signal since 2026-12-05T13:44:40.000Z (acts at 2)',
    ]);
  });
});
