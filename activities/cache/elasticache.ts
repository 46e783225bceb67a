// The elasticache-global cache provider: an ElastiCache (Redis OSS / Valkey) Global Datastore, one
// primary replication group and read-only secondaries in other regions. moto has no global
// replication groups; behaviour from the ElastiCache API reference and the user guide
// ("Promoting the secondary cluster to primary"), which test/cache-elasticache.test.ts walks:
// - DescribeGlobalReplicationGroups(GlobalReplicationGroupId, ShowMemberInfo): Members[] with
//   ReplicationGroupId, ReplicationGroupRegion, Role PRIMARY | SECONDARY; Status available, or
//   modifying while a failover (or other change) is in progress.
// - FailoverGlobalReplicationGroup(GlobalReplicationGroupId, PrimaryRegion,
//   PrimaryReplicationGroupId) promotes a secondary and demotes the primary to a secondary in one
//   operation: the secondaries follow the new primary by themselves. A request while the group is
//   not available is InvalidGlobalReplicationGroupState.
// There is no fence a worker can set on ElastiCache (CONFIG is restricted): the failover is itself
// what stops the old primary taking writes, so the fence step records that and proves nothing.
import {
  DescribeGlobalReplicationGroupsCommand,
  ElastiCacheClient,
  FailoverGlobalReplicationGroupCommand,
  type GlobalReplicationGroup,
} from '@aws-sdk/client-elasticache';
import { ApplicationFailure } from '@temporalio/common';
import type { Config, ElastiCacheGlobalCache } from '../../src/lib/config/schema';
import { awsClientConfig } from '../aws/clients';
import { awsErrorCode, awsFailure, classifyAwsError } from '../aws/errors';
import { heartbeat, pause } from '../context';
import { waitBudgetMs } from '../db/aurora/service';
import type {
  CacheActivities,
  CacheNodeState,
  CachePromoteInput,
  CachePromoteResult,
  CacheRepointInput,
  ServiceRef,
} from '../../src/contract/activities';

export function createElastiCacheGlobalActivities(
  config: Config,
  region: string,
  options: { env?: NodeJS.ProcessEnv; pollMs?: number; waitBudgetMs?: number } = {},
): CacheActivities {
  const pollMs = options.pollMs ?? 5_000;
  const clients = new Map<string, ElastiCacheClient>();
  const of = (service: string): ElastiCacheGlobalCache => {
    const cache = config.services.find((s) => s.name === service)?.cache;
    if (cache?.provider !== 'elasticache-global' || !cache.regions[region]) {
      throw ApplicationFailure.nonRetryable(
        `service "${service}" has no elasticache-global cache in ${region} in this worker's config`,
        'CacheConfig',
      );
    }
    return cache;
  };
  const client = (cache: ElastiCacheGlobalCache, mutating = false): ElastiCacheClient => {
    const key = `${cache.globalReplicationGroupId}|${mutating}`;
    let c = clients.get(key);
    if (!c) {
      // Mutating calls without SDK retries: a failover whose answer was lost is waited on, never re-sent blindly.
      c = new ElastiCacheClient(
        awsClientConfig(
          { region, endpointUrl: cache.endpointUrl, roleArn: cache.regions[region]!.roleArn },
          options.env,
          mutating ? 1 : undefined,
        ),
      );
      clients.set(key, c);
    }
    return c;
  };
  async function group(cache: ElastiCacheGlobalCache): Promise<GlobalReplicationGroup> {
    try {
      const res = await client(cache).send(
        new DescribeGlobalReplicationGroupsCommand({
          GlobalReplicationGroupId: cache.globalReplicationGroupId,
          ShowMemberInfo: true,
        }),
      );
      const g = res.GlobalReplicationGroups?.find((x) => x.GlobalReplicationGroupId === cache.globalReplicationGroupId);
      if (!g)
        throw ApplicationFailure.nonRetryable(
          `global datastore ${cache.globalReplicationGroupId} not found from ${region}; check cache.globalReplicationGroupId`,
          'CacheConfig',
        );
      return g;
    } catch (err) {
      throw awsFailure(err, `DescribeGlobalReplicationGroups ${cache.globalReplicationGroupId}`);
    }
  }
  const memberIn = (g: GlobalReplicationGroup, r: string) => g.Members?.find((m) => m.ReplicationGroupRegion === r);
  const primaryOf = (g: GlobalReplicationGroup) => g.Members?.find((m) => m.Role === 'PRIMARY');

  async function describe(cache: ElastiCacheGlobalCache, r = region): Promise<CacheNodeState> {
    const g = await group(cache);
    const m = memberIn(g, r);
    if (!m) return { region: r, reachable: false, error: `no member of ${cache.globalReplicationGroupId} in ${r}` };
    const primary = primaryOf(g);
    return {
      region: r,
      reachable: true,
      role: m.Role === 'PRIMARY' ? 'primary' : 'replica',
      ...(m.Role !== 'PRIMARY' && primary?.ReplicationGroupRegion ? { replicaOf: primary.ReplicationGroupRegion } : {}),
      ...(g.Status && g.Status !== 'available' ? { error: `global datastore ${g.Status}` } : {}),
    };
  }

  async function cachePromote({ service }: CachePromoteInput): Promise<CachePromoteResult> {
    const cache = of(service);
    const deadline = Date.now() + waitBudgetMs(options);
    const before = await describe(cache);
    let issued = false;
    for (;;) {
      const g = await group(cache);
      const me = memberIn(g, region);
      if (!me)
        throw ApplicationFailure.nonRetryable(
          `${cache.regions[region]!.replicationGroupId} in ${region} is not a member of ${cache.globalReplicationGroupId}`,
          'CacheConfig',
        );
      const available = !g.Status || g.Status === 'available';
      if (me.Role === 'PRIMARY' && available) {
        return {
          region,
          promoted: issued,
          alreadyPrimary: !issued,
          before,
          detail: issued
            ? `FailoverGlobalReplicationGroup to ${me.ReplicationGroupId} in ${region}: the old primary is a secondary now`
            : `${me.ReplicationGroupId} already is the primary of ${cache.globalReplicationGroupId}`,
        };
      }
      if (available && me.Role !== 'PRIMARY') {
        try {
          await client(cache, true).send(
            new FailoverGlobalReplicationGroupCommand({
              GlobalReplicationGroupId: cache.globalReplicationGroupId,
              PrimaryRegion: region,
              PrimaryReplicationGroupId: cache.regions[region]!.replicationGroupId,
            }),
          );
          issued = true;
        } catch (err) {
          // Another change got there first (or ours, whose answer was lost): the next describe shows it.
          if (
            awsErrorCode(err) !== 'InvalidGlobalReplicationGroupState' &&
            awsErrorCode(err) !== 'InvalidGlobalReplicationGroupStateFault'
          ) {
            throw classifyAwsError(err) === 'permanent'
              ? awsFailure(err, `FailoverGlobalReplicationGroup to ${region}`)
              : ApplicationFailure.retryable(
                  `FailoverGlobalReplicationGroup to ${region}: ${(err as Error).message}; the retry describes before it sends anything`,
                  'CacheFailoverInProgress',
                );
          }
        }
      }
      if (Date.now() >= deadline)
        throw ApplicationFailure.retryable(
          `${cache.globalReplicationGroupId} is ${g.Status}; ${region} not primary yet: the retry keeps waiting`,
          'CacheFailoverInProgress',
        );
      heartbeat({ status: g.Status, issued });
      await pause(pollMs);
    }
  }

  return {
    cacheDescribe: ({ service }: ServiceRef) => describe(of(service)),
    async cacheFence({ service }) {
      const cache = of(service);
      const now = await describe(cache);
      return {
        region,
        alreadyFenced: now.role === 'replica',
        verified: false,
        managed: true,
        detail:
          now.role === 'replica'
            ? `a secondary of ${cache.globalReplicationGroupId}: read-only by construction`
            : `no fence on ElastiCache: FailoverGlobalReplicationGroup demotes ${cache.regions[region]!.replicationGroupId} when it promotes the target`,
      };
    },
    async cacheUnfence() {
      return { region, unfenced: false, detail: 'elasticache-global: nothing was fenced' };
    },
    cachePromote,
    async cacheRepoint({ service, primaryRegion, regions: only, untilFollowing }: CacheRepointInput) {
      const cache = of(service);
      const g = await group(cache);
      const primary = memberIn(g, primaryRegion);
      const result = {
        regions: (g.Members ?? [])
          .filter(
            (m) =>
              m.ReplicationGroupRegion !== primaryRegion && (!only || only.includes(m.ReplicationGroupRegion ?? '')),
          )
          .map((m) => ({
            region: m.ReplicationGroupRegion ?? '?',
            following: m.Role === 'SECONDARY' && primary?.Role === 'PRIMARY',
            detail: `${m.ReplicationGroupId} is ${m.Role}: secondaries of a global datastore follow its primary by themselves`,
          })),
      };
      const behind = result.regions.filter((r) => !r.following);
      if (untilFollowing && behind.length > 0)
        throw ApplicationFailure.retryable(
          behind.map((r) => `${r.region}: ${r.detail}`).join('; '),
          'CacheNotFollowing',
        );
      return result;
    },
  };
}
