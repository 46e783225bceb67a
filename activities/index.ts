import type { Config } from '../src/config/schema';
import type { RegionActivities } from './types';
import { createPostgresActivities } from './db/postgres';
import { createRoute53Activities } from './traffic/route53';

/** The activities one region's worker runs, bound to that region's part of the config. */
export function createRegionActivities(config: Config, region: string): RegionActivities {
  return {
    ...createPostgresActivities(config, region),
    ...createRoute53Activities(config),
  };
}
