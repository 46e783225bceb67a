// A service's cache activities, routed by its cache.provider. Providers are built on first use.
import { ApplicationFailure } from '@temporalio/common';
import type { Config } from '../../src/lib/config/schema';
import type { AuroraOptions } from '../db/aurora/service';
import type { CacheActivities, ServiceRef } from '../../src/contract/activities';
import { createElastiCacheGlobalActivities } from './elasticache';
import { createRedisCacheActivities } from './redis';

export function createCacheActivities(config: Config, region: string, options: AuroraOptions = {}): CacheActivities {
  let redis: CacheActivities | undefined;
  let elasticache: CacheActivities | undefined;
  const pick = ({ service }: ServiceRef): CacheActivities => {
    const provider = config.services.find((s) => s.name === service)?.cache?.provider;
    if (provider === 'redis') return (redis ??= createRedisCacheActivities(config, region, options.env));
    if (provider === 'elasticache-global')
      return (elasticache ??= createElastiCacheGlobalActivities(config, region, options));
    throw ApplicationFailure.nonRetryable(
      `service "${service}" has no cache in the ${region} worker's config${provider ? ` (provider ${provider} is not available here)` : ''}; the cache.* steps run only for services with a cache`,
      'CacheConfig',
    );
  };
  return {
    cacheDescribe: (input) => pick(input).cacheDescribe(input),
    cacheFence: (input) => pick(input).cacheFence(input),
    cacheUnfence: (input) => pick(input).cacheUnfence(input),
    cachePromote: (input) => pick(input).cachePromote(input),
    cacheRepoint: (input) => pick(input).cacheRepoint(input),
  };
}
