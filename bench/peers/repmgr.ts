// repmgr 5.3 (Debian's postgresql-15-repmgr): two PostgreSQL 15 nodes the bench initialises
// and clones with repmgr, a repmgrd on each for automatic failover, and an sshd on loopback,
// because `repmgr standby switchover` works over SSH and its docs offer no other way.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
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
  writeOwned,
  type Agent,
} from './agent';
import { createBenchTables, type Endpoint, firstTime, isStreamingStandby, query, writableNode } from './pg';
import type { Peer, PeerPair } from './peer';

const HOST = '127.0.0.1';
const REPMGR = join(PG_BIN, 'repmgr');
const SSHD = '/usr/sbin/sshd';

// repmgrd's documented defaults: monitor_interval_secs 2, then reconnect_attempts 6 every
// reconnect_interval 10 s before the primary is declared lost. The docs give no lower bound
// they call safe, so the bench keeps them: that is how repmgr is run when nobody tunes it.
const REPMGRD = { monitor_interval_secs: 2, reconnect_attempts: 6, reconnect_interval: 10 };

// Shared by both nodes: standby clone and pg_rewind copy every file of the data directory,
// so the one per-node setting (the port) is given on pg_ctl's command line instead.
const common = (dir: string) => `
# regionshift bench (repmgr peer): what repmgr's docs ask of every node
listen_addresses = '${HOST}'
unix_socket_directories = '${dir}'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
wal_log_hints = on
shared_preload_libraries = 'repmgr'
`;

const HBA = `local all all trust
host all all ${HOST}/32 trust
host replication all ${HOST}/32 trust
`;

function repmgrConf(i: number, dir: string, port: number, sshPort: number): string {
  const conf = join(dir, `node${i}.repmgr.conf`);
  const data = join(dir, `node${i}`);
  const pgCtl = join(PG_BIN, 'pg_ctl');
  return [
    `node_id=${i + 1}`,
    `node_name='node${i}'`,
    `conninfo='host=${HOST} port=${port} user=repmgr dbname=repmgr connect_timeout=2'`,
    `data_directory='${data}'`,
    `pg_bindir='${PG_BIN}'`,
    `repmgr_bindir='${PG_BIN}'`,
    'use_replication_slots=yes',
    // repmgrd promotes and follows on its own: the docs' automatic failover setup.
    'failover=automatic',
    `promote_command='${REPMGR} standby promote -f ${conf} --log-to-file'`,
    `follow_command='${REPMGR} standby follow -f ${conf} --log-to-file --upstream-node-id=%n'`,
    `monitor_interval_secs=${REPMGRD.monitor_interval_secs}`,
    `reconnect_attempts=${REPMGRD.reconnect_attempts}`,
    `reconnect_interval=${REPMGRD.reconnect_interval}`,
    `log_file='${join(dir, `node${i}.repmgr.log`)}'`,
    `repmgrd_pid_file='${join(dir, `node${i}.repmgrd.pid`)}'`,
    // The docs: define how to stop/start/restart the server, with a log so nothing writes to the ssh session.
    `service_start_command='${pgCtl} -D ${data} -l ${data}.log -o "-p ${port}" -w start'`,
    `service_stop_command='${pgCtl} -D ${data} -m fast -w stop'`,
    `service_restart_command='${pgCtl} -D ${data} -l ${data}.log -o "-p ${port}" -m fast -w restart'`,
    `ssh_options='-q -p ${sshPort} -i ${join(dir, 'ssh', 'id')} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5'`,
    '',
  ].join('\n');
}

function sshdConfig(dir: string, port: number): string {
  const ssh = join(dir, 'ssh');
  return [
    `Port ${port}`,
    `ListenAddress ${HOST}`,
    `HostKey ${join(ssh, 'host_key')}`,
    `PidFile ${join(ssh, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(ssh, 'authorized_keys')}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // Run as postgres (not root), sshd can only log that user in, which is all repmgr needs.
    'StrictModes no',
    'AllowUsers postgres',
    `SetEnv PATH=${PG_BIN}:/usr/bin:/bin`,
    '',
  ].join('\n');
}

export const repmgr: Peer = {
  name: 'repmgr',
  title: 'repmgr 5.3 (postgresql-15-repmgr, openssh-server for its switchover)',
  packages: { binaries: [REPMGR, join(PG_BIN, 'repmgrd'), SSHD], packages: ['postgresql-15-repmgr', 'openssh-server'] },
  settings: [
    "repmgr standby switchover --siblings-follow: run on the standby to promote; the docs require passwordless SSH from it to the current primary (and to every sibling with --siblings-follow) and offer no other transport, so the bench runs Debian's sshd as postgres on 127.0.0.1 (a free port, key login only)",
    `repmgrd on both nodes, failover=automatic, defaults kept (monitor_interval_secs ${REPMGRD.monitor_interval_secs}, reconnect_attempts ${REPMGRD.reconnect_attempts}, reconnect_interval ${REPMGRD.reconnect_interval} s): the docs give no lower values they call safe`,
    'use_replication_slots yes, wal_log_hints on (so node rejoin can pg_rewind), service_*_command set to pg_ctl with a log file, as the switchover chapter asks',
    "asynchronous replication, as in regionshift's pair",
  ],
  detection:
    'repmgrd on the standby: reconnect_attempts × reconnect_interval without the primary, then promote_command',
  switchoverCommand:
    "repmgr -f <standby's repmgr.conf> standby switchover --siblings-follow (on the standby, over ssh to the primary)",
  async setUp(say) {
    const dir = ownedTempDir('regionshift-bench-repmgr-');
    const [pg0, pg1, sshPort] = (await freePorts(3)) as [number, number, number];
    const env = {
      ...process.env,
      HOME: dir,
      PATH: `${PG_BIN}:${process.env.PATH ?? ''}`,
      LC_ALL: 'C.UTF-8',
      PGHOST: dir,
    };
    const ports = [pg0, pg1];
    const nodes: [Endpoint, Endpoint] = [
      { host: HOST, port: pg0 },
      { host: HOST, port: pg1 },
    ];
    const confs = [0, 1].map((i) => join(dir, `node${i}.repmgr.conf`));
    const dataDirs = [0, 1].map((i) => join(dir, `node${i}`));
    const daemons: Array<Agent | undefined> = [undefined, undefined];
    let sshd: Agent | undefined;
    const startRepmgrd = async (i: number) => {
      daemons[i] = await startAgent(
        `repmgrd node${i}`,
        join(PG_BIN, 'repmgrd'),
        ['-f', confs[i]!, '--daemonize=false'],
        env,
        join(dir, `node${i}.repmgrd.out`),
      );
    };
    // Both repmgrd running and monitoring (not paused), as `repmgr daemon status` reports them.
    const waitForDaemons = async () => {
      let last = '';
      const ok = await firstTime(
        async () => {
          last = await runAs(REPMGR, ['-f', confs[0]!, 'daemon', 'status', '--csv'], env, 15_000).catch(
            (e: Error) => e.message,
          );
          const rows = last
            .trim()
            .split('\n')
            .filter((l) => /^\d+,/.test(l));
          return rows.length === 2 && rows.every((r) => /,1,\d+,0(,|$)/.test(r));
        },
        Date.now() + 60_000,
        500,
      );
      if (!ok)
        throw new Error(`repmgrd is not monitoring both nodes after 60 s: ${last.trim().split('\n').join(' | ')}`);
    };
    const pgCtl = (i: number, ...args: string[]) =>
      runAs(
        join(PG_BIN, 'pg_ctl'),
        ['-D', dataDirs[i]!, '-l', `${dataDirs[i]}.log`, '-o', `-p ${ports[i]}`, '-w', ...args],
        env,
        90_000,
      );
    const stop = async () => {
      await Promise.all(daemons.map((d) => (d ? stopAgent(d, 10_000) : undefined)));
      await Promise.all(dataDirs.map((d) => crashServer(d, env)));
      if (sshd) await stopAgent(sshd, 5_000);
      removeDir(dir);
    };
    try {
      // sshd insists on its privilege-separation folder even when it runs unprivileged.
      if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
      const ssh = ownedDir(join(dir, 'ssh'));
      await runAs('/usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(ssh, 'host_key')], env, 30_000);
      await runAs('/usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(ssh, 'id')], env, 30_000);
      writeOwned(join(ssh, 'authorized_keys'), readFileSync(join(ssh, 'id.pub'), 'utf8'));
      writeOwned(join(ssh, 'sshd_config'), sshdConfig(dir, sshPort));
      sshd = await startAgent('sshd', SSHD, ['-D', '-e', '-f', join(ssh, 'sshd_config')], env, join(ssh, 'sshd.log'));
      for (const i of [0, 1]) writeOwned(confs[i]!, repmgrConf(i, dir, ports[i]!, sshPort), 0o644);
      say(`  repmgr: nodes on ${HOST}:${pg0} and ${HOST}:${pg1}, sshd (as postgres) on ${HOST}:${sshPort}, in ${dir}`);

      await runAs(
        join(PG_BIN, 'initdb'),
        ['-D', dataDirs[0]!, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-sync'],
        env,
      );
      appendFileSync(join(dataDirs[0]!, 'postgresql.conf'), common(dir));
      writeOwned(join(dataDirs[0]!, 'pg_hba.conf'), HBA);
      await pgCtl(0, 'start');
      await runAs(
        join(PG_BIN, 'psql'),
        [
          '-h',
          HOST,
          '-p',
          String(pg0),
          '-U',
          'postgres',
          '-d',
          'postgres',
          '-v',
          'ON_ERROR_STOP=1',
          '-c',
          'CREATE USER repmgr SUPERUSER',
          '-c',
          'CREATE DATABASE repmgr OWNER repmgr',
        ],
        env,
      );
      await createBenchTables(nodes[0]);
      await runAs(REPMGR, ['-f', confs[0]!, 'primary', 'register'], env);

      await runAs(
        REPMGR,
        [
          '-h',
          HOST,
          '-p',
          String(pg0),
          '-U',
          'repmgr',
          '-d',
          'repmgr',
          '-f',
          confs[1]!,
          'standby',
          'clone',
          '--fast-checkpoint',
        ],
        env,
        180_000,
      );
      await pgCtl(1, 'start');
      await runAs(REPMGR, ['-f', confs[1]!, 'standby', 'register'], env);
      if (!(await firstTime(() => isStreamingStandby(nodes[1]), Date.now() + 60_000, 250)))
        throw new Error(`repmgr node1 did not start streaming in 60 s: ${logTail(`${dataDirs[1]}.log`)}`);
      await startRepmgrd(0);
      await startRepmgrd(1);
      await waitForDaemons();
    } catch (err) {
      await stop();
      throw err;
    }
    const pair: PeerPair = {
      dir,
      nodes,
      primary: () => writableNode(nodes, 'repmgr'),
      async switchover(target) {
        await runAs(REPMGR, ['-f', confs[target]!, 'standby', 'switchover', '--siblings-follow'], env, 180_000);
      },
      async kill(i) {
        if (daemons[i]) killAgent(daemons[i]!);
        await crashServer(dataDirs[i]!, env);
      },
      async recover(i) {
        const survivor = 1 - i;
        // The crashed primary comes back as a standby of the promoted one: repmgr's node rejoin,
        // with pg_rewind since it diverged (pg_rewind recovers the unclean shutdown first).
        // Right after a promotion the new primary's control file may still name the old timeline,
        // and pg_rewind then wrongly finds nothing to rewind (the server later refuses to start:
        // "requested timeline does not contain minimum recovery point"); a CHECKPOINT records it.
        await query(nodes[survivor]!, 'CHECKPOINT', [], 120_000);
        // The promoted node accepts writes a moment before promote_command has rewritten repmgr's
        // metadata, and rejoin refuses until it has: retried for up to a minute.
        let last = '';
        const rejoined = await firstTime(
          async () => {
            last = await runAs(
              REPMGR,
              [
                '-f',
                confs[i]!,
                'node',
                'rejoin',
                '-d',
                `host=${HOST} port=${ports[survivor]} user=repmgr dbname=repmgr`,
                '--force-rewind',
              ],
              env,
              180_000,
            ).then(
              () => 'ok',
              (e: Error) => e.message,
            );
            return last === 'ok';
          },
          Date.now() + 60_000,
          1_000,
        );
        if (!rejoined)
          throw new Error(
            `repmgr node${i} could not rejoin: ${last}; its server log: ${logTail(`${dataDirs[i]}.log`, 4)}`,
          );
        if (!(await firstTime(() => isStreamingStandby(nodes[i]!), Date.now() + 60_000, 250)))
          throw new Error(
            `repmgr node${i} did not rejoin as a streaming standby in 60 s: ${logTail(`${dataDirs[i]}.log`)}`,
          );
        await startRepmgrd(i);
        await waitForDaemons();
      },
      ready: waitForDaemons,
      toolRoots: () => [sshd?.pid, ...daemons.map((d) => d?.pid)].filter((p): p is number => p !== undefined),
      stop,
    };
    return pair;
  },
};
