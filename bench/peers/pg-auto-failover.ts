// pg_auto_failover 2.0 (Debian's postgresql-15-auto-failover and pg-auto-failover-cli): a
// monitor and two PostgreSQL 15 nodes, each under its own `pg_autoctl run` keeper.
import { appendFileSync } from 'node:fs';
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
  runAs,
  startAgent,
  stopAgent,
  type Agent,
} from './agent';
import {
  acceptsWrite,
  createBenchTables,
  type Endpoint,
  firstTime,
  isStreamingStandby,
  query,
  writableNode,
} from './pg';
import type { Peer, PeerPair } from './peer';

const HOST = '127.0.0.1';
const PG_AUTOCTL = '/usr/bin/pg_autoctl';

export const pgAutoFailover: Peer = {
  name: 'pg_auto_failover',
  title: 'pg_auto_failover 2.0 (postgresql-15-auto-failover, pg-auto-failover-cli)',
  packages: {
    binaries: [PG_AUTOCTL, '/usr/share/postgresql/15/extension/pgautofailover.control'],
    packages: ['postgresql-15-auto-failover', 'pg-auto-failover-cli'],
  },
  settings: [
    // The configuration chapter presents these as trade-offs, with primary_demote_timeout (30 s)
    // kept above network_partition_timeout (20 s) so an isolated primary has shut itself down
    // before its secondary is promoted: lowering one without the other allows two writers.
    'monitor defaults kept (health_check_period 5 s, health_check_timeout 5 s, health_check_max_retries 2, health_check_retry_delay 2 s, node_considered_unhealthy_timeout 20 s, primary_demote_timeout 30 s > network_partition_timeout 20 s): the docs present them as one trade-off that keeps an isolated primary from writing while its secondary is promoted',
    'formation default: number_sync_standbys 0 with the secondary in the replication quorum, so pg_auto_failover runs synchronous replication (synchronous_standby_names ANY 1) whenever the secondary is healthy: no acknowledged write is lost at a failover',
    'pg_autoctl create --auth trust --no-ssl --listen 127.0.0.1 (loopback only, temporary); candidate priority 50 on both nodes (default)',
  ],
  detection: "the monitor's health checks, then node_considered_unhealthy_timeout, then the promotion",
  switchoverCommand: "pg_autoctl perform switchover --pgdata <the monitor's data dir>",
  async setUp(say) {
    const dir = ownedTempDir('regionshift-bench-pgaf-');
    const [monitorPort, pg0, pg1] = (await freePorts(3)) as [number, number, number];
    // pg_autoctl keeps its own config and state under XDG folders: ours, inside the temp dir.
    const env = {
      ...process.env,
      HOME: dir,
      PATH: `${PG_BIN}:${process.env.PATH ?? ''}`,
      LC_ALL: 'C.UTF-8',
      XDG_CONFIG_HOME: ownedDir(join(dir, 'config')),
      XDG_DATA_HOME: ownedDir(join(dir, 'data')),
      XDG_RUNTIME_DIR: ownedDir(join(dir, 'run')),
    };
    const monitorData = join(dir, 'monitor');
    const dataDirs = [join(dir, 'node0'), join(dir, 'node1')];
    const ports = [pg0, pg1];
    const nodes: [Endpoint, Endpoint] = [
      { host: HOST, port: pg0 },
      { host: HOST, port: pg1 },
    ];
    const monitorUri = `postgres://autoctl_node@${HOST}:${monitorPort}/pg_auto_failover?sslmode=disable`;
    let monitor: Agent | undefined;
    const keepers: Array<Agent | undefined> = [undefined, undefined];
    const runKeeper = async (i: number) => {
      keepers[i] = await startAgent(
        `pg_autoctl node${i}`,
        PG_AUTOCTL,
        ['run', '--pgdata', dataDirs[i]!],
        env,
        join(dir, `node${i}.keeper.log`),
      );
    };
    const stop = async () => {
      await Promise.all(keepers.map((k) => (k ? stopAgent(k, 15_000) : undefined)));
      if (monitor) await stopAgent(monitor, 15_000);
      await Promise.all([...dataDirs, monitorData].map((d) => crashServer(d, env)));
      removeDir(dir);
    };
    try {
      await runAs(
        PG_AUTOCTL,
        [
          'create',
          'monitor',
          '--pgdata',
          monitorData,
          '--pgport',
          String(monitorPort),
          '--hostname',
          HOST,
          '--auth',
          'trust',
          '--no-ssl',
          '--pgctl',
          join(PG_BIN, 'pg_ctl'),
        ],
        env,
        120_000,
      );
      // `create monitor` has no --listen and starts its server with -h '*': the bench keeps it on loopback.
      await runAs(
        PG_AUTOCTL,
        ['config', 'set', '--pgdata', monitorData, 'postgresql.listen_addresses', HOST],
        env,
        30_000,
      );
      // The bench reads the monitor's node table as postgres (to know when the formation settled).
      appendFileSync(join(monitorData, 'pg_hba.conf'), `\nhost pg_auto_failover postgres ${HOST}/32 trust\n`);
      await crashServer(monitorData, env);
      monitor = await startAgent(
        'pg_autoctl monitor',
        PG_AUTOCTL,
        ['run', '--pgdata', monitorData],
        env,
        join(dir, 'monitor.log'),
      );
      say(
        `  pg_auto_failover: monitor on ${HOST}:${monitorPort}, nodes on ${HOST}:${pg0} and ${HOST}:${pg1} in ${dir}`,
      );
      const monitorEp = { host: HOST, port: monitorPort };
      if (
        !(await firstTime(
          async () => (await query({ ...monitorEp, database: 'pg_auto_failover' }, 'SELECT 1')).length === 1,
          Date.now() + 60_000,
          250,
        ))
      ) {
        throw new Error(`the pg_auto_failover monitor did not answer in 60 s: ${logTail(monitor.log)}`);
      }
      for (const i of [0, 1]) {
        await runAs(
          PG_AUTOCTL,
          [
            'create',
            'postgres',
            '--pgdata',
            dataDirs[i]!,
            '--pgport',
            String(ports[i]),
            '--hostname',
            HOST,
            '--listen',
            HOST,
            '--name',
            `node${i}`,
            '--auth',
            'trust',
            '--no-ssl',
            '--monitor',
            monitorUri,
            '--pgctl',
            join(PG_BIN, 'pg_ctl'),
          ],
          env,
          180_000,
        );
        await runKeeper(i);
        const ready =
          i === 0
            ? () =>
                createBenchTables(nodes[0]).then(
                  () => acceptsWrite(nodes[0]),
                  () => false,
                )
            : () => isStreamingStandby(nodes[1]);
        if (!(await firstTime(ready, Date.now() + 120_000, 250)))
          throw new Error(`pg_auto_failover node${i} not ready in 120 s: ${logTail(keepers[i]!.log)}`);
      }
      if (!(await firstTime(() => bothSettled(monitorEp), Date.now() + 60_000, 250)))
        throw new Error('pg_auto_failover: the monitor did not report primary + secondary in 60 s');
    } catch (err) {
      await stop();
      throw err;
    }
    const monitorEp = { host: HOST, port: monitorPort };
    return {
      dir,
      nodes,
      primary: () => writableNode(nodes, 'pg_auto_failover'),
      async switchover() {
        // With two nodes the only candidate is the secondary; the command waits until the monitor
        // reports the switchover complete (or 60 s pass).
        await runAs(PG_AUTOCTL, ['perform', 'switchover', '--pgdata', monitorData], env, 90_000);
        await firstTime(() => bothSettled(monitorEp), Date.now() + 60_000, 100);
      },
      async kill(i) {
        if (keepers[i]) killAgent(keepers[i]!);
        await crashServer(dataDirs[i]!, env);
      },
      async recover(i) {
        await runKeeper(i);
        if (!(await firstTime(() => isStreamingStandby(nodes[i]!), Date.now() + 180_000, 250)))
          throw new Error(
            `pg_auto_failover node${i} did not rejoin as a secondary in 180 s: ${logTail(keepers[i]!.log)}`,
          );
        if (!(await firstTime(() => bothSettled(monitorEp), Date.now() + 60_000, 250)))
          throw new Error(
            'pg_auto_failover: the monitor did not settle on primary + secondary in 60 s after the rejoin',
          );
      },
      async ready() {
        if (!(await firstTime(() => bothSettled(monitorEp), Date.now() + 60_000, 250)))
          throw new Error('pg_auto_failover: the monitor does not report primary + secondary (60 s)');
      },
      toolRoots: () => [monitor?.pid, ...keepers.map((k) => k?.pid)].filter((p): p is number => p !== undefined),
      stop,
    } satisfies PeerPair;
  },
};

/** The monitor has the formation at rest: one primary, one secondary, both goal states reached. */
async function bothSettled(monitor: Endpoint): Promise<boolean> {
  try {
    const rows = await query(
      { ...monitor, database: 'pg_auto_failover' },
      "SELECT reportedstate::text AS r, goalstate::text AS g FROM pgautofailover.node WHERE formationid = 'default'",
    );
    const states = rows
      .filter((r) => r.r === r.g)
      .map((r) => String(r.r))
      .sort();
    return rows.length === 2 && states.join(',') === 'primary,secondary';
  } catch {
    return false;
  }
}
