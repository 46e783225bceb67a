// reconcile.preserve, on the old primary's worker: its writes after the divergence exist nowhere
// else, so before anything else it is made (or found) read-only on its own timeline. A node that
// is down is started read-only (fenced in postgresql.auto.conf before it accepts a connection);
// a writable one is fenced (the same fence as the failover's); one that has already rejoined as
// a standby has lost them, which is said plainly. It is never rewound or rejoined here.
import { ApplicationFailure } from '@temporalio/common';
import type { Config } from '../../src/config/schema';
import { findPgBin, isInitialised, logFile, startReadOnly } from '../../src/postgres/node';
import type { PreserveOldInput, PreserveOldResult } from '../../src/reconcile/types';
import { createPostgresActivities } from '../db/postgres';
import { close, connect, errorMessage, isConfigError } from '../db/sql';
import { rcNode, ReconcileFailure } from './db';

interface Look {
  reachable: boolean;
  error?: string;
  inRecovery?: boolean;
  readOnly?: boolean;
  timeline?: number;
  lsn?: string;
  upstream?: string;
}

async function look(n: ReturnType<typeof rcNode>): Promise<Look> {
  let c;
  try {
    c = await connect(n.admin);
  } catch (err) {
    if (isConfigError(err)) throw ApplicationFailure.nonRetryable(`${n.where}: the server refused ${n.admin.user}: ${errorMessage(err)}`, ReconcileFailure.Config);
    return { reachable: false, error: errorMessage(err) };
  }
  try {
    const r = (await c.query<{ rec: boolean; ro: string; lsn: string; walfile: string | null; upstream: string | null }>(
      `SELECT pg_is_in_recovery() AS rec, current_setting('default_transaction_read_only') AS ro,
              CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END AS lsn,
              CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS walfile,
              (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver LIMIT 1) AS upstream`,
    )).rows[0]!;
    return { reachable: true, inRecovery: r.rec, readOnly: r.ro === 'on', lsn: r.lsn, ...(r.walfile ? { timeline: parseInt(r.walfile.slice(0, 8), 16) } : {}), ...(r.upstream ? { upstream: r.upstream } : {}) };
  } catch (err) {
    return { reachable: false, error: errorMessage(err) };
  } finally {
    await close(c);
  }
}

export function createPreserve(config: Config, region: string) {
  return async function reconcilePreserve(input: PreserveOldInput): Promise<PreserveOldResult> {
    const n = rcNode(config, input.service, region);
    const lost = (why: string): never => {
      throw ApplicationFailure.nonRetryable(
        `${n.where} ${why}: the writes it accepted after the divergence are no longer on its own timeline, so reconciliation cannot read them. If a rejoin re-cloned it, the old data directory was kept aside (${n.cfg.dataDir}.before-reclone-*): start a copy of it read-only and point the config at it`,
        ReconcileFailure.OldSideLost,
      );
    };
    let state = await look(n);
    let started = false;
    if (!state.reachable) {
      if (!isInitialised(n.node)) {
        throw ApplicationFailure.retryable(
          `${n.where} is unreachable (${state.error}) and its data directory ${n.cfg.dataDir} is not on this host: bring the old primary back (read-only, or let its region's worker start it), then reconciliation continues`,
          ReconcileFailure.Unreachable,
        );
      }
      const bin = n.cfg.pgBin ?? findPgBin();
      if (!bin) throw ApplicationFailure.nonRetryable(`${n.where}: PostgreSQL's binaries are not on the ${region} worker's host; set pgBin`, ReconcileFailure.Config);
      try {
        await startReadOnly(bin, n.node);
      } catch (err) {
        if (/standby\.signal/.test(errorMessage(err))) lost('was being turned into a standby');
        throw ApplicationFailure.retryable(`starting ${n.where} read-only failed: ${errorMessage(err)}; see ${logFile(n.node)}`, ReconcileFailure.Unreachable);
      }
      started = true;
      state = await look(n);
      if (!state.reachable) throw ApplicationFailure.retryable(`${n.where} was started read-only but does not answer: ${state.error}`, ReconcileFailure.Unreachable);
    }
    if (state.inRecovery) lost(`is a standby${state.upstream ? ` streaming from ${state.upstream}` : ''}: it has already rejoined`);
    let fenced = false;
    if (!state.readOnly) {
      // It came back writable: the failover's fence, the same one the fence-on-return watcher sets.
      const fence = await createPostgresActivities(config, region).dbFenceWrites({ service: input.service });
      if (!fence.verified) throw ApplicationFailure.retryable(`${n.where}: the fence could not be verified`, ReconcileFailure.Unreachable);
      fenced = !fence.alreadyFenced;
      state = await look(n);
    }
    return {
      region, state: 'read-only-primary', started, fenced,
      ...(state.timeline !== undefined ? { timeline: state.timeline } : {}),
      ...(state.lsn ? { lsn: state.lsn } : {}),
      detail: `${region} is a read-only primary on its own timeline ${state.timeline ?? '?'} at ${state.lsn ?? '?'}${started ? ' (started read-only here)' : ''}${fenced ? ' (fenced here)' : ''}; it is not rejoined until reconciliation has read it`,
    };
  };
}
