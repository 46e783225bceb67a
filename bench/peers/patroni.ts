// Patroni 3.0 (Debian's patroni) with a one-member etcd 3.4 (etcd-server) as its DCS: two
// PostgreSQL 15 nodes, each under its own patroni agent, all on loopback ports of their own.
import { join } from 'node:path';
import { freePorts } from '../../src/lib/net';
import {
  PG_BIN,
  crashServer,
  killAgent,
  logTail,
  ownedDir,
  ownedTempDir,
  removeDir,
  startAgent,
  stopAgent,
  writeOwned,
  type Agent,
} from './agent';
import { acceptsWrite, createBenchTables, type Endpoint, firstTime, isStreamingStandby, writableNode } from './pg';
import type { Peer, PeerPair } from './peer';

const HOST = '127.0.0.1';

// Patroni's dynamic configuration docs: ttl is "the length of time before initiation of the
// automatic failover process" (minimum 20), loop_wait the HA loop's sleep (minimum 1), and
// retry_timeout bounds DCS and PostgreSQL retries (minimum 3), with the rule
// loop_wait + 2 * retry_timeout <= ttl. The defaults (30/10/10) are tuned for flaky networks;
// on loopback the quickest values that keep the rule are ttl 20, loop_wait 2, retry_timeout 5
// (2 + 2*5 = 12 <= 20). maximum_lag_on_failover stays at its documented default of 1 MB:
// a replica further behind never takes over on its own. use_pg_rewind lets a demoted or
// crashed leader rejoin by rewinding instead of a new base backup (it needs wal_log_hints).
const DCS = { ttl: 20, loop_wait: 2, retry_timeout: 5, maximum_lag_on_failover: 1_048_576 };

function patroniYaml(dir: string, i: number, pg: number, rest: number, etcd: number): string {
  return `scope: bench
name: node${i}
log:
  level: INFO
restapi:
  listen: ${HOST}:${rest}
  connect_address: ${HOST}:${rest}
etcd3:
  hosts: ${HOST}:${etcd}
bootstrap:
  dcs:
    ttl: ${DCS.ttl}
    loop_wait: ${DCS.loop_wait}
    retry_timeout: ${DCS.retry_timeout}
    maximum_lag_on_failover: ${DCS.maximum_lag_on_failover}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
  pg_hba:
    - local all all trust
    - host all all ${HOST}/32 trust
    - host replication all ${HOST}/32 trust
postgresql:
  listen: ${HOST}:${pg}
  connect_address: ${HOST}:${pg}
  data_dir: ${join(dir, `node${i}`)}
  bin_dir: ${PG_BIN}
  pgpass: ${join(dir, `pgpass${i}`)}
  authentication:
    superuser: { username: postgres }
    replication: { username: postgres }
    rewind: { username: postgres }
  parameters:
    unix_socket_directories: '${dir}'
`;
}

async function patroniRequest(rest: number, path: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://${HOST}:${rest}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

export const patroni: Peer = {
  name: 'patroni',
  title: 'Patroni 3.0 (patroni, etcd-server 3.4)',
  packages: {
    binaries: ['/usr/bin/patroni', '/usr/bin/etcd'],
    packages: ['patroni', 'etcd-server', 'python3-etcd', 'python3-psycopg2'],
  },
  settings: [
    `ttl ${DCS.ttl}, loop_wait ${DCS.loop_wait}, retry_timeout ${DCS.retry_timeout}: the quickest values Patroni's docs allow under their rule loop_wait + 2*retry_timeout <= ttl (defaults 30/10/10 are for flaky networks)`,
    `maximum_lag_on_failover ${DCS.maximum_lag_on_failover} (the documented default): a replica further behind than 1 MB never takes over by itself`,
    'use_pg_rewind on (with wal_log_hints): the demoted or crashed leader rejoins by pg_rewind, not a new base backup; use_slots on so the leader keeps the WAL its replica needs',
    "asynchronous replication (synchronous_mode off, the default), as in regionshift's pair; etcd 3.4 is one member on loopback, reached through etcd3",
  ],
  detection: 'leader key expiry in etcd (ttl) after the agent dies with its server',
  switchoverCommand:
    'POST /switchover {"leader","candidate"} to the leader\'s REST API (what `patronictl switchover --force` sends)',
  async setUp(say) {
    const dir = ownedTempDir('regionshift-bench-patroni-');
    const [pg0, pg1, rest0, rest1, etcdClient, etcdPeer] = (await freePorts(6)) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const env = { ...process.env, HOME: dir, PATH: `${PG_BIN}:${process.env.PATH ?? ''}`, LC_ALL: 'C.UTF-8' };
    const agents: Array<Agent | undefined> = [undefined, undefined];
    let etcd: Agent | undefined;
    const pgPorts = [pg0, pg1];
    const restPorts = [rest0, rest1];
    const nodes: [Endpoint, Endpoint] = [
      { host: HOST, port: pg0 },
      { host: HOST, port: pg1 },
    ];
    const configs = [0, 1].map((i) => join(dir, `patroni${i}.yml`));
    const startNode = async (i: number) => {
      agents[i] = await startAgent(
        `patroni node${i}`,
        '/usr/bin/patroni',
        [configs[i]!],
        env,
        join(dir, `patroni${i}.log`),
      );
    };
    const stop = async () => {
      await Promise.all(agents.map((a) => (a ? stopAgent(a, 15_000) : undefined)));
      await Promise.all([0, 1].map((i) => crashServer(join(dir, `node${i}`), env)));
      if (etcd) await stopAgent(etcd, 5_000);
      removeDir(dir);
    };
    try {
      ownedDir(join(dir, 'etcd'));
      etcd = await startAgent(
        'etcd',
        '/usr/bin/etcd',
        [
          '--name',
          'bench',
          '--data-dir',
          join(dir, 'etcd'),
          '--listen-client-urls',
          `http://${HOST}:${etcdClient}`,
          '--advertise-client-urls',
          `http://${HOST}:${etcdClient}`,
          '--listen-peer-urls',
          `http://${HOST}:${etcdPeer}`,
          '--initial-advertise-peer-urls',
          `http://${HOST}:${etcdPeer}`,
          '--initial-cluster',
          `bench=http://${HOST}:${etcdPeer}`,
          '--initial-cluster-state',
          'new',
        ],
        env,
        join(dir, 'etcd.log'),
      );
      for (const i of [0, 1]) writeOwned(configs[i]!, patroniYaml(dir, i, pgPorts[i]!, restPorts[i]!, etcdClient));
      say(
        `  patroni: etcd on ${HOST}:${etcdClient}, nodes on ${HOST}:${pg0} and ${HOST}:${pg1} (REST ${rest0}, ${rest1}) in ${dir}`,
      );
      await startNode(0);
      if (
        !(await firstTime(
          () =>
            createBenchTables(nodes[0]).then(
              () => acceptsWrite(nodes[0]),
              () => false,
            ),
          Date.now() + 90_000,
          250,
        ))
      )
        throw new Error(`patroni node0 did not become leader in 90 s: ${logTail(agents[0]!.log)}`);
      await startNode(1);
      if (!(await firstTime(() => isStreamingStandby(nodes[1]), Date.now() + 120_000, 250)))
        throw new Error(`patroni node1 did not start streaming in 120 s: ${logTail(agents[1]!.log)}`);
    } catch (err) {
      await stop();
      throw err;
    }
    const pair: PeerPair = {
      dir,
      nodes,
      primary: () => writableNode(nodes, 'patroni'),
      async switchover(target) {
        const leader = 1 - target;
        const res = await patroniRequest(restPorts[leader]!, '/switchover', {
          leader: `node${leader}`,
          candidate: `node${target}`,
        });
        if (res.status !== 200)
          throw new Error(`patroni switchover to node${target} answered HTTP ${res.status}: ${res.text.trim()}`);
      },
      async kill(i) {
        // The agent first: a live patroni would restart its server at once.
        if (agents[i]) killAgent(agents[i]!);
        await crashServer(join(dir, `node${i}`), env);
      },
      async recover(i) {
        await startNode(i);
        if (!(await firstTime(() => isStreamingStandby(nodes[i]!), Date.now() + 120_000, 250)))
          throw new Error(
            `patroni node${i} did not rejoin as a streaming replica in 120 s: ${logTail(agents[i]!.log)}`,
          );
      },
      async ready() {
        // Both members running in the cluster view, one leader and one streaming replica.
        const settled = async () => {
          const res =
            (await fetch(`http://${HOST}:${rest0}/cluster`).catch(() => undefined)) ??
            (await fetch(`http://${HOST}:${rest1}/cluster`));
          const view = (await res.json()) as { members?: Array<{ role: string; state: string }> };
          const members = view.members ?? [];
          return (
            members.length === 2 &&
            members.some((m) => m.role === 'leader' && m.state === 'running') &&
            members.some((m) => m.role !== 'leader' && (m.state === 'streaming' || m.state === 'running'))
          );
        };
        if (!(await firstTime(settled, Date.now() + 60_000, 250)))
          throw new Error('patroni: the cluster view does not show a leader and a running replica (60 s)');
      },
      toolRoots: () => [etcd?.pid, ...agents.map((a) => a?.pid)].filter((p): p is number => p !== undefined),
      stop,
    };
    return pair;
  },
};
