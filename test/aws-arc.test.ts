// Route 53 ARC routing controls (traffic.provider: route53-arc) through the real
// @aws-sdk/client-route53-recovery-cluster against a small stand-in of the cluster's data plane
// (moto has no ARC): the awsJson1_0 protocol, several regional endpoints of which some are down,
// and the control panel's "at least one On" safety rule.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegionActivities } from '../activities';
import { Config } from '../src/lib/config/schema';
import { auroraDatabase } from './support/aurora-fixture';
import { startRdsSim, type RdsSim } from './support/rds-sim';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const ARN = (r: string) =>
  `arn:aws:route53-recovery-control::123456789012:controlpanel/abc123/routingcontrol/${r.replace(/-/g, '')}`;

interface ArcServer {
  url: string;
  calls: { op: string; body: Record<string, unknown> }[];
  server: Server;
}

/** The cluster's state, shared by every endpoint of the stand-in. */
const states = new Map<string, 'On' | 'Off'>([
  [ARN(WEST), 'On'],
  [ARN(EAST), 'Off'],
]);

async function arcEndpoint(behaviour: 'ok' | 'unavailable'): Promise<ArcServer> {
  const calls: ArcServer['calls'] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const op = String(req.headers['x-amz-target'] ?? '').replace('ToggleCustomerAPI.', '');
      const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
      calls.push({ op, body });
      const reply = (status: number, payload: unknown): void => {
        res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.0' });
        res.end(JSON.stringify(payload));
      };
      const fail = (status: number, type: string, message: string): void => reply(status, { __type: type, message });
      // Documented: a cluster endpoint can be temporarily unavailable; clients try another.
      if (behaviour === 'unavailable')
        return fail(503, 'EndpointTemporarilyUnavailableException', 'endpoint temporarily unavailable');
      if (op === 'GetRoutingControlState') {
        const arn = String(body.RoutingControlArn);
        if (!states.has(arn)) return fail(404, 'ResourceNotFoundException', `routing control ${arn} not found`);
        return reply(200, {
          RoutingControlArn: arn,
          RoutingControlState: states.get(arn),
          RoutingControlName: arn.split('/').pop(),
        });
      }
      if (op === 'UpdateRoutingControlStates') {
        const entries = body.UpdateRoutingControlStateEntries as {
          RoutingControlArn: string;
          RoutingControlState: 'On' | 'Off';
        }[];
        const next = new Map(states);
        for (const e of entries) {
          if (!next.has(e.RoutingControlArn))
            return fail(404, 'ResourceNotFoundException', `routing control ${e.RoutingControlArn} not found`);
          next.set(e.RoutingControlArn, e.RoutingControlState);
        }
        // The control panel's assertion rule: at least one region On, evaluated on the whole batch.
        if (![...next.values()].includes('On'))
          return fail(400, 'ValidationException', 'safety rule at-least-one-on would be violated');
        for (const [k, v] of next) states.set(k, v);
        return reply(200, {});
      }
      return fail(400, 'ValidationException', `unknown operation ${op}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls, server };
}

let down: ArcServer;
let good: ArcServer;
let rds: RdsSim;
let config: Config;
const saved = { ...process.env };

beforeAll(async () => {
  // ARC endpoints are real AWS endpoints, so no stand-in credentials: the default chain reads these.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_EC2_METADATA_DISABLED: 'true',
  });
  down = await arcEndpoint('unavailable');
  good = await arcEndpoint('ok');
  rds = await startRdsSim({
    globalId: 'ledger-global',
    clusters: [
      { id: 'ledger-west', region: WEST, engineVersion: '15.4', instances: 1 },
      { id: 'ledger-east', region: EAST, engineVersion: '15.4', instances: 1 },
    ],
  });
  config = Config.parse({
    services: [
      {
        name: 'ledger',
        regions: [WEST, EAST],
        database: auroraDatabase(
          rds.url,
          { [WEST]: 'ledger-west', [EAST]: 'ledger-east' },
          { edgeFence: 'routing-control' },
        ),
        traffic: {
          provider: 'route53-arc',
          // The first endpoint refuses connections, the second is temporarily unavailable.
          clusterEndpoints: [
            { url: 'http://127.0.0.1:9', region: 'ap-northeast-1' },
            { url: down.url, region: 'eu-west-1' },
            { url: good.url, region: 'us-west-2' },
          ],
          routingControls: { [WEST]: ARN(WEST), [EAST]: ARN(EAST) },
          ttl: 15,
        },
      },
    ],
  });
});

afterAll(async () => {
  process.env = saved;
  down?.server.closeAllConnections();
  good?.server.closeAllConnections();
  down?.server.close();
  good?.server.close();
  await rds?.close();
});

const controls = (records: { region: string; routingControl?: string }[]) =>
  Object.fromEntries(records.map((r) => [r.region, r.routingControl]));

describe('route53-arc traffic', () => {
  it('reads and shifts through the first endpoint that answers, in one transaction, and converges', async () => {
    const traffic = createRegionActivities(config, EAST);
    const before = await traffic.trafficDescribe({ service: 'ledger' });
    expect(before).toEqual({
      recordName: 'arc:ledger',
      records: [
        { region: WEST, target: ARN(WEST), routingControl: 'On', ttl: 15 },
        { region: EAST, target: ARN(EAST), routingControl: 'Off', ttl: 15 },
      ],
    });
    expect(down.calls.length).toBeGreaterThan(0);

    const shifted = await traffic.trafficShift({ service: 'ledger', from: WEST, to: EAST });
    expect(shifted).toMatchObject({ changed: true, before, maxCachedSeconds: 15 });
    expect(controls(shifted.after.records)).toEqual({ [WEST]: 'Off', [EAST]: 'On' });
    const updates = good.calls.filter((c) => c.op === 'UpdateRoutingControlStates');
    expect(updates).toHaveLength(1);
    expect(updates[0]!.body.UpdateRoutingControlStateEntries).toEqual([
      { RoutingControlArn: ARN(EAST), RoutingControlState: 'On' },
      { RoutingControlArn: ARN(WEST), RoutingControlState: 'Off' },
    ]);
    // The endpoint that answered is tried first from then on.
    const downCalls = down.calls.length;
    expect((await traffic.trafficShift({ service: 'ledger', from: WEST, to: EAST })).changed).toBe(false);
    expect(down.calls.length).toBe(downCalls);
    expect(good.calls.filter((c) => c.op === 'UpdateRoutingControlStates')).toHaveLength(1);

    expect(controls((await traffic.trafficRestore({ service: 'ledger', state: before })).records)).toEqual({
      [WEST]: 'On',
      [EAST]: 'Off',
    });
  });

  it('drains and undrains, refusing to switch the last region Off', async () => {
    const traffic = createRegionActivities(config, WEST);
    const err = await traffic.trafficDrain({ service: 'ledger', region: WEST }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).message).toContain('every routing control would be Off');
    const drained = await traffic.trafficDrain({ service: 'ledger', region: WEST, to: EAST });
    expect(controls(drained.after.records)).toEqual({ [WEST]: 'Off', [EAST]: 'On' });
    const back = await traffic.trafficUndrain({ service: 'ledger', region: WEST });
    expect(controls(back.after.records)).toEqual({ [WEST]: 'On', [EAST]: 'On' });
    await traffic.trafficRestore({ service: 'ledger', state: drained.before });
  });

  it('a refusal from ARC is final and says what to check; every endpoint down is retryable', async () => {
    const wrong = Config.parse({
      ...config,
      services: [
        {
          ...config.services[0]!,
          traffic: {
            ...config.services[0]!.traffic,
            routingControls: { [WEST]: ARN(WEST), [EAST]: ARN('ap-south-1') },
          },
        },
      ],
    });
    const refused = await createRegionActivities(wrong, EAST)
      .trafficDescribe({ service: 'ledger' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(refused).toMatchObject({ nonRetryable: true, type: 'ResourceNotFoundException' });
    expect((refused as Error).message).toContain('check traffic.routingControls');

    const allDown = Config.parse({
      ...config,
      services: [
        {
          ...config.services[0]!,
          traffic: { ...config.services[0]!.traffic, clusterEndpoints: [{ url: down.url, region: 'eu-west-1' }] },
        },
      ],
    });
    const unavailable = await createRegionActivities(allDown, EAST)
      .trafficDescribe({ service: 'ledger' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(unavailable).toMatchObject({ nonRetryable: false, type: 'ArcUnavailable' });
    expect((unavailable as Error).message).toContain('no cluster endpoint answered');
  });

  it('fences an Aurora writer at the edge (its routing control Off), and the fence is recorded as unproven without SQL', async () => {
    const west = createRegionActivities(config, WEST);
    // The only region On: the control panel's safety rule refuses, and the fence records it.
    const refused = await west.dbFenceWrites({ service: 'ledger' });
    expect(refused.detail).toContain('not switched');
    expect(refused.detail).toContain('safety rule');
    expect(states.get(ARN(WEST))).toBe('On');
    await west.trafficUndrain({ service: 'ledger', region: EAST });
    const fence = await west.dbFenceWrites({ service: 'ledger' });
    expect(fence).toMatchObject({ region: WEST, verified: false });
    expect(fence.detail).toContain('edge: routing control of us-west-2 switched Off');
    expect(fence.detail).toContain('no database-level fence');
    expect(states.get(ARN(WEST))).toBe('Off');
    const unfence = await west.dbUnfenceWrites({ service: 'ledger' });
    expect(unfence).toMatchObject({ unfenced: true });
    expect(states.get(ARN(WEST))).toBe('On');
  });
});
