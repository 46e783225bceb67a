// Failover readiness on real parts: a PostgreSQL writer and streaming standby, a worker per
// region, Route 53 in moto, and the service's Temporal Schedule running the evaluation. A healthy
// pair passes; a stopped standby fails it, the evaluation naming the standby; restarted, it
// passes again. Also: the judgement itself on observed topologies (lag over budget, residency).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start, stop } from '../src/lib/postgres/node';
import { evaluateReadiness, type ReadinessInput } from '../src/contract/readiness';
import { latestReadiness, readinessScheduleId, recordedReadiness } from '../src/lib/readiness';
import { formatReadiness } from '../src/present/readiness';
import type { Service } from '../src/lib/config/schema';
import { createFailoverEnv, SERVICE, type FailoverEnv } from './support/failover-env';
import { waitFor } from './support/wait';

const WEST = 'us-west-2';
const EAST = 'us-east-1';

describe('readiness schedule on a live pair', () => {
  let fe: FailoverEnv;
  let service: Service;
  beforeAll(async () => {
    fe = await createFailoverEnv({ rpoBudgetSeconds: 5 });
    service = fe.config.services.find((s) => s.name === SERVICE)!;
  });
  afterAll(async () => {
    await fe?.teardown();
  });

  it('a healthy pair passes: the writer, a streaming standby within budget, the records, a target', async () => {
    const e = await latestReadiness(fe.client, fe.config, service, { now: true });
    expect(e.status, formatReadiness(e)).toBe('pass');
    expect(e.targets).toEqual([EAST]);
    expect(e.checks.find((c) => c.check === 'writer')).toMatchObject({ region: WEST, status: 'pass' });
    expect(e.checks.find((c) => c.check === 'standby')).toMatchObject({ region: EAST, status: 'pass' });
    // The schedule exists, runs every readiness.every, and its latest action is this evaluation.
    const desc = await fe.client.schedule.getHandle(readinessScheduleId(SERVICE)).describe();
    expect(desc.spec.intervals?.[0]?.every).toBe(30 * 60_000);
    expect(await latestReadiness(fe.client, fe.config, service)).toEqual(e);
    // What `regionshift status` shows: the last evaluation, without asking for a new one; none for a service with no schedule.
    expect(await recordedReadiness(fe.client, SERVICE)).toEqual(e);
    expect(await recordedReadiness(fe.client, 'no-such-service')).toBeUndefined();
  });

  it('a stopped standby fails the evaluation, naming it; restarted, the evaluation passes again', async () => {
    await stop(fe.pg.bin, fe.pg.standby, 'fast');
    const down = await latestReadiness(fe.client, fe.config, service, { now: true });
    expect(down.status, formatReadiness(down)).toBe('fail');
    const failed = down.checks.filter((c) => c.status === 'fail');
    expect(failed.find((c) => c.region === EAST)?.detail).toMatch(/^us-east-1's database is unreachable: /);
    expect(failed.find((c) => c.check === 'targets')?.detail).toBe(`no region a failover from ${WEST} could go to`);
    expect(down.targets).toEqual([]);
    expect(formatReadiness(down)).toContain('ledger: FAIL');

    await start(fe.pg.bin, fe.pg.standby);
    // Back up, it reconnects to the writer within a moment: the evaluation says when it streams.
    const up = await waitFor('the restarted standby to pass', async () => {
      const e = await latestReadiness(fe.client, fe.config, service, { now: true });
      return e.status === 'pass' ? e : undefined;
    }, 30_000, 500);
    expect(up.targets).toEqual([EAST]);
    expect(up.checks.filter((c) => c.status !== 'pass')).toEqual([]);
  });
});

describe('the judgement', () => {
  const input: ReadinessInput = {
    service: 'ledger', regions: [WEST, EAST, 'eu-west-1'], rpoBudgetSeconds: 5,
    residency: { class: 'us', allowedRegions: ['us-*'], allowOutside: false },
    endpoints: { [WEST]: 'db.w.', [EAST]: 'db.e.', 'eu-west-1': 'db.eu.' },
  };
  const traffic = { state: { recordName: 'ledger.', records: [WEST, EAST, 'eu-west-1'].map((r, i) => ({ region: r, target: ['db.w.', 'db.e.', 'db.eu.'][i]!, weight: 1, ttl: 5 })) } };
  const writer = { region: WEST, reachable: true, role: 'primary' as const, lsn: '0/3000100' };
  const standby = (region: string, lagMs: number) => ({
    region, reachable: true, role: 'standby' as const, lsn: '0/3000000', receivedLsn: '0/3000100', streamingFrom: '127.0.0.1:1',
    lastHeardFromPrimaryAt: new Date(10_000 + lagMs).toISOString(), lastReplayedCommitAt: new Date(10_000).toISOString(),
  });

  it('lag over the budget fails that standby; residency keeps eu-west-1 out of the targets', () => {
    const e = evaluateReadiness(input, [writer, standby(EAST, 9_000), standby('eu-west-1', 100)], traffic, 0);
    expect(e.status).toBe('fail');
    expect(e.checks.find((c) => c.region === EAST)).toMatchObject({ check: 'lag', status: 'fail', detail: 'us-east-1 replays 9.0 s behind, over the RPO budget of 5 s' });
    expect(e.targets).toEqual([]);
    expect(e.checks.find((c) => c.check === 'targets')?.detail).toBe('no region a failover from us-west-2 could go to (residency class us rules out eu-west-1)');
  });

  it('a record pointing elsewhere, or traffic that cannot be read, fails the traffic check', () => {
    const moved = { state: { ...traffic.state, records: traffic.state.records.map((r) => (r.region === EAST ? { ...r, target: 'db.other.' } : r)) } };
    const e = evaluateReadiness(input, [writer, standby(EAST, 100), standby('eu-west-1', 100)], moved, 0);
    expect(e.checks.filter((c) => c.status === 'fail')).toEqual([
      { check: 'traffic', region: EAST, status: 'fail', detail: "ledger.'s record for us-east-1 points at db.other., not the configured db.e." },
    ]);
    expect(e.targets).toEqual([EAST]);
    expect(evaluateReadiness(input, [writer, standby(EAST, 100)], { error: 'AccessDenied' }, 0).checks.find((c) => c.check === 'traffic'))
      .toEqual({ check: 'traffic', status: 'fail', detail: 'the traffic records could not be read: AccessDenied' });
  });
});
