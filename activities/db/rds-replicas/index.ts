// The rds-postgres-replicas provider: the db* activities for Amazon RDS for PostgreSQL with one
// primary instance and a cross-region read replica of it in every other region. Each region's
// worker calls RDS in its own region with its own credentials (re-creating a replica reads the new
// primary's ARN in the primary's region the same way); SQL goes to each instance's endpoint.
//
// One file a job, each with the AWS-documented behaviour it relies on (RDS API reference; "Working
// with DB instance read replicas", "Promoting a read replica", "Renaming a DB instance" in the RDS
// user guide), which test/support/rds-replicas-proxy.ts walks where moto does not: service.ts (the
// clients, describes, errors), describe.ts, fence.ts (the fence in the database, its undo, the
// write check), lag.ts, promote.ts, follow.ts (a new replica of the writer in place of the
// instance standing here, which is renamed and kept), preserve.ts.
import type { Config } from '../../../src/lib/config/schema';
import type { RegionActivities } from '../../../src/contract/activities';
import { perService } from '../../per-service';
import type { AuroraOptions } from '../aurora/service';
import { describeNode } from './describe';
import { dbFenceWrites, dbUnfenceWrites, dbVerifyWrites } from './fence';
import { dbFollowWriter, follow } from './follow';
import { dbWaitForLag } from './lag';
import { dbPreserve } from './preserve';
import { dbPromote } from './promote';
import { RdsReplicaFailure, RdsReplicaService } from './service';

export type RdsReplicaActivities = Pick<
  RegionActivities,
  | 'dbDescribe'
  | 'dbFenceWrites'
  | 'dbUnfenceWrites'
  | 'dbWaitForLag'
  | 'dbPromote'
  | 'dbRejoinAsStandby'
  | 'dbFollowWriter'
  | 'dbVerifyWrites'
  | 'dbPreserve'
>;

export function createRdsReplicaActivities(
  config: Config,
  region: string,
  options: AuroraOptions = {},
): RdsReplicaActivities {
  const opts = { pollMs: 5_000, ...options };
  const of = perService(config, {
    worker: `the ${region} worker`,
    mismatch: (svc) =>
      svc.database.provider === 'rds-postgres-replicas'
        ? undefined
        : `uses database provider ${svc.database.provider}, not rds-postgres-replicas`,
    make: (svc) => new RdsReplicaService(svc, region, opts),
    failureTypes: { unknown: RdsReplicaFailure.UnknownService, wrongProvider: RdsReplicaFailure.Config },
  });
  return {
    dbDescribe: async ({ service }) => describeNode(of(service)),
    dbFenceWrites: async ({ service }) => dbFenceWrites(of(service)),
    dbUnfenceWrites: async ({ service }) => dbUnfenceWrites(of(service)),
    dbWaitForLag: async (input) => dbWaitForLag(of(input.service), input),
    dbPromote: async (input) => dbPromote(of(input.service), input),
    dbRejoinAsStandby: async ({ service, primaryRegion }) => follow(of(service), primaryRegion),
    dbFollowWriter: async (input) => dbFollowWriter(of(input.service), input),
    dbVerifyWrites: async ({ service }) => dbVerifyWrites(of(service)),
    dbPreserve: async ({ service }) => dbPreserve(of(service)),
  };
}
