// reconcile.preserve, on the old primary's worker: its writes after the divergence exist nowhere
// else, so before anything else they are made safe to read.
//
// postgres-streaming: the old primary is made (or found) read-only on its own timeline. A node
// that is down is started read-only (fenced in postgresql.auto.conf before it accepts a
// connection); a writable one is fenced (the same fence as the failover's); one that has already
// rejoined as a standby has lost them, which is said plainly. It is never rewound or rejoined here.
//
// aurora-global: Aurora keeps the old primary's data in the rds:unplanned-global-failover-* snapshot
// it takes when the region is back (and then makes the old primary a secondary, overwriting it).
// The snapshot's manual copy (dbPreserve, the same the failover's fence-on-return watcher makes)
// is restored as a cluster of its own (aurora-restore.ts), made read-only in the database, and its
// endpoint returned for classify and verify to read the old side there.
import { ApplicationFailure } from '@temporalio/common';
import type { Config, Service } from '../../src/lib/config/schema';
import { findPgBin, isInitialised, logFile, startReadOnly } from '../../src/lib/postgres/node';
import type { PreserveOldInput, PreserveOldResult } from '../../src/contract/reconcile';
import { heartbeat } from '../context';
import { createAuroraActivities, type AuroraActivities } from '../db/aurora/index';
import { AuroraService, waitBudgetMs, type AuroraOptions } from '../db/aurora/service';
import { deleteCommands, makeRestoredReadOnly, restoreSnapshotCopy } from '../db/aurora-restore';
import { createPostgresActivities } from '../db/postgres';
import { close, connect, errorMessage, isConfigError } from '../db/sql';
import { rcNode, rcOldSide, ReconcileFailure, requireSqlReconcilable } from './db';

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
    if (isConfigError(err))
      throw ApplicationFailure.nonRetryable(
        `${n.where}: the server refused ${n.admin.user}: ${errorMessage(err)}`,
        ReconcileFailure.Config,
      );
    return { reachable: false, error: errorMessage(err) };
  }
  try {
    const r = (
      await c.query<{ rec: boolean; ro: string; lsn: string; walfile: string | null; upstream: string | null }>(
        `SELECT pg_is_in_recovery() AS rec, current_setting('default_transaction_read_only') AS ro,
              CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END AS lsn,
              CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS walfile,
              (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver LIMIT 1) AS upstream`,
      )
    ).rows[0]!;
    return {
      reachable: true,
      inRecovery: r.rec,
      readOnly: r.ro === 'on',
      lsn: r.lsn,
      ...(r.walfile ? { timeline: parseInt(r.walfile.slice(0, 8), 16) } : {}),
      ...(r.upstream ? { upstream: r.upstream } : {}),
    };
  } catch (err) {
    return { reachable: false, error: errorMessage(err) };
  } finally {
    await close(c);
  }
}

export function createPreserve(config: Config, region: string, auroraOptions: AuroraOptions = {}) {
  const opts = { pollMs: 5_000, ...auroraOptions };
  let aurora: AuroraActivities | undefined;

  async function preserveAurora(input: PreserveOldInput, svc: Service): Promise<PreserveOldResult> {
    const db = requireSqlReconcilable(svc)!;
    // Restoring costs money and time: first make sure the new primary can be reconciled at all.
    rcNode(config, input.service, input.newPrimary);
    const me = db.regions[region];
    if (!me) {
      throw ApplicationFailure.nonRetryable(
        `service ${svc.name} has no Aurora cluster in ${region} (it has: ${Object.keys(db.regions).join(', ')}): reconcile.preserve runs on the old primary's worker, and ${region} is not one of the service's regions`,
        ReconcileFailure.Config,
      );
    }
    // Not there yet: SnapshotNotYet, retryable, which the workflow reports while it waits.
    aurora ??= createAuroraActivities(config, region, opts);
    const kept = await aurora.dbPreserve({ service: svc.name, since: input.since ?? '' });
    const s = new AuroraService(svc, region, opts);
    const restored = await restoreSnapshotCopy(s, kept.copy!, { pollMs: opts.pollMs, budgetMs: waitBudgetMs(opts) });
    const side = {
      region,
      cluster: restored.cluster,
      instance: restored.instance,
      snapshot: kept.copy!,
      host: restored.host,
      port: restored.port,
      database: me.database,
      deleteCommands: deleteCommands(region, restored.cluster, restored.instance),
    };
    const n = rcOldSide(config, svc.name, region, side);
    heartbeat({ readOnly: restored.cluster });
    const ro = await makeRestoredReadOnly(n.admin, me.appUser, n.where);
    return {
      region,
      state: 'restored-read-only-cluster',
      started: restored.created.length > 0,
      fenced: !ro.alreadyReadOnly,
      snapshot: { source: kept.source!, copy: kept.copy! },
      oldSide: side,
      detail: `${kept.source} (copied to ${kept.copy}) ${restored.created.includes('cluster') ? 'restored' : 'found restored'} as ${restored.cluster} in ${region} (${restored.host}:${restored.port}), read-only: ${ro.how}`,
    };
  }

  return async function reconcilePreserve(input: PreserveOldInput): Promise<PreserveOldResult> {
    const svc = config.services.find((x) => x.name === input.service);
    if (svc?.database.provider === 'aurora-global') return preserveAurora(input, svc);
    const n = rcNode(config, input.service, region);
    const pg = n.pg!;
    const lost = (why: string): never => {
      throw ApplicationFailure.nonRetryable(
        `${n.where} ${why}: the writes it accepted after the divergence are no longer on its own timeline, so reconciliation cannot read them. If a rejoin re-cloned it, the old data directory was kept aside (${pg.cfg.dataDir}.before-reclone-*): start a copy of it read-only and point the config at it`,
        ReconcileFailure.OldSideLost,
      );
    };
    let state = await look(n);
    let started = false;
    if (!state.reachable) {
      if (!isInitialised(pg.node)) {
        throw ApplicationFailure.retryable(
          `${n.where} is unreachable (${state.error}) and its data directory ${pg.cfg.dataDir} is not on this host: bring the old primary back (read-only, or let its region's worker start it), then reconciliation continues`,
          ReconcileFailure.Unreachable,
        );
      }
      const bin = pg.cfg.pgBin ?? findPgBin();
      if (!bin)
        throw ApplicationFailure.nonRetryable(
          `${n.where}: PostgreSQL's binaries are not on the ${region} worker's host; set pgBin`,
          ReconcileFailure.Config,
        );
      try {
        await startReadOnly(bin, pg.node);
      } catch (err) {
        if (/standby\.signal/.test(errorMessage(err))) lost('was being turned into a standby');
        throw ApplicationFailure.retryable(
          `starting ${n.where} read-only failed: ${errorMessage(err)}; see ${logFile(pg.node)}`,
          ReconcileFailure.Unreachable,
        );
      }
      started = true;
      state = await look(n);
      if (!state.reachable)
        throw ApplicationFailure.retryable(
          `${n.where} was started read-only but does not answer: ${state.error}`,
          ReconcileFailure.Unreachable,
        );
    }
    if (state.inRecovery)
      lost(`is a standby${state.upstream ? ` streaming from ${state.upstream}` : ''}: it has already rejoined`);
    let fenced = false;
    if (!state.readOnly) {
      // It came back writable: the failover's fence, the same one the fence-on-return watcher sets.
      const fence = await createPostgresActivities(config, region).dbFenceWrites({ service: input.service });
      if (!fence.verified)
        throw ApplicationFailure.retryable(`${n.where}: the fence could not be verified`, ReconcileFailure.Unreachable);
      fenced = !fence.alreadyFenced;
      state = await look(n);
    }
    return {
      region,
      state: 'read-only-primary',
      started,
      fenced,
      ...(state.timeline !== undefined ? { timeline: state.timeline } : {}),
      ...(state.lsn ? { lsn: state.lsn } : {}),
      detail: `${region} is a read-only primary on its own timeline ${state.timeline ?? '?'} at ${state.lsn ?? '?'}${started ? ' (started read-only here)' : ''}${fenced ? ' (fenced here)' : ''}; it is not rejoined until reconciliation has read it`,
    };
  };
}
