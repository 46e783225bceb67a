import type { Config, Service } from '../src/lib/config/schema';
import type {
  CacheActivities,
  DbNodeState,
  LagResult,
  PromoteInput,
  PromoteResult,
  RegionActivities,
  ServiceRef,
  WaitForLagInput,
} from '../src/contract/activities';
import { createCacheActivities } from './cache';
import { promoteAfterLag } from './db/promote-after-lag';
import { createAuroraActivities, type AuroraActivities, type AuroraOptions } from './db/aurora/index';
import { createPostgresActivities, type PostgresActivities } from './db/postgres';
import { createRdsReplicaActivities, type RdsReplicaActivities } from './db/rds-replicas';
import { createArcActivities, type ArcActivities } from './traffic/arc';
import { createRoute53Activities, type Route53Activities } from './traffic/route53';
import { createReconcileActivities, type ReconcileActivities } from './reconcile';

export interface RegionActivityOptions {
  aurora?: AuroraOptions;
  /** rds-postgres-replicas: poll interval, wait budget, environment (default: the aurora options). */
  rds?: AuroraOptions;
}

/**
 * The activities one region's worker runs. Each db* and traffic* activity goes to the provider
 * the named service's config chooses (database.provider, traffic.provider), so one worker serves
 * an Aurora service and a self-managed PostgreSQL one side by side. Providers are built on first
 * use: a worker whose services never use AWS never makes an AWS client.
 */
export function createRegionActivities(
  config: Config,
  region: string,
  options: RegionActivityOptions = {},
): RegionActivities & ReconcileActivities & CacheActivities {
  let postgres: PostgresActivities | undefined;
  let aurora: AuroraActivities | undefined;
  let rdsReplicas: RdsReplicaActivities | undefined;
  let route53: Route53Activities | undefined;
  let arc: ArcActivities | undefined;
  const find = (service: string): Service | undefined => config.services.find((s) => s.name === service);
  const pg = (): PostgresActivities => (postgres ??= createPostgresActivities(config, region));
  const au = (): AuroraActivities => (aurora ??= createAuroraActivities(config, region, options.aurora));
  // An unknown service goes to the default providers, whose errors name the services this worker knows.
  const db = ({ service }: ServiceRef): 'aurora' | 'postgres' =>
    find(service)?.database.provider === 'aurora-global' ? 'aurora' : 'postgres';
  // rds-postgres-replicas implements every db* activity: it takes the call before the two above.
  const rds = ({ service }: ServiceRef): RdsReplicaActivities | undefined =>
    find(service)?.database.provider === 'rds-postgres-replicas'
      ? (rdsReplicas ??= createRdsReplicaActivities(config, region, options.rds ?? options.aurora))
      : undefined;
  const traffic = ({ service }: ServiceRef): ArcActivities | Route53Activities =>
    find(service)?.traffic.provider === 'route53-arc'
      ? (arc ??= createArcActivities(config))
      : (route53 ??= createRoute53Activities(config));
  const waitForLag = (input: WaitForLagInput): Promise<LagResult> =>
    rds(input)?.dbWaitForLag(input) ?? (db(input) === 'aurora' ? au().dbWaitForLag(input) : pg().dbWaitForLag(input));
  const promote = (input: PromoteInput): Promise<PromoteResult> =>
    rds(input)?.dbPromote(input) ?? (db(input) === 'aurora' ? au().dbPromote(input) : pg().dbPromote(input));
  const describe = (input: ServiceRef): Promise<DbNodeState> =>
    rds(input)?.dbDescribe(input) ?? (db(input) === 'aurora' ? au().dbDescribe(input) : pg().dbDescribe(input));

  return {
    ...createReconcileActivities(config, region, { aurora: options.aurora }),
    ...createCacheActivities(config, region, options.rds ?? options.aurora),
    dbDescribe: describe,
    dbFenceWrites: (input) =>
      rds(input)?.dbFenceWrites(input) ??
      (db(input) === 'aurora' ? au().dbFenceWrites(input) : pg().dbFenceWrites(input)),
    dbUnfenceWrites: (input) =>
      rds(input)?.dbUnfenceWrites(input) ??
      (db(input) === 'aurora' ? au().dbUnfenceWrites(input) : pg().dbUnfenceWrites(input)),
    dbWaitForLag: waitForLag,
    dbPromote: promote,
    dbPromoteAfterLag: promoteAfterLag(waitForLag, promote),
    dbRejoinAsStandby: async (input) => {
      const rejoin = await (rds(input)?.dbRejoinAsStandby(input) ??
        (db(input) === 'aurora' ? au().dbRejoinAsStandby(input) : pg().dbRejoinAsStandby(input)));
      // The state it ends in goes into the run's record (RejoinResult.state); a failed read is the run's to retry, not a failed rejoin.
      const state = await describe(input).catch(() => undefined);
      return state ? { ...rejoin, state } : rejoin;
    },
    dbFollowWriter: async (input) => {
      const viaRds = rds(input);
      if (viaRds) return viaRds.dbFollowWriter(input);
      if (db(input) === 'postgres') return pg().dbFollowWriter(input);
      // Aurora's secondaries replicate from the global database's writer at the storage layer.
      const now = await au().dbDescribe(input);
      return {
        region,
        rejoined: false,
        rewound: false,
        streamingFrom: now.streamingFrom ?? '',
        detail:
          now.role === 'standby'
            ? 'aurora-global: a secondary follows the global writer by itself'
            : `aurora-global: ${region} is a ${now.role ?? 'unreachable'} cluster, not a secondary; add it to the global database to follow`,
      };
    },
    dbVerifyWrites: (input) =>
      rds(input)?.dbVerifyWrites(input) ??
      (db(input) === 'aurora' ? au().dbVerifyWrites(input) : pg().dbVerifyWrites(input)),
    dbPreserve: async (input) => {
      const viaRds = rds(input);
      if (viaRds) return viaRds.dbPreserve(input);
      if (db(input) === 'aurora') return au().dbPreserve(input);
      // Self-managed PostgreSQL: the old primary's data directory is the evidence, and rejoining
      // it (pg_rewind) keeps what it must discard aside; there is no snapshot to copy.
      return {
        region,
        preserved: false,
        detail: 'postgres-streaming: nothing to copy; the old primary keeps its data directory until it rejoins',
      };
    },
    trafficDescribe: (input) => traffic(input).trafficDescribe(input),
    trafficShift: (input) => traffic(input).trafficShift(input),
    trafficRestore: (input) => traffic(input).trafficRestore(input),
    trafficDrain: (input) => traffic(input).trafficDrain(input),
    trafficUndrain: (input) => traffic(input).trafficUndrain(input),
  };
}
