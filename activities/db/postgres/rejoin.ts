// Bringing a node back as a standby of the new primary: by a reload when its WAL has not passed
// the fork, else by stop, pg_rewind and start; and a standby following whichever region writes.
import { ApplicationFailure } from '@temporalio/common';
import { heartbeat } from '../../context';
import type { Config } from '../../../src/lib/config/schema';
import { withServer } from '../../../src/lib/postgres/conninfo';
import { findPgBin, isInitialised, logFile, rejoinAsStandby } from '../../../src/lib/postgres/node';
import type { DbNodeState, RejoinResult } from '../../../src/contract/activities';
import { errorMessage, isLsn, lsnToBigInt } from '../sql';
import { DbFailure, type ResolvedNode, resolveNode, withAdmin, describeNode, soleWriter, waitUntil } from './node';
import { setWall } from './fence';
import { primaryHistoryFile } from './lag';

const REJOIN_STREAMING_DEADLINE_MS = 30_000;
/** A reload takes effect in well under a second; past this the rewind path takes over. */
const FOLLOW_BY_RELOAD_DEADLINE_MS = 5_000;

/**
 * Whether the standby can follow the leader's timeline as it is: it must not have received WAL
 * of its own timeline past the point where the leader's timeline forked from it (the history
 * file says where). Unknown (no history readable) counts as no: the rewind path is always safe.
 */
async function canFollowByReload(
  n: ResolvedNode,
  p: ResolvedNode,
  me: DbNodeState,
  leader: DbNodeState,
): Promise<boolean> {
  const mine = me.timeline ?? 0;
  const theirs = leader.timeline ?? 0;
  if (mine === 0 || theirs === 0 || mine > theirs) return false;
  if (mine === theirs) return true;
  const history = await withAdmin(
    p,
    async (admin) =>
      (await admin.query<{ text: string }>('SELECT pg_read_file($1) AS text', [primaryHistoryFile(theirs)])).rows[0]!
        .text,
  ).catch(() => undefined);
  const forkLine = history
    ?.split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => Number(f[0]) === mine);
  const forkAt = forkLine?.[1];
  const received = me.receivedLsn ?? me.lsn;
  if (!forkAt || !isLsn(forkAt) || !received || !isLsn(received)) return false;
  return lsnToBigInt(received) <= lsnToBigInt(forkAt);
}

/** Points a running standby at p by ALTER SYSTEM and a reload, and waits until it streams from p. */
async function followByReload(n: ResolvedNode, p: ResolvedNode, leader: DbNodeState): Promise<boolean> {
  const wanted = `${p.cfg.host}:${p.cfg.port}`;
  const started = await withAdmin(n, async (admin) => {
    const current = await admin.query<{ primary_conninfo: string }>('SHOW primary_conninfo').then(
      (r) => r.rows[0]!.primary_conninfo,
      () => '',
    );
    // Only the server changes; the user, password file and TLS settings an operator chose stay.
    const next = current.trim() ? withServer(current, p.cfg.host, p.cfg.port) : undefined;
    if (!next) return false;
    await admin.query(`ALTER SYSTEM SET primary_conninfo = ${admin.escapeLiteral(next)}`);
    await admin.query('SELECT pg_reload_conf()');
    return true;
  });
  if (!started) return false;
  const following = await waitUntil(FOLLOW_BY_RELOAD_DEADLINE_MS, async () => {
    const s = await describeNode(n);
    heartbeat({ following: p.region, state: s.streamingFrom ?? s.error ?? s.role });
    return s.reachable &&
      s.role === 'standby' &&
      s.streamingFrom === wanted &&
      (s.timeline ?? 0) >= (leader.timeline ?? 0)
      ? true
      : undefined;
  });
  return following === true;
}

/**
 * Turns this region's node (normally the old primary) into a standby of primaryRegion's node:
 * stop, pg_rewind onto the new timeline, start following. Writes this node made after the
 * timelines diverged are discarded; reconciliation must read them first.
 */
export async function dbRejoinAsStandby(config: Config, n: ResolvedNode, primaryRegion: string): Promise<RejoinResult> {
  if (primaryRegion === n.region) {
    throw ApplicationFailure.nonRetryable(
      `dbRejoinAsStandby: ${n.where} cannot follow itself; primaryRegion must be another region`,
      DbFailure.Config,
    );
  }
  const p = resolveNode(config, n.service, primaryRegion);
  const wanted = `${p.cfg.host}:${p.cfg.port}`;
  const isFollowing = (s: DbNodeState): boolean => s.reachable && s.role === 'standby' && s.streamingFrom === wanted;

  // As a standby it serves the application's reads: the fence's wall comes down (pg_rewind
  // usually brings the new primary's pg_hba.conf, but not when it finds nothing to rewind).
  const lowerWall = (): Promise<unknown> => withAdmin(n, (admin) => setWall(admin, n, false));
  const current = await describeNode(n);
  if (isFollowing(current)) {
    await lowerWall();
    return { region: n.region, rejoined: false, rewound: false, how: 'already', streamingFrom: wanted };
  }

  // Stopping this node while the other is not yet a primary would leave the service without one.
  const leader = await describeNode(p);
  if (!leader.reachable) {
    throw ApplicationFailure.retryable(
      `cannot rejoin ${n.region} as a standby of ${p.where}: it is unreachable: ${leader.error}`,
      DbFailure.Unreachable,
    );
  }
  if (leader.role !== 'primary') {
    throw ApplicationFailure.nonRetryable(
      `cannot rejoin ${n.region} as a standby of ${p.where}: that node is a ${leader.role}, not a primary; promote it first (dbPromote)`,
      DbFailure.NotPrimary,
    );
  }
  // A standby that has not received WAL past the new timeline's fork follows with a reload:
  // no restart, its reads go on. Past the fork it needs pg_rewind like an old primary.
  if (current.reachable && current.role === 'standby' && (await canFollowByReload(n, p, current, leader))) {
    if (await followByReload(n, p, leader)) {
      await lowerWall();
      return { region: n.region, rejoined: true, rewound: false, how: 'reload', streamingFrom: wanted };
    }
  }
  let bin: string | undefined;
  try {
    bin = n.cfg.pgBin ?? findPgBin();
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`${n.where}: ${errorMessage(err)}`, DbFailure.Config);
  }
  if (!bin) {
    throw ApplicationFailure.nonRetryable(
      `${n.where}: PostgreSQL's server binaries (pg_ctl, pg_rewind) are not on the ${n.region} worker's host; install them or set pgBin for this region in the config`,
      DbFailure.Config,
    );
  }
  if (!isInitialised(n.node)) {
    throw ApplicationFailure.nonRetryable(
      `${n.where}: no data directory at ${n.cfg.dataDir} on this host; dbRejoinAsStandby must run on the worker next to ${n.region}'s database (check dataDir in the config)`,
      DbFailure.Config,
    );
  }

  // pg_rewind learns the source's timeline from its control file, which only changes at a
  // checkpoint after promotion; a promotion made without dbPromote may not have had one yet.
  await withAdmin(p, (admin) => admin.query('CHECKPOINT'), { statementTimeoutMs: 300_000 });

  // pg_rewind and the restarts can take a while: keep heartbeating so the activity is not presumed dead.
  const beat = setInterval(() => heartbeat({ rejoining: n.region, following: primaryRegion }), 1_000);
  // `rewound` is node.ts's reading of pg_rewind's output (see the report on "no rewind required").
  let rewound: boolean;
  try {
    ({ rewound } = await rejoinAsStandby(bin, n.node, p.node));
  } catch (err) {
    throw ApplicationFailure.retryable(
      `rejoining ${n.where} as a standby of ${primaryRegion} failed: ${errorMessage(err)}; server log: ${logFile(n.node)}`,
      DbFailure.NotConverged,
    );
  } finally {
    clearInterval(beat);
  }

  let last: DbNodeState = current;
  const following = await waitUntil(REJOIN_STREAMING_DEADLINE_MS, async () => {
    last = await describeNode(n);
    heartbeat({ rejoining: n.region, state: last.streamingFrom ?? last.error ?? last.role });
    return isFollowing(last) ? last : undefined;
  });
  if (!following) {
    throw ApplicationFailure.retryable(
      `${n.where} was rewound and restarted as a standby of ${primaryRegion} but is not streaming from ${wanted} after ${REJOIN_STREAMING_DEADLINE_MS / 1000} s (now: ${last.reachable ? `${last.role}, streaming from ${last.streamingFrom ?? 'nowhere'}` : last.error}); see ${logFile(n.node)}`,
      DbFailure.NotConverged,
    );
  }
  await lowerWall();
  return { region: n.region, rejoined: true, rewound, how: 'rewind', streamingFrom: wanted };
}

/** See FollowInput. Never a primary: that would discard writes nobody has reconciled. */
export async function dbFollowWriter(
  config: Config,
  n: ResolvedNode,
  primaryRegion: string | undefined,
): Promise<RejoinResult> {
  const me = await describeNode(n);
  if (!me.reachable)
    throw ApplicationFailure.retryable(`${n.where} is unreachable: ${me.error}`, DbFailure.Unreachable);
  if (me.role === 'primary') {
    throw ApplicationFailure.nonRetryable(
      `${n.where} is a primary, not a standby: it does not simply follow another writer; rejoin it (dbRejoinAsStandby) once reconciliation has read its writes`,
      DbFailure.NotStandby,
    );
  }
  return dbRejoinAsStandby(config, n, primaryRegion ?? (await soleWriter(config, n)));
}
