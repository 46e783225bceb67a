// The Aurora global database the AWS tests build (in moto, or in rds-sim.ts for what moto lacks),
// as a service's config names it: one global cluster, one regional cluster per region.
export const AURORA_GLOBAL_ID = 'ledger-global';

/** services[].database of an aurora-global service with `clusters` (region → cluster identifier) served at `endpointUrl`. */
export function auroraDatabase(
  endpointUrl: string,
  clusters: Record<string, string>,
  more: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    provider: 'aurora-global',
    globalClusterIdentifier: AURORA_GLOBAL_ID,
    regions: Object.fromEntries(Object.entries(clusters).map(([region, id]) => [region, { clusterIdentifier: id }])),
    endpointUrl,
    ...more,
  };
}
