// The aurora-global provider: the db* activities for an Aurora Global Database. Each region's
// worker calls the RDS and CloudWatch APIs of its own region with its own credentials (the
// switchover is the exception: AWS takes it in the current primary's region, and the worker
// builds a client for that region the same way); where the config gives a writer endpoint it
// also speaks SQL to the cluster, for the database-level fence, verifying writes and
// aurora_global_db_status().
//
// One file a job, each with the AWS-documented behaviour it relies on: service.ts (the RDS and
// CloudWatch clients, describes, errors), fence.ts (the database-level fence and the write check),
// lag.ts, promote.ts (switchover, failover, detach-and-promote, rejoin), preserve.ts (the
// old primary's snapshot), describe.ts (dbDescribe's node state).
import { perService } from '../../per-service';
import type { RegionActivities } from '../../../src/contract/activities';
import type { Config } from '../../../src/lib/config/schema';
import { describeNode } from './describe';
import { dbFenceWrites, dbUnfenceWrites, dbVerifyWrites } from './fence';
import { dbWaitForLag } from './lag';
import { dbPreserve } from './preserve';
import { dbPromote, dbRejoinAsStandby } from './promote';
import { AuroraFailure, AuroraService, type AuroraOptions } from './service';

export { AuroraFailure, AuroraService, waitBudgetMs, type AuroraOptions } from './service';

export type AuroraActivities = Pick<
  RegionActivities,
  | 'dbDescribe'
  | 'dbFenceWrites'
  | 'dbUnfenceWrites'
  | 'dbWaitForLag'
  | 'dbPromote'
  | 'dbRejoinAsStandby'
  | 'dbVerifyWrites'
  | 'dbPreserve'
>;

export function createAuroraActivities(config: Config, region: string, options: AuroraOptions = {}): AuroraActivities {
  const opts = { pollMs: 5_000, ...options };
  const of = perService(config, {
    worker: `the ${region} worker`,
    mismatch: (svc) =>
      svc.database.provider === 'aurora-global'
        ? undefined
        : `uses database provider ${svc.database.provider}, not aurora-global`,
    make: (svc) => new AuroraService(svc, region, opts),
    failureTypes: { unknown: AuroraFailure.UnknownService, wrongProvider: AuroraFailure.Config },
  });

  return {
    dbDescribe: async ({ service }) => describeNode(of(service)),
    dbFenceWrites: async ({ service }) => dbFenceWrites(of(service)),
    dbUnfenceWrites: async ({ service }) => dbUnfenceWrites(of(service)),
    dbWaitForLag: async (input) => dbWaitForLag(of(input.service), input),
    dbPromote: async (input) => dbPromote(of(input.service), input),
    dbRejoinAsStandby: async (input) => dbRejoinAsStandby(of(input.service), input),
    dbVerifyWrites: async ({ service }) => dbVerifyWrites(of(service)),
    dbPreserve: async (input) => dbPreserve(of(input.service), input),
  };
}
