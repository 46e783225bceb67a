// Waiting until the target standby has replayed everything the fenced source acknowledged.
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { heartbeat, pause } from '../../context';
import type { LagResult, WaitForLagInput } from '../../../src/contract/activities';
import { isConnectionError, isLsn, lsnToBigInt } from '../sql';
import { DbFailure, POLL_MS, type ResolvedNode, withAdmin, probe } from './node';
export async function dbWaitForLag(n: ResolvedNode, { sourceLsn, timeoutMs }: WaitForLagInput): Promise<LagResult> {
  if (!isLsn(sourceLsn)) {
    throw ApplicationFailure.nonRetryable(
      `dbWaitForLag for ${n.where}: sourceLsn "${sourceLsn}" is not an LSN like 0/3000060; pass the lsn of dbFenceWrites' result`,
      DbFailure.Config,
    );
  }
  const started = Date.now();
  return withAdmin(n, async (admin) => {
    let initialLagBytes: number | undefined;
    for (;;) {
      const { rows } = await admin.query<{
        in_recovery: boolean;
        replayed: string | null;
        received: string | null;
        missing: number | null;
      }>(
        `SELECT pg_is_in_recovery() AS in_recovery,
                pg_last_wal_replay_lsn()::text AS replayed,
                pg_last_wal_receive_lsn()::text AS received,
                pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::float8 AS missing`,
        [sourceLsn],
      );
      const row = rows[0]!;
      if (!row.in_recovery) return caughtUpAsPrimary(admin, n, sourceLsn, started);
      // Null until the standby has replayed anything at all: still waiting.
      const missing = row.missing ?? Number.POSITIVE_INFINITY;
      initialLagBytes ??= Math.max(0, Number.isFinite(missing) ? missing : 0);
      if (missing <= 0) {
        return { region: n.region, replayedLsn: row.replayed!, initialLagBytes, waitedMs: Date.now() - started };
      }
      heartbeat({ replayedLsn: row.replayed, receivedLsn: row.received, missingBytes: missing });
      if (Date.now() - started >= timeoutMs) {
        const short = Number.isFinite(missing)
          ? `${missing} bytes`
          : 'an unknown number of bytes (nothing replayed yet)';
        throw ApplicationFailure.nonRetryable(
          `${n.where} did not catch up in ${timeoutMs} ms: replayed up to ${row.replayed ?? 'nothing'} (received ${row.received ?? 'nothing'}), still ${short} short of the source's ${sourceLsn}; check its WAL receiver with dbDescribe (streamingFrom, lastHeardFromPrimaryAt) before promoting`,
          DbFailure.LagTimeout,
        );
      }
      await pause(POLL_MS);
    }
  });
}

/**
 * A retry after the target was promoted finds a primary. It is done when its timeline forked
 * from the source's at or after sourceLsn (the history file says where); forked earlier means
 * it was promoted before replaying everything, which must not pass for caught up.
 */
async function caughtUpAsPrimary(
  admin: Client,
  n: ResolvedNode,
  sourceLsn: string,
  started: number,
): Promise<LagResult> {
  const { state } = await probe(admin, n.region);
  const timeline = state.timeline ?? 1;
  if (timeline <= 1) {
    throw ApplicationFailure.nonRetryable(
      `${n.where} is a primary that was never promoted (timeline 1), so it is not a standby that could replay the source's WAL; dbWaitForLag runs on the target standby`,
      DbFailure.NotStandby,
    );
  }
  let history: string | undefined;
  try {
    history = (await admin.query<{ text: string }>('SELECT pg_read_file($1) AS text', [primaryHistoryFile(timeline)]))
      .rows[0]!.text;
  } catch (err) {
    // Without the right to read it (pg_read_server_files) or without the file, the promotion
    // is taken on trust: dbPromote is the step that records the replication state before it.
    if (isConnectionError(err)) throw err;
  }
  const forkLine = history
    ?.split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .pop();
  const forkedAt = forkLine?.split(/\s+/)[1];
  if (forkedAt && isLsn(forkedAt) && lsnToBigInt(forkedAt) < lsnToBigInt(sourceLsn)) {
    throw ApplicationFailure.nonRetryable(
      `${n.where} is already a primary, and its timeline ${timeline} forked at ${forkedAt}, before the source's ${sourceLsn}: it was promoted without the last ${Number(lsnToBigInt(sourceLsn) - lsnToBigInt(forkedAt))} bytes of WAL (or it is not the target of this run)`,
      DbFailure.PromotedBehindSource,
    );
  }
  return { region: n.region, replayedLsn: state.lsn!, initialLagBytes: 0, waitedMs: Date.now() - started };
}

export function primaryHistoryFile(timeline: number): string {
  return `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
}
