// Drain and undrain of a region that is not the writer, as the reference design runs four active
// regions: us-west-2 (40 %, the writer), us-east-1 (30 %), eu-west-1 (20 %, and every EU client by
// geolocation), ap-southeast-1 (10 %). Real parts: the Temporal dev server, the CLI as a process,
// moto for Route 53, a real PostgreSQL primary (us-west-2) and standby (us-east-1); the other
// regions' databases are configured on ports nobody listens on (their workers run, they answer
// "unreachable").
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { dataConverterFromEnv } from '../src/lib/codec/env';
import { describePickUpSeconds } from './support/describe-bounds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegionActivities } from '../activities';
import { ensureTrafficRecords } from '../activities/traffic/route53';
import type { TrafficState } from '../src/contract/activities';
import { Config } from '../src/lib/config/schema';
import { psql } from '../src/lib/postgres/node';
import { regionTaskQueue, runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { Deliverer } from '../src/intake/deliver';
import { guardianWorkflowId } from '../src/contract/guardian/ids';
import { guardianLines } from '../src/present/guardian';
import type { AlarmSignal, GuardianView } from '../src/contract/guardian/types';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { awaitRecord } from '../src/lib/runs/client';
import { waitFor } from './support/wait';
import { createPgPair, type PgPair } from './support/pg-pair';
import { startMoto, type MotoServer } from './support/moto';
import { freePort } from './support/ports';
import { startRigs } from './support/rigs';
import { runCli, type CliResult } from './support/stack-env';
import { approverEntries } from './support/signing';
import { createTemporalEnv, type TemporalEnv } from './support/temporal-env';
import { testWorkflowBundle } from './support/workflow-bundle';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const EU = 'eu-west-1';
const AP = 'ap-southeast-1';
const EU2 = 'eu-central-1';
const FOUR = [WEST, EAST, EU, AP];

let pg: PgPair;
let moto: MotoServer;
let te: TemporalEnv;
let configFile: string;

/** The config of the test: every service's database is the one pair (only dbDescribe reads it). */
function makeConfig(address: string, deadPorts: number[]): Config {
  const db = (regions: string[]) => ({
    provider: 'postgres-streaming',
    regions: Object.fromEntries(
      regions.map((r, i) => {
        const node =
          r === WEST
            ? pg.primary
            : r === EAST
              ? pg.standby
              : { host: '127.0.0.1', port: deadPorts[i]!, dataDir: `/nonexistent/${r}` };
        return [r, { host: node.host, port: node.port, dataDir: node.dataDir, pgBin: pg.bin }];
      }),
    ),
  });
  const traffic = (name: string, regions: string[], extra: Record<string, unknown>) => ({
    provider: 'route53',
    hostedZone: 'bank.test.',
    recordName: `${name}.bank.test.`,
    ttl: 5,
    endpointUrl: moto.url,
    endpoints: Object.fromEntries(regions.map((r) => [r, `${name}.${r}.bank.test.`])),
    ...extra,
  });
  const geoRules = (residency?: string) => [
    { location: { continent: 'EU' }, region: EU, ...(residency ? { residency } : {}) },
    { location: { country: 'DE' }, region: EU, ...(residency ? { residency } : {}) },
    { location: { continent: 'AS' }, region: AP },
    { location: 'default', region: WEST },
  ];
  // Approvers with keys: a config whose unplanned policy asks for approval must name them (docs/approvals.md).
  const service = (name: string, regions: string[], trafficExtra: Record<string, unknown>) => ({
    name,
    regions,
    database: db(regions),
    traffic: traffic(name, regions, trafficExtra),
    policy: { approvers: approverEntries('carol') },
  });
  return Config.parse({
    temporal: { address },
    residency: { classes: { 'eu-flex': { allowedRegions: ['eu-*'], allowOutside: true } } },
    services: [
      service('ledger', FOUR, { routing: 'weighted', weights: { [WEST]: 40, [EAST]: 30, [EU]: 20, [AP]: 10 } }),
      service('geo', FOUR, { routing: 'geolocation', geolocation: geoRules() }),
      service('geoflex', FOUR, { routing: 'geolocation', geolocation: geoRules('eu-flex') }),
      service('geotwo', [...FOUR, EU2], { routing: 'geolocation', geolocation: geoRules() }),
      service('lastone', [WEST, EAST], { routing: 'weighted', weights: { [WEST]: 0, [EAST]: 100 } }),
      // No database answers as the writer: us-west-2 (the heaviest record) is a standby, the others are down.
      {
        ...service('headless', FOUR, { routing: 'weighted', weights: { [WEST]: 40, [EAST]: 30, [EU]: 20, [AP]: 10 } }),
        database: {
          provider: 'postgres-streaming',
          regions: Object.fromEntries(
            FOUR.map((r, i) => {
              const node =
                r === WEST ? pg.standby : { host: '127.0.0.1', port: deadPorts[i]!, dataDir: `/nonexistent/${r}` };
              return [r, { host: node.host, port: node.port, dataDir: node.dataDir, pgBin: pg.bin }];
            }),
          ),
        },
      },
      // The reference design's records: EU clients by geolocation, everyone else by weight.
      service('bank', FOUR, {
        routing: 'weighted',
        weights: { [WEST]: 40, [EAST]: 30, [EU]: 20, [AP]: 10 },
        geolocation: [{ location: { continent: 'EU' }, region: EU }],
        weightedRecordName: 'weighted.bank.bank.test.',
      }),
      {
        ...service('guarded', FOUR, { routing: 'weighted', weights: { [WEST]: 40, [EAST]: 30, [EU]: 20, [AP]: 10 } }),
        policy: { cooldown: '1s', approvers: approverEntries('carol') },
        triggers: {
          alarms: [{ source: 'alertmanager', name: 'RegionDown', regionLabel: 'region' }],
          debounce: { failures: 2, window: '1m' },
          approval: { unplanned: { policy: 'auto' } },
          undrainAfter: '2s',
        },
      },
    ],
  });
}

beforeAll(async () => {
  [pg, moto] = await startRigs([createPgPair(), startMoto()]);
  const deadPorts = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  te = await createTemporalEnv((address) => makeConfig(address, deadPorts));
  for (const s of te.config.services) await ensureTrafficRecords(te.config, s.name, WEST);
  for (const region of [...FOUR, EU2])
    await te.startWorker({ taskQueue: regionTaskQueue(region), activities: createRegionActivities(te.config, region) });
  configFile = join(mkdtempSync(join(tmpdir(), 'regionshift-drain-')), 'regionshift.json');
  writeFileSync(configFile, JSON.stringify(te.config));
}, 180_000);

afterAll(async () => {
  await Promise.allSettled([te?.teardown(), moto?.stop(), pg?.teardown()]);
});

function run(...args: string[]): Promise<CliResult> {
  return runCli([...args, '--config', configFile], { ...process.env, REGIONSHIFT_USER: 'alice' });
}

async function runJson(
  ...args: string[]
): Promise<{ code: number | null; rec: RunRecord & { error?: string | { kind: string; message: string } } }> {
  const r = await run(...args, '--json');
  try {
    return { code: r.code, rec: JSON.parse(r.stdout) };
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

const traffic = (service: string): Promise<TrafficState> =>
  createRegionActivities(te.config, WEST).trafficDescribe({ service });
const weights = (s: TrafficState) => Object.fromEntries(s.records.map((r) => [r.region, r.weight]));
const geo = (s: TrafficState) => Object.fromEntries(s.records.map((r) => [r.location, r.region]));

describe('drain and undrain, weighted 40/30/20/10', () => {
  it('drains us-east-1 proportionally, leaves the writer as it was, and undrain restores the records exactly', async () => {
    const before = await traffic('ledger');
    expect(weights(before)).toEqual({ [WEST]: 40, [EAST]: 30, [EU]: 20, [AP]: 10 });

    const drain = await runJson('drain', '--service', 'ledger', '--region', EAST);
    expect(drain.code).toBe(0);
    const rec = drain.rec;
    expect(rec).toMatchObject({
      kind: 'drain',
      status: 'succeeded',
      target: EAST,
      drain: { region: EAST, writer: WEST, via: WEST, verified: true },
    });
    expect(rec.steps.map((s) => [s.id, s.status])).toEqual([
      ['preflight', 'done'],
      ['approval', 'skipped'],
      ['drain', 'done'],
      ['verify', 'done'],
    ]);
    // 30 over 40:20:10 by largest remainder: 17.14 → 17, 8.57 → 9, 4.29 → 4.
    expect(weights(rec.drain!.after!)).toEqual({ [WEST]: 57, [EAST]: 0, [EU]: 29, [AP]: 14 });
    expect(rec.drain!.before).toEqual(before);
    expect(rec.drain!.moved).toEqual([`${WEST} 40 → 57`, `${EAST} 30 → 0`, `${EU} 20 → 29`, `${AP} 10 → 14`]);
    const drained = await traffic('ledger');
    expect(drained).toEqual(rec.drain!.after);
    expect(drained.records.map((r) => r.target)).toEqual(before.records.map((r) => r.target));
    expect(rec.rtoMs).toBeGreaterThan(0);
    // The writer is untouched: still the primary, not fenced, the standby still streams from it.
    expect((await psql(pg.bin, pg.primary, 'SELECT pg_is_in_recovery()')).trim()).toBe('f');
    expect((await psql(pg.bin, pg.standby, 'SELECT status FROM pg_stat_wal_receiver')).trim()).toBe('streaming');

    const undrain = await runJson('undrain', '--service', 'ledger', '--region', EAST);
    expect(undrain.code).toBe(0);
    expect(undrain.rec).toMatchObject({
      kind: 'undrain',
      status: 'succeeded',
      drain: { region: EAST, undoes: { runId: rec.runId }, verified: true },
    });
    expect(await traffic('ledger')).toEqual(before);
    expect(undrain.rec.drain!.after).toEqual(before);

    // Nothing left to undo, and it serves traffic: refused, with the reason, nothing changed.
    const again = await runJson('undrain', '--service', 'ledger', '--region', EAST);
    expect(again.code).toBe(3);
    expect(again.rec.error).toBe(
      'us-east-1 already serves ledger (us-west-2 40, us-east-1 30, eu-west-1 20, ap-southeast-1 10), and no drain of it is left to undo',
    );
    expect(await traffic('ledger')).toEqual(before);
  });

  it('a region a failover moved traffic away from (no drain to undo) gets its configured share back', async () => {
    const configured = await traffic('ledger');
    // The shift a failover from us-east-1 to us-west-2 makes: the target at its share, the source drained.
    const shifted = await createRegionActivities(te.config, WEST).trafficShift({
      service: 'ledger',
      from: EAST,
      to: WEST,
    });
    expect(weights(shifted.after)).toEqual({ [WEST]: 57, [EAST]: 0, [EU]: 29, [AP]: 14 });

    const undrain = await runJson('undrain', '--service', 'ledger', '--region', EAST);
    expect(undrain.code, undrain.rec.error as string).toBe(0);
    expect(undrain.rec).toMatchObject({
      kind: 'undrain',
      status: 'succeeded',
      drain: { region: EAST, verified: true },
    });
    expect(undrain.rec.drain!.undoes).toBeUndefined();
    expect(undrain.rec.steps.find((x) => x.id === 'undrain')!.detail).toBe(
      `no drain to undo; ${EAST} back at its configured share: ${WEST} 57 → 40, ${EAST} 0 → 30, ${EU} 29 → 20, ${AP} 14 → 10`,
    );
    expect(await traffic('ledger')).toEqual(configured);
    expect(undrain.rec.drain!.after).toEqual(configured);
  });

  it('undrain refuses when the records changed since its drain; undone in reverse order, each restores exactly', async () => {
    const before = await traffic('ledger');
    expect((await runJson('drain', '--service', 'ledger', '--region', EAST)).code).toBe(0);
    const eastDrained = await traffic('ledger');
    const ap = await runJson('drain', '--service', 'ledger', '--region', AP);
    expect(ap.code).toBe(0);
    // 14 over 57:29 → 9.28, 4.72: 9 and 5.
    expect(weights(ap.rec.drain!.after!)).toEqual({ [WEST]: 66, [EAST]: 0, [EU]: 34, [AP]: 0 });

    const early = await runJson('undrain', '--service', 'ledger', '--region', EAST);
    expect(early.code).toBe(3);
    expect(early.rec.error).toContain('the records of ledger changed since drain');
    expect(early.rec.error).toContain('An undrain would undo that change too');
    expect(await traffic('ledger')).toEqual(ap.rec.drain!.after);

    expect((await runJson('undrain', '--service', 'ledger', '--region', AP)).code).toBe(0);
    expect(await traffic('ledger')).toEqual(eastDrained);
    expect((await runJson('undrain', '--service', 'ledger', '--region', EAST)).code).toBe(0);
    expect(await traffic('ledger')).toEqual(before);
  });

  it('refuses to drain the writer (use failover), the last serving region, and a region the service does not have; an undrain that would change nothing', async () => {
    const before = await traffic('ledger');
    const writer = await runJson('drain', '--service', 'ledger', '--region', WEST);
    expect(writer.code).toBe(3);
    expect(writer.rec.status).toBe('failed');
    expect(writer.rec.error).toBe(
      'us-west-2 is the writer of ledger: a drain moves traffic only and would leave the writer without clients; use failover (regionshift failover --service ledger --to auto)',
    );
    expect(await traffic('ledger')).toEqual(before);

    const last = await runJson('drain', '--service', 'lastone', '--region', EAST);
    expect(last.code).toBe(3);
    expect(last.rec.error).toMatch(
      /^us-east-1 is the last region serving lastone \(us-west-2 0, us-east-1 100\): draining it would leave its clients no answer$/,
    );
    expect(weights(await traffic('lastone'))).toEqual({ [WEST]: 0, [EAST]: 100 });
    // A region configured with no share and no drain to undo: an undrain would change nothing.
    const standbyOnly = await runJson('undrain', '--service', 'lastone', '--region', WEST);
    expect(standbyOnly.code).toBe(3);
    expect(standbyOnly.rec.error).toBe(
      'nothing to undrain: the records of lastone already give us-west-2 what the config does (us-west-2 0, us-east-1 100)',
    );
    expect(weights(await traffic('lastone'))).toEqual({ [WEST]: 0, [EAST]: 100 });

    // The writer's database does not answer and us-west-2, the heaviest record, answers as a standby:
    // the writer is taken to be the silent region to drain, not us-west-2 (evacuate then fails it over).
    const headless = await runJson('drain', '--service', 'headless', '--region', EAST);
    expect(headless.code).toBe(3);
    expect(headless.rec.drain).toMatchObject({ region: EAST, writer: EAST });
    expect(headless.rec.error).toMatch(/^us-east-1 is the writer of headless: .* use failover/);

    const unknown = await runJson('drain', '--service', 'ledger', '--region', EU2);
    expect(unknown.code).toBe(2);
    expect(unknown.rec).toEqual({
      error: {
        kind: 'bad input',
        message:
          'unknown region "eu-central-1" for ledger; its regions: us-west-2, us-east-1, eu-west-1, ap-southeast-1',
      },
    });
    const missing = await run('drain', '--service', 'ledger');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--service and --region are required');
  });
});

describe('drain, geolocation: EU clients stay in the EU unless the config allows otherwise', () => {
  it('refuses when no other EU region exists, changing nothing', async () => {
    const before = await traffic('geo');
    expect(geo(before)).toEqual({ 'continent:EU': EU, 'country:DE': EU, 'continent:AS': AP, default: WEST });
    const r = await runJson('drain', '--service', 'geo', '--region', EU);
    expect(r.code).toBe(3);
    expect(r.rec.error).toContain(
      'continent:EU is answered by eu-west-1, and its clients may only be served from eu-* (residency eu (default for EU locations))',
    );
    expect(r.rec.compensation).toEqual({ undone: [], notUndone: [] });
    expect(await traffic('geo')).toEqual(before);
  });

  it('moves EU answers to the next EU region, never outside it; the rest stay', async () => {
    const before = await traffic('geotwo');
    const r = await runJson('drain', '--service', 'geotwo', '--region', EU);
    expect(r.code).toBe(0);
    const after = await traffic('geotwo');
    expect(geo(after)).toEqual({ 'continent:EU': EU2, 'country:DE': EU2, 'continent:AS': AP, default: WEST });
    expect(after.records.find((x) => x.location === 'continent:EU')!.target).toBe(`geotwo.${EU2}.bank.test.`);
    expect(r.rec.drain!.moved).toEqual([`continent:EU ${EU} → ${EU2}`, `country:DE ${EU} → ${EU2}`]);
    expect((await runJson('undrain', '--service', 'geotwo', '--region', EU)).code).toBe(0);
    expect(await traffic('geotwo')).toEqual(before);
  });

  it('moves EU answers outside the EU only when the residency class allows it, and undrain brings them back exactly', async () => {
    const before = await traffic('geoflex');
    const r = await runJson('drain', '--service', 'geoflex', '--region', EU);
    expect(r.code).toBe(0);
    // Both EU rules name eu-flex, which allows outside: they go where the default is answered.
    expect(geo(await traffic('geoflex'))).toEqual({
      'continent:EU': WEST,
      'country:DE': WEST,
      'continent:AS': AP,
      default: WEST,
    });
    expect(r.rec.drain!.before).toEqual(before);
    expect((await runJson('undrain', '--service', 'geoflex', '--region', EU)).code).toBe(0);
    expect(await traffic('geoflex')).toEqual(before);
  });
});

describe('drain, weighted with EU geolocation in front (the reference design)', () => {
  it("drains eu-west-1's weight, keeps EU clients on it (no other EU region), verifies, and undrain restores exactly", async () => {
    const before = await traffic('bank');
    const r = await runJson('drain', '--service', 'bank', '--region', EU);
    expect(r.code).toBe(0);
    const after = await traffic('bank');
    expect(
      Object.fromEntries(after.records.map((x) => [x.location ?? x.region, x.location ? x.region : x.weight])),
    ).toEqual({ [WEST]: 50, [EAST]: 38, [EU]: 0, [AP]: 12, 'continent:EU': EU });
    expect(r.rec.drain!.kept).toEqual([
      { location: 'continent:EU', region: EU, why: expect.stringContaining('may only be served from eu-*') },
    ]);
    expect(r.rec.drain!.verified).toBe(true);
    expect(r.rec.steps.find((s) => s.id === 'verify')?.detail).toContain(
      `${EU} receives no traffic but continent:EU (residency allows no other region)`,
    );
    expect((await runJson('undrain', '--service', 'bank', '--region', EU)).code).toBe(0);
    expect(await traffic('bank')).toEqual(before);
  });
});

describe('the guardian drains a failing region that is not the writer, and undrains it once healthy', () => {
  it('debounced alarms about eu-west-1 start a drain; an OK and triggers.undrainAfter later, an undrain restores the records', async () => {
    const deliverer = new Deliverer({
      client: te.client,
      config: te.config,
      runbook: loadRunbook(builtinRunbookPath('failover')),
    });
    const alarm = (state: AlarmSignal['state']): AlarmSignal => ({
      source: 'alertmanager',
      name: 'RegionDown',
      region: EU,
      severity: 'critical',
      state,
      at: Date.now(),
      receivedAt: Date.now(),
    });
    const view = (): Promise<GuardianView> =>
      te.client.workflow.getHandle(guardianWorkflowId('guarded')).query<GuardianView>('state');
    const latest = async (kind: string): Promise<RunRecord | undefined> => {
      const rec = await awaitRecord(te.client, runWorkflowId('guarded'));
      return rec.kind === kind ? rec : undefined;
    };
    const before = await traffic('guarded');

    await deliverer.deliver('guarded', [alarm('ALARM')]);
    expect((await view()).decisions.at(-1)).toMatchObject({
      kind: 'debouncing',
      detail: '1 of 2 failing signals for eu-west-1 within 1m',
    });
    await deliverer.deliver('guarded', [alarm('ALARM')]);
    const drain = await waitFor("the guardian's drain", () => latest('drain'), 60_000, 200);
    expect(drain).toMatchObject({
      status: 'succeeded',
      requestedBy: 'guardian',
      mode: 'unplanned',
      trigger: 'alarm:alertmanager:RegionDown',
      drain: { region: EU, writer: WEST, verified: true },
    });
    // The drained region gets a second to answer preflight, the others three.
    expect(await describePickUpSeconds(te.client, drain.workflowId, drain.runId)).toEqual({
      [WEST]: 3,
      [EAST]: 3,
      [EU]: 1,
      [AP]: 3,
    });
    // 20 over 40:30:10 = 10, 7.5, 2.5: the one left over goes to the first of the tied remainders.
    expect(weights(await traffic('guarded'))).toEqual({ [WEST]: 50, [EAST]: 38, [EU]: 0, [AP]: 12 });

    const drained = await waitFor("the drain's end reaching the guardian", async () =>
      (await view()).drained.length > 0 ? view() : undefined,
    );
    expect(drained.drained).toEqual([{ region: EU, drainRunId: drain.runId }]);
    expect(guardianLines(drained)).toContain(
      `  drained: ${EU} (run ${drain.runId}); undrained once healthy (an OK) for triggers.undrainAfter`,
    );
    // Still failing: the region is drained already, nothing else starts.
    await deliverer.deliver('guarded', [alarm('ALARM'), alarm('ALARM')]);
    expect((await view()).decisions.at(-1)).toMatchObject({ kind: 'already-drained', region: EU });

    const okAt = Date.now();
    await deliverer.deliver('guarded', [alarm('OK')]);
    expect((await view()).drained[0]!.undrainAt).toBeDefined();
    const undrain = await waitFor("the guardian's undrain", () => latest('undrain'), 60_000, 200);
    expect(undrain).toMatchObject({
      status: 'succeeded',
      requestedBy: 'guardian',
      trigger: `health:${EU}`,
      drain: { region: EU, undoes: { runId: drain.runId }, verified: true },
    });
    expect(Date.parse(undrain.startedAt) - okAt).toBeGreaterThanOrEqual(2000);
    expect(await traffic('guarded')).toEqual(before);
    const done = await waitFor("the undrain's end reaching the guardian", async () => {
      const g = await view();
      return g.drained.length === 0 && g.lastRun?.kind === 'undrain' ? g : undefined;
    });
    expect(done.runsStarted).toBe(2);

    // The guardian's history and the undrain's replay with the current code.
    const histories = await Promise.all(
      [guardianWorkflowId('guarded'), runWorkflowId('guarded')].map(async (workflowId) => ({
        workflowId,
        history: await te.client.workflow.getHandle(workflowId).fetchHistory(),
      })),
    );
    const results = [];
    for await (const r of Worker.runReplayHistories(
      { workflowBundle: await testWorkflowBundle(), dataConverter: dataConverterFromEnv() },
      histories,
    ))
      results.push(`${r.workflowId} ${r.error ? String(r.error) : 'ok'}`);
    expect(results).toEqual([`${guardianWorkflowId('guarded')} ok`, `${runWorkflowId('guarded')} ok`]);
  });
});
