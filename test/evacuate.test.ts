// Evacuating a region with `regionshift evacuate`: one parent workflow moves three services out of
// us-west-2, two whose writer is there (failover, real PostgreSQL pairs) and one that only serves
// traffic there (drain), at most evacuation.maxConcurrent at once in priority order, and reports
// per service. Real parts: the Temporal dev server, the CLI as a process, moto for Route 53.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegionActivities } from '../activities';
import { ensureTrafficRecords } from '../activities/traffic/route53';
import type { TrafficState } from '../src/contract/activities';
import { Config } from '../src/lib/config/schema';
import { psql } from '../src/lib/postgres/node';
import { regionTaskQueue } from '../src/contract/runbook/ids';
import type { EvacuationReport } from '../workflows/evacuate';
import { createPgPair, type PgPair } from './support/pg-pair';
import { startMoto, type MotoServer } from './support/moto';
import { startRigs } from './support/rigs';
import { runCli, type CliResult } from './support/stack-env';
import { approverEntries } from './support/signing';
import { createTemporalEnv, type TemporalEnv } from './support/temporal-env';

const WEST = 'us-west-2';
const EAST = 'us-east-1';

let ledger: PgPair;
let payments: PgPair;
let statements: PgPair;
let moto: MotoServer;
let te: TemporalEnv;
let configFile: string;

function makeConfig(address: string): Config {
  const service = (
    name: string,
    pair: PgPair,
    regions: string[],
    priority: number,
    traffic: Record<string, unknown> = {},
  ) => ({
    name,
    regions,
    priority,
    database: {
      provider: 'postgres-streaming',
      regions: Object.fromEntries(
        [pair.primary, pair.standby].map((n) => [
          n.region,
          { host: n.host, port: n.port, dataDir: n.dataDir, pgBin: pair.bin },
        ]),
      ),
    },
    traffic: {
      provider: 'route53',
      hostedZone: 'evac.test.',
      recordName: `${name}.evac.test.`,
      ttl: 5,
      endpointUrl: moto.url,
      endpoints: Object.fromEntries(regions.map((r) => [r, `${name}.${r}.evac.test.`])),
      ...traffic,
    },
    policy: { lagTimeout: '20s', approvers: approverEntries('carol') },
  });
  return Config.parse({
    temporal: { address },
    evacuation: { maxConcurrent: 2 },
    services: [
      // Listed out of priority order on purpose: the evacuation sorts them.
      service('statements', statements, [EAST, WEST], 3, { weights: { [EAST]: 60, [WEST]: 40 } }),
      service('ledger', ledger, [WEST, EAST], 2),
      service('payments', payments, [WEST, EAST], 1),
    ],
  });
}

beforeAll(async () => {
  [ledger, payments, statements, moto] = await startRigs([
    createPgPair(),
    createPgPair(),
    createPgPair({ primaryRegion: EAST, standbyRegion: WEST }),
    startMoto(),
  ]);
  te = await createTemporalEnv(makeConfig);
  await ensureTrafficRecords(te.config, 'ledger', WEST);
  await ensureTrafficRecords(te.config, 'payments', WEST);
  await ensureTrafficRecords(te.config, 'statements', EAST);
  for (const region of [WEST, EAST])
    await te.startWorker({ taskQueue: regionTaskQueue(region), activities: createRegionActivities(te.config, region) });
  configFile = join(mkdtempSync(join(tmpdir(), 'regionshift-evacuate-')), 'regionshift.json');
  writeFileSync(configFile, JSON.stringify(te.config));
}, 180_000);

afterAll(async () => {
  await Promise.allSettled([
    te?.teardown(),
    moto?.stop(),
    ledger?.teardown(),
    payments?.teardown(),
    statements?.teardown(),
  ]);
});

function run(...args: string[]): Promise<CliResult> {
  return runCli([...args, '--config', configFile], { ...process.env, REGIONSHIFT_USER: 'alice' });
}

const traffic = (service: string): Promise<TrafficState> =>
  createRegionActivities(te.config, EAST).trafficDescribe({ service });
const weights = (s: TrafficState) => Object.fromEntries(s.records.map((r) => [r.region, r.weight]));
const inRecovery = async (pair: PgPair, region: string): Promise<string> =>
  (
    await psql(pair.bin, pair.primary.region === region ? pair.primary : pair.standby, 'SELECT pg_is_in_recovery()')
  ).trim();

/** The most intervals open at one instant. */
function maxOverlap(intervals: { start: number; end: number }[]): number {
  const events = intervals
    .flatMap((i) => [
      { t: i.start, d: 1 },
      { t: i.end, d: -1 },
    ])
    .sort((a, b) => a.t - b.t || a.d - b.d);
  let open = 0;
  let max = 0;
  for (const e of events) max = Math.max(max, (open += e.d));
  return max;
}

describe('regionshift evacuate', () => {
  it('is bad input for a region no service uses, and for a service that does not use it', async () => {
    const none = await run('evacuate', '--region', 'eu-west-1', '--json');
    expect(none.code).toBe(2);
    expect(JSON.parse(none.stdout)).toEqual({
      error: {
        kind: 'bad input',
        message:
          'no service uses region "eu-west-1", so there is nothing to evacuate; regions in use: us-east-1, us-west-2',
      },
    });
    const unknown = await run('evacuate', '--region', WEST, '--service', 'billing');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('bad input: unknown service "billing"; known: statements, ledger, payments');
  });

  it('fails over the services whose writer is there, drains the one that only serves traffic, two at a time by priority, in one report', async () => {
    const r = await run('evacuate', '--region', WEST, '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as EvacuationReport;
    expect(report).toMatchObject({
      region: WEST,
      mode: 'planned',
      maxConcurrent: 2,
      maxRunning: 2,
      status: 'succeeded',
    });
    expect(report.services.map((e) => [e.service, e.action, e.status, e.target, e.workflowId])).toEqual([
      ['payments', 'failover', 'succeeded', EAST, 'regionshift-payments'],
      ['ledger', 'failover', 'succeeded', EAST, 'regionshift-ledger'],
      ['statements', 'drain', 'succeeded', WEST, 'regionshift-statements'],
    ]);
    for (const e of report.services) {
      expect(e.rtoMs).toBeGreaterThan(0);
      expect(e.error).toBeUndefined();
    }
    expect(report.services.filter((e) => e.action === 'failover').map((e) => e.rpo)).toEqual([
      { zeroLoss: true, estimateSeconds: 0 },
      { zeroLoss: true, estimateSeconds: 0 },
    ]);
    expect(report.services[2]!.reason).toBe('the writer is in us-east-1; us-west-2 serves traffic');

    // Never more than two at once, and the third waited for a free slot.
    const spans = report.services.map((e) => ({ start: Date.parse(e.startedAt!), end: Date.parse(e.endedAt!) }));
    expect(maxOverlap(spans)).toBe(2);
    expect(spans[2]!.start).toBeGreaterThanOrEqual(Math.min(spans[0]!.end, spans[1]!.end));

    // What the services look like now.
    expect(await inRecovery(ledger, EAST)).toBe('f');
    expect(await inRecovery(payments, EAST)).toBe('f');
    expect(weights(await traffic('ledger'))).toEqual({ [WEST]: 0, [EAST]: 100 });
    expect(weights(await traffic('payments'))).toEqual({ [WEST]: 0, [EAST]: 100 });
    expect(weights(await traffic('statements'))).toEqual({ [EAST]: 100, [WEST]: 0 });
    expect(await inRecovery(statements, EAST)).toBe('f');
  });

  it('a second evacuation finds nothing left in the region and says so per service', async () => {
    const r = await run('evacuate', '--region', WEST);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('evacuate us-west-2 (planned, at most 2 at once): SUCCEEDED');
    expect(r.stdout.match(/us-west-2 neither holds the writer \(us-east-1\) nor serves traffic/g)).toHaveLength(3);
  });
});
