// The fence in the database (role-fence.ts: the application role NOLOGIN, its sessions ended), its
// undo, and the write check. A read replica is read-only by construction.
import { ApplicationFailure } from '@temporalio/common';
import { randomUUID } from 'node:crypto';
import type { FenceResult, UnfenceResult, VerifyWritesResult } from '../../../src/contract/activities';
import { RdsReplicaFailure, iso, sourceOf, type RdsReplicaService } from './service';

export async function dbFenceWrites(s: RdsReplicaService): Promise<FenceResult> {
  const i = await s.mine();
  if (sourceOf(i)) {
    return {
      region: s.region,
      alreadyFenced: true,
      verified: true,
      lsn: iso(),
      terminatedSessions: 0,
      detail: `a read replica of ${sourceOf(i)}: read-only by construction`,
    };
  }
  const f = await s.sql().fence();
  return {
    region: s.region,
    alreadyFenced: f.alreadyFenced,
    verified: f.verified,
    terminatedSessions: f.terminated,
    // ReplicaLag is a time series: the fence's position is then its time.
    lsn: s.db.lagSource === 'sql' ? f.lsn : iso(),
    detail: `ALTER ROLE ${s.me.appUser} NOLOGIN, and SET default_transaction_read_only = on; ${f.how}`,
  };
}

export async function dbUnfenceWrites(s: RdsReplicaService): Promise<UnfenceResult> {
  const i = await s.mine();
  if (sourceOf(i))
    return {
      region: s.region,
      unfenced: false,
      detail: `${s.region} is a read replica of ${sourceOf(i)}; there is no fence to undo`,
    };
  // Another region already writes (this one was replaced): lifting here would make two writers.
  for (const other of Object.keys(s.db.regions).filter((r) => r !== s.region)) {
    const o = await s.instance(other);
    if (o && !sourceOf(o)) {
      throw ApplicationFailure.nonRetryable(
        `refusing to unfence ${s.where()}: ${s.where(other)} is a standalone instance too (promoted), so both would write; lift it by hand once you are sure`,
        RdsReplicaFailure.OtherPrimary,
      );
    }
  }
  const lifted = await s.sql().lift();
  return {
    region: s.region,
    unfenced: lifted,
    detail: lifted
      ? `${s.me.appUser} can log in and write on ${s.region} again`
      : `${s.me.appUser} was not fenced on ${s.region}`,
  };
}

export async function dbVerifyWrites(s: RdsReplicaService): Promise<VerifyWritesResult> {
  const i = await s.mine();
  if (sourceOf(i))
    throw ApplicationFailure.nonRetryable(
      `${s.where()} is not writable: it is a read replica of ${sourceOf(i)}`,
      RdsReplicaFailure.NotWritable,
    );
  const latencyMs = await s.sql().verifyWrite(randomUUID(), s.region);
  return { region: s.region, ok: true, latencyMs };
}
