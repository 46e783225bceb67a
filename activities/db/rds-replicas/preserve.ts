// The old primary is the evidence reconciliation reads: it is kept, never deleted.
import type { PreserveResult } from '../../../src/contract/activities';
import type { RdsReplicaService } from './service';

export async function dbPreserve(s: RdsReplicaService): Promise<PreserveResult> {
  // The old primary is the evidence: it stays as it is, fenced, until a planned rejoin or a
  // failback renames it (kept, never deleted) and puts a replica in its place.
  const retired = (await s.instances()).filter((i) =>
    (i.DBInstanceIdentifier ?? '').startsWith(`${s.me.instanceIdentifier}-${s.db.retiredSuffix}-`),
  );
  return {
    region: s.region,
    preserved: true,
    source: s.me.instanceIdentifier,
    detail: `the old primary ${s.me.instanceIdentifier} is kept as it is (fenced); ${retired.length} earlier instance(s) kept renamed: ${retired.map((i) => i.DBInstanceIdentifier).join(', ') || 'none'}`,
  };
}
