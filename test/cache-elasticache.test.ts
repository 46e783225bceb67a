// The elasticache-global cache provider at the SDK level: moto has no global replication groups,
// so a small ElastiCache Query-protocol server answers the real @aws-sdk/client-elasticache with
// the documented transitions (ElastiCache API reference, FailoverGlobalReplicationGroup and
// DescribeGlobalReplicationGroups): the group is modifying while a failover runs, then the target
// is PRIMARY and the old primary SECONDARY; a failover asked while the group is not available is
// InvalidGlobalReplicationGroupState.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCacheActivities } from '../activities/cache';
import { Config } from '../src/lib/config/schema';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const GROUP = 'ldgr-sessions';
const members: Record<string, { id: string; role: 'PRIMARY' | 'SECONDARY' }> = {
  [WEST]: { id: 'sessions-west', role: 'PRIMARY' },
  [EAST]: { id: 'sessions-east', role: 'SECONDARY' },
};
let status = 'available';
const failovers: { region: string; params: Record<string, string> }[] = [];
let server: Server;
let config: Config;

const xml = (action: string, body: string): string =>
  `<${action}Response xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/"><${action}Result>${body}</${action}Result><ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></${action}Response>`;
const groupXml = (): string =>
  `<GlobalReplicationGroup><GlobalReplicationGroupId>${GROUP}</GlobalReplicationGroupId><Status>${status}</Status><Members>${Object.entries(
    members,
  )
    .map(
      ([region, m]) =>
        `<GlobalReplicationGroupMember><ReplicationGroupId>${m.id}</ReplicationGroupId><ReplicationGroupRegion>${region}</ReplicationGroupRegion><Role>${m.role}</Role><Status>associated</Status></GlobalReplicationGroupMember>`,
    )
    .join('')}</Members></GlobalReplicationGroup>`;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const p = Object.fromEntries(new URLSearchParams(body));
      const region = /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(req.headers.authorization ?? '')?.[1] ?? '';
      if (p.Action === 'DescribeGlobalReplicationGroups') {
        res
          .writeHead(200, { 'Content-Type': 'text/xml' })
          .end(xml(p.Action, `<GlobalReplicationGroups>${groupXml()}</GlobalReplicationGroups>`));
      } else if (p.Action === 'FailoverGlobalReplicationGroup') {
        if (status !== 'available') {
          res
            .writeHead(400, { 'Content-Type': 'text/xml' })
            .end(
              `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidGlobalReplicationGroupState</Code><Message>Global replication group ${GROUP} is not in available state.</Message></Error><RequestId>sim</RequestId></ErrorResponse>`,
            );
          return;
        }
        failovers.push({ region, params: p });
        status = 'modifying';
        setTimeout(() => {
          for (const [r, m] of Object.entries(members)) m.role = r === p.PrimaryRegion ? 'PRIMARY' : 'SECONDARY';
          status = 'available';
        }, 300);
        res.writeHead(200, { 'Content-Type': 'text/xml' }).end(xml(p.Action, groupXml()));
      } else {
        res
          .writeHead(400, { 'Content-Type': 'text/xml' })
          .end(
            `<ErrorResponse><Error><Code>InvalidAction</Code><Message>${p.Action}</Message></Error></ErrorResponse>`,
          );
      }
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  config = Config.parse({
    temporal: { address: '127.0.0.1:7233' },
    services: [
      {
        name: 'ledger',
        regions: [WEST, EAST],
        database: {
          provider: 'postgres-streaming',
          regions: {
            [WEST]: { host: 'w', port: 5432, dataDir: '/w' },
            [EAST]: { host: 'e', port: 5432, dataDir: '/e' },
          },
        },
        traffic: {
          provider: 'route53',
          hostedZone: 'z.',
          recordName: 'r.z.',
          endpoints: { [WEST]: 'w.', [EAST]: 'e.' },
        },
        cache: {
          provider: 'elasticache-global',
          globalReplicationGroupId: GROUP,
          regions: { [WEST]: { replicationGroupId: 'sessions-west' }, [EAST]: { replicationGroupId: 'sessions-east' } },
          endpointUrl: url,
        },
      },
    ],
  });
});

afterAll(() => new Promise<void>((ok) => server.close(() => ok())));

describe('elasticache-global', () => {
  it('promotes the target by FailoverGlobalReplicationGroup in its region, waits through modifying, and a second call issues nothing', async () => {
    const east = createCacheActivities(config, EAST, { pollMs: 50, waitBudgetMs: 10_000 });
    expect(await east.cacheDescribe({ service: 'ledger' })).toMatchObject({ role: 'replica', replicaOf: WEST });
    expect(await createCacheActivities(config, WEST).cacheFence({ service: 'ledger' })).toMatchObject({
      verified: false,
      managed: true,
    });
    const first = await east.cachePromote({ service: 'ledger', mode: 'planned', source: WEST });
    expect(first).toMatchObject({ region: EAST, promoted: true, alreadyPrimary: false });
    expect(failovers).toEqual([
      {
        region: EAST,
        params: expect.objectContaining({
          GlobalReplicationGroupId: GROUP,
          PrimaryRegion: EAST,
          PrimaryReplicationGroupId: 'sessions-east',
        }),
      },
    ]);
    expect(await east.cacheDescribe({ service: 'ledger' })).toMatchObject({ role: 'primary' });
    expect((await east.cacheRepoint({ service: 'ledger', primaryRegion: EAST })).regions).toEqual([
      expect.objectContaining({ region: WEST, following: true }),
    ]);
    const again = await east.cachePromote({ service: 'ledger', mode: 'planned', source: WEST });
    expect(again).toMatchObject({ promoted: false, alreadyPrimary: true });
    expect(failovers).toHaveLength(1);
  });

  it('a promotion asked while another change runs waits for it instead of failing', async () => {
    const west = createCacheActivities(config, WEST, { pollMs: 50, waitBudgetMs: 10_000 });
    // Someone else's failover back to west is in flight when ours is asked for.
    status = 'available';
    const theirs = createCacheActivities(config, WEST, { pollMs: 50, waitBudgetMs: 10_000 }).cachePromote({
      service: 'ledger',
    });
    const ours = await west.cachePromote({ service: 'ledger' });
    await theirs;
    expect(ours).toMatchObject({ region: WEST });
    expect(await west.cacheDescribe({ service: 'ledger' })).toMatchObject({ role: 'primary' });
    expect(failovers).toHaveLength(2);
  });
});
