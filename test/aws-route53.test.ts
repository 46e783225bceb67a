// Route 53 routing the AWS way, against moto over real HTTP: geolocation records shifted and
// restored (the EU stays on eu-west-1), draining and undraining a region (its weight spread over
// the others in proportion, or all to one target), and malformed traffic configs refused.
import { ChangeResourceRecordSetsCommand, ListResourceRecordSetsCommand } from '@aws-sdk/client-route-53';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegionActivities } from '../activities';
import { createRoute53Client, ensureTrafficRecords } from '../activities/traffic/route53';
import type { TrafficState } from '../src/contract/activities';
import { parseYaml } from '../src/lib/config/load';
import { Config, route53Traffic } from '../src/lib/config/schema';
import { primaryRegionOf, shiftedRecords } from '../src/contract/traffic/plan';
import { problemsOf } from './support/config-problems';
import { startMoto, type MotoServer } from './support/moto';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const EU = 'eu-west-1';
const AP = 'ap-southeast-2';

let moto: MotoServer;

beforeAll(async () => {
  moto = await startMoto();
});

afterAll(async () => {
  await moto?.stop();
});

function configFor(name: string, regions: string[], traffic: Record<string, unknown>): Config {
  return Config.parse({
    services: [
      {
        name,
        regions,
        database: {
          provider: 'postgres-streaming',
          regions: Object.fromEntries(
            regions.map((r, i) => [r, { host: '127.0.0.1', port: 55000 + i, dataDir: `/tmp/${name}-${r}` }]),
          ),
        },
        traffic: {
          provider: 'route53',
          hostedZone: `${name}.regionshift.test.`,
          recordName: `api.${name}.regionshift.test.`,
          ttl: 10,
          endpoints: Object.fromEntries(regions.map((r) => [r, `db.${r}.regionshift.test.`])),
          endpointUrl: moto.url,
          ...traffic,
        },
      },
    ],
  });
}

const weights = (state: TrafficState) => Object.fromEntries(state.records.map((r) => [r.region, r.weight]));
const geo = (state: TrafficState) => Object.fromEntries(state.records.map((r) => [r.location, r.region]));

async function refusal(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect((err as ApplicationFailure).nonRetryable).toBe(true);
  return err as ApplicationFailure;
}

describe('route53 geolocation routing', () => {
  const rules = [
    { location: { continent: 'EU' }, region: EU },
    { location: { country: 'JP' }, region: AP },
    { location: 'default', region: WEST },
  ];

  it('seeds one record per location, shifts only what the failed region answered, and restores', async () => {
    const config = configFor('geo', [WEST, EAST, EU, AP], { routing: 'geolocation', geolocation: rules });
    await ensureTrafficRecords(config, 'geo', WEST);
    const traffic = createRegionActivities(config, EAST);
    const initial = await traffic.trafficDescribe({ service: 'geo' });
    expect(geo(initial)).toEqual({ 'continent:EU': EU, 'country:JP': AP, default: WEST });
    expect(initial.records.every((r) => r.ttl === 10 && r.target === `db.${r.region}.regionshift.test.`)).toBe(true);
    expect(primaryRegionOf(initial)).toBe(WEST);

    // The records as Route 53 (moto) holds them: GeoLocation set, SetIdentifier per location.
    const client = createRoute53Client(route53Traffic(config.services[0]!));
    const zone = (await ensureTrafficRecords(config, 'geo', WEST)).hostedZoneId;
    const raw = (
      await client.send(new ListResourceRecordSetsCommand({ HostedZoneId: zone }))
    ).ResourceRecordSets!.filter((r) => r.Type === 'CNAME');
    expect(raw.map((r) => [r.SetIdentifier, r.GeoLocation])).toEqual(
      expect.arrayContaining([
        ['geo-continent-EU', { ContinentCode: 'EU' }],
        ['geo-country-JP', { CountryCode: 'JP' }],
        ['geo-default', { CountryCode: '*' }],
      ]),
    );

    // The writer moves from us-west-2 to us-east-1: the default follows, the EU stays on eu-west-1.
    const shifted = await traffic.trafficShift({ service: 'geo', from: WEST, to: EAST });
    expect(shifted.changed).toBe(true);
    expect(geo(shifted.after)).toEqual({ 'continent:EU': EU, 'country:JP': AP, default: EAST });
    expect(shifted.after.records.find((r) => r.location === 'default')!.target).toBe(`db.${EAST}.regionshift.test.`);
    expect(shifted.maxCachedSeconds).toBe(10);
    // The dry-run plan computes the same.
    expect(shiftedRecords(initial.records, WEST, EAST).map((r) => [r.location, r.region])).toEqual(
      shifted.after.records.map((r) => [r.location, r.region]),
    );
    expect((await traffic.trafficShift({ service: 'geo', from: WEST, to: EAST })).changed).toBe(false);

    // eu-west-1 cannot drain: EU clients are served in the EU only, and no other region is there.
    const refused = await refusal(traffic.trafficDrain({ service: 'geo', region: EU }));
    expect(refused.type).toBe('ResidencyRefused');
    expect(refused.message).toContain(
      'continent:EU is answered by eu-west-1, and its clients may only be served from eu-*',
    );
    // ap-southeast-1 drains: Japan goes where the default is answered now, and comes back on undrain.
    const drained = await traffic.trafficDrain({ service: 'geo', region: AP });
    expect(geo(drained.after)).toEqual({ 'continent:EU': EU, 'country:JP': EAST, default: EAST });
    const undrained = await traffic.trafficUndrain({ service: 'geo', region: AP });
    expect(geo(undrained.after)).toEqual({ 'continent:EU': EU, 'country:JP': AP, default: EAST });

    expect(await traffic.trafficRestore({ service: 'geo', state: initial })).toEqual(initial);
    await refusal(
      traffic.trafficRestore({
        service: 'geo',
        state: { ...initial, records: initial.records.filter((r) => r.location !== 'default') },
      }),
    );
    client.destroy();
  });

  it('refuses a geolocation record whose target is none of the endpoints, naming it', async () => {
    const config = configFor('odd', [WEST, EAST], {
      routing: 'geolocation',
      geolocation: [{ location: 'default', region: WEST }],
    });
    const { hostedZoneId } = await ensureTrafficRecords(config, 'odd', WEST);
    const client = createRoute53Client(route53Traffic(config.services[0]!));
    await client.send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: hostedZoneId,
        ChangeBatch: {
          Changes: [
            {
              Action: 'CREATE',
              ResourceRecordSet: {
                Name: 'api.odd.regionshift.test.',
                Type: 'CNAME',
                SetIdentifier: 'geo-country-DE',
                GeoLocation: { CountryCode: 'DE' },
                TTL: 10,
                ResourceRecords: [{ Value: 'elsewhere.example.' }],
              },
            },
          ],
        },
      }),
    );
    client.destroy();
    const err = await refusal(createRegionActivities(config, WEST).trafficDescribe({ service: 'odd' }));
    expect(err.message).toContain('geo-country-DE');
    expect(err.message).toContain('elsewhere.example.');
    expect(err.message).toContain("none of the service's endpoints");
  });
});

describe('route53 weighted drain and undrain', () => {
  const active = { [WEST]: 40, [EAST]: 30, [EU]: 20, [AP]: 10 };

  it("drain spreads the region's weight over the others in proportion (the default), and undrain restores the configured shares", async () => {
    const config = configFor('spread', [WEST, EAST, EU, AP], { weights: active });
    await ensureTrafficRecords(config, 'spread', WEST);
    const traffic = createRegionActivities(config, EAST);
    expect(weights(await traffic.trafficDescribe({ service: 'spread' }))).toEqual(active);

    const drained = await traffic.trafficDrain({ service: 'spread', region: WEST });
    // 40 over 30:20:10 → +20, +13.3, +6.7: whole numbers that keep the total of 100.
    expect(weights(drained.after)).toEqual({ [WEST]: 0, [EAST]: 50, [EU]: 33, [AP]: 17 });
    expect(drained.changed).toBe(true);
    expect((await traffic.trafficDrain({ service: 'spread', region: WEST })).changed).toBe(false);

    const second = await traffic.trafficDrain({ service: 'spread', region: AP });
    expect(weights(second.after)).toEqual({ [WEST]: 0, [EAST]: 60, [EU]: 40, [AP]: 0 });

    // Back comes us-west-2: it and the regions in service return to their shares; ap-southeast-2 stays drained.
    const back = await traffic.trafficUndrain({ service: 'spread', region: WEST });
    expect(weights(back.after)).toEqual({ [WEST]: 40, [EAST]: 30, [EU]: 20, [AP]: 0 });
    expect(weights((await traffic.trafficUndrain({ service: 'spread', region: AP })).after)).toEqual(active);

    // A failover shift from us-west-2 to us-east-1 drains the same way.
    const shift = await traffic.trafficShift({ service: 'spread', from: WEST, to: EAST });
    expect(weights(shift.after)).toEqual({ [WEST]: 0, [EAST]: 50, [EU]: 33, [AP]: 17 });
    expect(primaryRegionOf(shift.after)).toBe(EAST);
    expect(shiftedRecords(shift.before.records, WEST, EAST, 'proportional')).toEqual(shift.after.records);
  });

  it('drain: to-target gives the whole weight to the named region', async () => {
    const config = configFor('target', [WEST, EAST, EU], {
      weights: { [WEST]: 50, [EAST]: 25, [EU]: 25 },
      drain: 'to-target',
    });
    await ensureTrafficRecords(config, 'target', WEST);
    const traffic = createRegionActivities(config, EAST);
    const err = await refusal(traffic.trafficDrain({ service: 'target', region: WEST }));
    expect(err.message).toContain('traffic.drain is to-target');
    const drained = await traffic.trafficDrain({ service: 'target', region: WEST, to: EU });
    expect(weights(drained.after)).toEqual({ [WEST]: 0, [EAST]: 25, [EU]: 75 });
    expect(weights((await traffic.trafficUndrain({ service: 'target', region: WEST })).after)).toEqual({
      [WEST]: 50,
      [EAST]: 25,
      [EU]: 25,
    });
  });

  it('refuses to drain the only region with traffic when nobody can take it, and undrain without configured weights', async () => {
    const config = configFor('solo', [WEST, EAST], {});
    await ensureTrafficRecords(config, 'solo', WEST);
    const traffic = createRegionActivities(config, EAST);
    // Writer-centric seeding: us-west-2 100, us-east-1 0; proportional over nothing goes to the other region.
    const drained = await traffic.trafficDrain({ service: 'solo', region: WEST });
    expect(weights(drained.after)).toEqual({ [WEST]: 0, [EAST]: 100 });
    const err = await refusal(traffic.trafficUndrain({ service: 'solo', region: WEST }));
    expect(err.message).toContain('set traffic.weights');
    expect(await traffic.trafficRestore({ service: 'solo', state: drained.before })).toEqual(drained.before);
  });
});

describe('route53 failover routing drain', () => {
  it('draining the PRIMARY makes the SECONDARY primary; draining a SECONDARY changes nothing', async () => {
    const config = configFor('fo', [WEST, EAST], { routing: 'failover' });
    await ensureTrafficRecords(config, 'fo', WEST);
    const traffic = createRegionActivities(config, WEST);
    expect((await traffic.trafficDrain({ service: 'fo', region: EAST })).changed).toBe(false);
    const drained = await traffic.trafficDrain({ service: 'fo', region: WEST });
    expect(Object.fromEntries(drained.after.records.map((r) => [r.region, r.failover]))).toEqual({
      [WEST]: 'SECONDARY',
      [EAST]: 'PRIMARY',
    });
    expect(await traffic.trafficRestore({ service: 'fo', state: drained.before })).toEqual(drained.before);
  });
});

describe('malformed traffic config', () => {
  const service = (traffic: string): string =>
    [
      'services:',
      '  - name: ledger',
      '    regions: [us-west-2, us-east-1, eu-west-1]',
      '    database: { provider: postgres-streaming, regions: { us-west-2: { host: h, port: 1, dataDir: d }, us-east-1: { host: h, port: 2, dataDir: d }, eu-west-1: { host: h, port: 3, dataDir: d } } }',
      `    traffic: ${traffic}`,
    ].join('\n');
  const endpoints = 'endpoints: { us-west-2: w., us-east-1: e., eu-west-1: u. }';
  const problems = (text: string): string[] => problemsOf(() => parseYaml('regionshift.yaml', text, Config));

  it('is refused with the file, line, field and what is wrong', () => {
    const noDefault = problems(
      service(
        `{ provider: route53, hostedZone: z., recordName: r.z., routing: geolocation, ${endpoints}, geolocation: [{ location: { continent: EU }, region: eu-west-1 }] }`,
      ),
    );
    expect(noDefault).toEqual([
      'regionshift.yaml:5: services[0] (ledger).traffic.geolocation: no rule with location: default, so clients outside every listed location would get no answer',
    ]);

    const badCode = problems(
      service(
        `{ provider: route53, hostedZone: z., recordName: r.z., routing: geolocation, ${endpoints}, geolocation: [{ location: { continent: EUROPE }, region: eu-west-1 }, { location: default, region: us-west-2 }] }`,
      ),
    );
    expect(badCode.join('\n')).toContain('traffic.geolocation[0].location');

    const strangers = problems(
      service(
        `{ provider: route53, hostedZone: z., recordName: r.z., ${endpoints}, weights: { us-west-2: 300, ap-south-1: 10 } }`,
      ),
    );
    expect(strangers.some((p) => p.includes('traffic.weights.us-west-2') && p.includes('255'))).toBe(true);
    expect(
      strangers.some((p) => p.includes('traffic.weights.ap-south-1') && p.includes("not one of the service's regions")),
    ).toBe(true);

    const threeForFailover = problems(
      service(`{ provider: route53, hostedZone: z., recordName: r.z., routing: failover, ${endpoints} }`),
    );
    expect(threeForFailover).toEqual([
      'regionshift.yaml:5: services[0] (ledger).traffic.routing: failover routing takes exactly two regions (a PRIMARY and a SECONDARY), the service has 3; use weighted or geolocation routing',
    ]);
    const badDrain = problems(
      service(`{ provider: route53, hostedZone: z., recordName: r.z., ${endpoints}, drain: sideways }`),
    );
    expect(badDrain.some((p) => p.includes('traffic.drain') && p.includes('proportional'))).toBe(true);

    const arc = problems(
      service('{ provider: route53-arc, clusterEndpoints: [], routingControls: { us-west-2: not-an-arn } }'),
    );
    expect(arc.some((p) => p.includes('traffic.clusterEndpoints') && p.includes('at least one endpoint'))).toBe(true);
    expect(arc.some((p) => p.includes('traffic.routingControls.us-west-2') && p.includes('routing control ARN'))).toBe(
      true,
    );
    expect(arc.some((p) => p.includes('no routing control for region us-east-1'))).toBe(true);
  });
});
