// `npm run bench -- --peers`: regionshift side by side with the tools a PostgreSQL team would
// pick instead, each set up on this machine by the bench, runs alternating one by one.
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext, BenchSection, Check, SectionResult } from '../section';
import type { Figures } from '../stats';
import { ensurePackages } from './install';
import { peerPlanned, peerUnplanned, type Sample } from './measure';
import type { Peer } from './peer';
import { patroni } from './patroni';
import { pgAutoFailover } from './pg-auto-failover';
import { repmgr } from './repmgr';
import { prepareRegionshift, regionshiftPlanned, regionshiftUnplanned } from './regionshift';
import { medians, ratio, renderTable, tableRows, type Series } from './table';

export const PEERS: Peer[] = [patroni, pgAutoFailover, repmgr];

const STOP_BOUND_MS = 60_000;

function line(kind: string, who: string, i: number, n: number, s: Sample): string {
  const parts = [
    `${kind} ${i + 1}/${n} ${who} (${s.detail}): ${s.ms === undefined ? 'no write accepted in time' : `write accepted after ${s.ms} ms`}`,
  ];
  if (s.standbyMs !== undefined || kind === 'planned')
    parts.push(
      s.standbyMs === undefined ? 'old primary not streaming in time' : `old primary streaming after ${s.standbyMs} ms`,
    );
  if (s.lostWrites !== undefined)
    parts.push(
      `lost ${s.lostWrites} of ${s.ackedWrites} acknowledged writes${s.lostDetail ? ` (${s.lostDetail})` : ''}`,
    );
  parts.push(`CPU ${s.cpuMs} ms, peak RSS ${s.peakRssMb} MB`);
  return `  ${parts.join(', ')}`;
}

/** The tool's logs and configs (not its data directories), copied out before the pair's folder goes. */
function keepLogs(dir: string, tool: string): string {
  const to = mkdtempSync(join(tmpdir(), `regionshift-bench-${tool}-logs-`));
  const wanted = /\.(log|out|conf|cfg|yml|state|csv)$/;
  const skip = /\/(base|global|pg_wal|pg_xact|pg_multixact|pg_subtrans|pg_stat_tmp|pg_logical|etcd)(\/|$)/;
  cpSync(dir, to, {
    recursive: true,
    filter: (src) => !skip.test(src) && (wanted.test(src) || !/\.[^/]*$/.test(src.slice(src.lastIndexOf('/')))),
  });
  return to;
}

/** Resolves with `p`, or rejects once `ms` pass: a stuck teardown must not hang the bench. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, fail) => (timer = setTimeout(() => fail(new Error(`${what} took over ${ms / 1000} s`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

async function pairWith(
  ctx: BenchContext,
  peer: Peer,
  runs: number,
  out: SectionResult,
): Promise<{ rs: Series; peer: Series } | undefined> {
  const { say } = ctx;
  const rs: Series = { planned: [], unplanned: [] };
  const them: Series = { planned: [], unplanned: [] };
  const failuresBefore = out.failures.length;
  say(`${peer.title}:`);
  say(`  ${await ensurePackages(peer.name, peer.packages, say)}`);
  for (const s of peer.settings) say(`  setting: ${s}`);
  const pair = await peer.setUp(say);
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= pair.stop());
  ctx.registerCleanup?.(stop);
  try {
    await prepareRegionshift(ctx);
    for (let i = 0; i < runs; i++) {
      const a = await regionshiftPlanned(ctx);
      rs.planned.push(a);
      say(line('planned', 'regionshift', i, runs, a));
      const b = await peerPlanned(pair);
      them.planned.push(b);
      say(line('planned', peer.name, i, runs, b));
    }
    for (let i = 0; i < runs; i++) {
      const a = await regionshiftUnplanned(ctx, i);
      rs.unplanned.push(a);
      say(line('unplanned', 'regionshift', i, runs, a));
      const b = await peerUnplanned(pair);
      them.unplanned.push(b);
      say(line('unplanned', peer.name, i, runs, b));
      // Back to a healthy pair for the next run (not timed): the tool rejoins the crashed node.
      if (b.killed !== undefined) await pair.recover(b.killed);
    }
  } catch (err) {
    out.failures.push(`${peer.name}: ${(err as Error).message}`);
  } finally {
    const troubled =
      out.failures.length > failuresBefore || [...them.planned, ...rs.planned].some((x) => (x.lostWrites ?? 0) > 0);
    if (troubled) say(`  ${peer.name}'s logs kept for a look: ${keepLogs(pair.dir, peer.name)}`);
    say(`  stopping ${peer.name} (everything it started)…`);
    await bounded(stop(), STOP_BOUND_MS, `stopping ${peer.name}`).catch((err: Error) => out.failures.push(err.message));
  }
  return { rs, peer: them };
}

export function peersReproduce(runs: number, tools: string[]): string {
  return `npm run bench -- --only peers --peers${tools.length < PEERS.length ? ` --peer-tools ${tools.join(',')}` : ''} --peer-runs ${runs}`;
}

export const peersSection: BenchSection = {
  name: 'peers',
  async run(ctx) {
    const out: SectionResult = { figures: {}, checks: [], notes: [], failures: [] };
    const runs = ctx.options.peerRuns ?? 3;
    const wanted = ctx.options.peerTools ?? PEERS.map((p) => p.name);
    const chosen = PEERS.filter((p) => wanted.includes(p.name));
    const reproduce = peersReproduce(
      runs,
      chosen.map((p) => p.name),
    );
    ctx.say(
      `peer tools, ${runs} run(s) of each kind, alternating with regionshift run by run; each peer runs on loopback ports and temp folders of its own`,
    );
    ctx.say('  missing Debian packages are installed by the bench itself, as root, with apt-get');
    const figures: Figures = {};
    const ratios: Figures = {};
    const rows: string[][] = [];
    for (const peer of chosen) {
      let result: { rs: Series; peer: Series } | undefined;
      try {
        result = await pairWith(ctx, peer, runs, out);
      } catch (err) {
        out.failures.push(`${peer.name} could not be set up: ${(err as Error).message}`);
        continue;
      }
      if (!result) continue;
      const rs = medians(result.rs);
      const them = medians(result.peer);
      rows.push(...tableRows(peer.name, rs, them));
      figures[peer.name] = { ...them, regionshift: rs, detection: peer.detection, switchover: peer.switchoverCommand };
      ratios[peer.name] = {
        planned: ratio(rs.plannedMs, them.plannedMs),
        plannedStandby: ratio(rs.plannedStandbyMs, them.plannedStandbyMs),
        unplanned: ratio(rs.unplannedMs, them.unplannedMs),
      };
      const checks: Array<[string, string, Sample[], (s: Sample) => number | undefined]> = [
        [
          `peers.${peer.name}.plannedMs`,
          `${peer.name} planned switchover, command issued → the new primary accepts a write`,
          result.peer.planned,
          (s) => s.ms,
        ],
        [
          `peers.${peer.name}.regionshift.plannedMs`,
          `regionshift planned failover alongside ${peer.name}, same measure`,
          result.rs.planned,
          (s) => s.ms,
        ],
        [
          `peers.${peer.name}.unplannedMs`,
          `${peer.name} unplanned failover, primary killed → the other node accepts a write (${peer.detection})`,
          result.peer.unplanned,
          (s) => s.ms,
        ],
        [
          `peers.${peer.name}.regionshift.unplannedMs`,
          `regionshift unplanned failover alongside ${peer.name}, detected by the stack's Prometheus/Alertmanager and started by its guardian`,
          result.rs.unplanned,
          (s) => s.ms,
        ],
      ];
      for (const [path, what, samples, pick] of checks) {
        out.checks.push({
          path,
          what,
          samples: samples.map(pick).filter((v): v is number => v !== undefined),
          reproduce,
        } satisfies Check);
      }
      for (const [who, m] of [
        ['regionshift', rs],
        [peer.name, them],
      ] as const) {
        if (m.lostWrites > 0)
          out.failures.push(`${who} lost ${m.lostWrites} acknowledged writes in planned runs alongside ${peer.name}`);
      }
    }
    if (rows.length) {
      ctx.say('');
      ctx.say(`side by side (medians; same machine, runs alternating; ${reproduce}):`);
      for (const l of renderTable(rows)) ctx.say(l);
    }
    out.notes.push(
      "planned: command issued → the new primary accepts an INSERT (probe every 25 ms) and → the old primary is a streaming standby again; a one-client write load runs through each tool's endpoint (regionshift: the traffic record; peers: the nodes in turn, as libpq's target_session_attrs=read-write), and every acknowledged write must be on the new primary",
      "unplanned: the primary's server stopped -m immediate and the tool's agent on that node SIGKILLed → the other node accepts an INSERT; each tool detects the failure itself (regionshift: the stack's Prometheus probes every 1 s, alert for 2 s, Alertmanager → intake → guardian starts the run, on a fresh two-region stack with monitoring per run, as bench/detection.ts)",
      "CPU: utime+stime of the tool's own processes during the run, PostgreSQL's programs excluded (regionshift: Temporal dev server + region workers, moto excluded as AWS's stand-in; patroni: etcd + agents; pg_auto_failover: monitor + keepers, their postgres excluded; repmgr: repmgrd + sshd and the sessions it runs; the bench's own client calls are not counted for anyone); peak RSS: the highest sum of their resident sets seen (100 ms samples)",
      `peers: ${reproduce}`,
    );
    out.figures = { peers: { ...figures, ratio: ratios } };
    return out;
  },
};
