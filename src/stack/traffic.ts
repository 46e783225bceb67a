// The local stack's DNS: each service's Route 53 records in moto, created when missing.
import { ensureTrafficRecords } from '../../activities/traffic/route53';
import type { Config } from '../lib/config/schema';
import { probePg } from './postgres';

/**
 * moto keeps its state in memory, so records are (re)created whenever they are missing, pointing
 * at the region whose database is the writer now (which after a failover is not the first one).
 */
export async function seedTraffic(config: Config, onProgress?: (line: string) => void): Promise<void> {
  for (const service of config.services) {
    // Only Route 53 records live in moto; ARC routing controls have no local stand-in.
    if (service.traffic.provider !== 'route53') continue;
    let writer = service.regions[0]!;
    const db = service.database;
    // Aurora in the local stack has no PostgreSQL node to ask: its first region starts as the writer.
    for (const region of db.provider === 'postgres-streaming' ? service.regions : []) {
      const node = db.provider === 'postgres-streaming' ? db.regions[region]! : undefined;
      if (!node) continue;
      const probe = await probePg({ region, dataDir: node.dataDir, host: node.host, port: node.port }).catch(
        () => undefined,
      );
      if (probe?.role === 'primary') {
        writer = region;
        break;
      }
    }
    const result = await ensureTrafficRecords(config, service.name, writer);
    if (result.recordsCreated)
      onProgress?.(`created ${service.traffic.recordName} records in Route 53 (moto), traffic on ${writer}`);
  }
}
