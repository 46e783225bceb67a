// The local stack's DNS: each service's Route 53 records in moto, created when missing.
import { ensureTrafficRecords } from '../../activities/traffic/route53';
import type { Config, Service } from '../lib/config/schema';
import { probePg } from './postgres';

/** moto keeps its state in memory, so records are (re)created whenever they are missing, on the writer. */
export async function seedTraffic(config: Config, onProgress?: (line: string) => void): Promise<void> {
  for (const service of config.services) {
    // Only Route 53 records live in moto; ARC routing controls have no local stand-in.
    if (service.traffic.provider !== 'route53') continue;
    const writer = await stackWriter(service);
    const result = await ensureTrafficRecords(config, service.name, writer);
    if (result.recordsCreated)
      onProgress?.(`created ${service.traffic.recordName} records in Route 53 (moto), traffic on ${writer}`);
  }
}

/**
 * The region whose database is the writer now. After a failover it is not the first one, and what
 * the stack starts pointed at the writer (the records, the demo application) must start there.
 * Aurora in the local stack has no PostgreSQL node to ask: its first region stands as the writer.
 */
export async function stackWriter(service: Service): Promise<string> {
  const db = service.database;
  if (db.provider !== 'postgres-streaming') return service.regions[0]!;
  for (const region of service.regions) {
    const node = db.regions[region];
    if (!node) continue;
    const probe = await probePg({ region, dataDir: node.dataDir, host: node.host, port: node.port }).catch(
      () => undefined,
    );
    if (probe?.role === 'primary') return region;
  }
  return service.regions[0]!;
}
