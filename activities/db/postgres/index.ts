// The postgres-streaming provider: the db* activities for self-managed PostgreSQL with streaming
// replication. Each region's worker sits next to its own database node and acts on that node
// only (SQL through `pg` as the admin role; pg_rewind and restarts through src/lib/postgres/node.ts
// for the steps SQL cannot do). Inputs name a service; connection details and passwords come
// from this worker's config and environment (docs/safety.md, invariant 6).
//
// Every activity is idempotent (docs/safety.md, invariant 4): it first looks at what the node is, and a retry
// after a crash at any point converges and says what it found.
//
// One file a job: node.ts (resolving, connecting, reading a node), fence.ts (the fence, its undo,
// the write check), lag.ts, promote.ts, rejoin.ts (rejoin and follow).
import type { Config } from '../../../src/lib/config/schema';
import type { RegionActivities } from '../../../src/contract/activities';
import { dbFenceWrites, dbUnfenceWrites, dbVerifyWrites } from './fence';
import { dbWaitForLag } from './lag';
import { describeNode, resolveNode } from './node';
import { dbPromote } from './promote';
import { dbFollowWriter, dbRejoinAsStandby } from './rejoin';

export { DbFailure } from './node';

export type PostgresActivities = Pick<
  RegionActivities,
  | 'dbDescribe'
  | 'dbFenceWrites'
  | 'dbUnfenceWrites'
  | 'dbWaitForLag'
  | 'dbPromote'
  | 'dbRejoinAsStandby'
  | 'dbFollowWriter'
  | 'dbVerifyWrites'
>;

export function createPostgresActivities(config: Config, region: string): PostgresActivities {
  const nodeOf = (service: string) => resolveNode(config, service, region);
  return {
    dbDescribe: async ({ service }) => describeNode(nodeOf(service)),
    dbFenceWrites: async ({ service }) => dbFenceWrites(nodeOf(service)),
    dbUnfenceWrites: async ({ service }) => dbUnfenceWrites(config, nodeOf(service)),
    dbWaitForLag: async (input) => dbWaitForLag(nodeOf(input.service), input),
    dbPromote: async ({ service }) => dbPromote(nodeOf(service)),
    dbRejoinAsStandby: async ({ service, primaryRegion }) => dbRejoinAsStandby(config, nodeOf(service), primaryRegion),
    dbFollowWriter: async ({ service, primaryRegion }) => dbFollowWriter(config, nodeOf(service), primaryRegion),
    dbVerifyWrites: async ({ service }) => dbVerifyWrites(nodeOf(service)),
  };
}
