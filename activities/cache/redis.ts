// The redis cache provider: self-managed Redis with replication, one node per region.
//
// The fence is min-replicas-to-write set far above any replica count, not CLIENT PAUSE WRITE:
// - a paused server holds write commands until the pause ends (CLIENT PAUSE's timeout, or a
//   restart), then runs them: a client is delayed, not refused, and after a crash-restart of the
//   old primary its writes go through. min-replicas-to-write refuses every write at once with
//   -NOREPLICAS (and EXEC of a transaction that writes, and scripts that write), stays until
//   lifted, and survives a restart once CONFIG REWRITE has written it into redis.conf;
// - it is a setting of the node, not data: it does not replicate, so the target is never fenced
//   by it, and replication from the fenced primary goes on until the target has everything.
// What it does not survive: a person resetting it (CONFIG SET), or a restart of a node whose
// config file could not be rewritten (the result says so). Redis is single-threaded: once CONFIG
// SET has answered, every write acknowledged before it is below master_repl_offset, which the
// target must reach before REPLICAOF NO ONE in a planned run.
import { ApplicationFailure } from '@temporalio/common';
import type { Config, RedisCache, Service } from '../../src/lib/config/schema';
import { durationMs } from '../../src/contract/runbook/duration';
import { heartbeat, pause } from '../context';
import type {
  CacheActivities,
  CacheFenceResult,
  CacheNodeState,
  CachePromoteInput,
  CachePromoteResult,
  CacheRepointInput,
  CacheRepointResult,
  ServiceRef,
  UnfenceResult,
} from '../../src/contract/activities';
import { RespError, parseInfo, withRedis, type RedisConnection, type RedisTarget } from './resp';

/** Far above any replica count: no primary ever has this many. */
export const FENCE_MIN_REPLICAS = 1_000_000;
/** Where the fence keeps the setting it replaced (data: replicates, so it is read back on any node). */
const markerKey = (region: string): string => `regionshift:fence:min-replicas-to-write:${region}`;
const PROBE_KEY = 'regionshift:fence:probe';

export const CacheFailure = {
  Unreachable: 'CacheUnreachable',
  Config: 'CacheConfig',
  FenceNotVerified: 'CacheFenceNotVerified',
  SyncTimeout: 'CacheSyncTimeout',
  NotPrimary: 'CacheNotPrimary',
} as const;

function target(cache: RedisCache, region: string, env: NodeJS.ProcessEnv): RedisTarget {
  const r = cache.regions[region]!;
  const password = r.passwordEnv ? env[r.passwordEnv] : undefined;
  return { host: r.host, port: r.port, ...(password ? { password } : {}) };
}

async function role(
  conn: RedisConnection,
): Promise<{ role: 'primary' | 'replica'; replicaOf?: string; offset: number; linkUp?: boolean }> {
  const info = parseInfo(String(await conn.call('INFO', 'replication')));
  if (info.role === 'slave') {
    return {
      role: 'replica',
      replicaOf: `${info.master_host}:${info.master_port}`,
      offset: Number(info.slave_repl_offset ?? 0),
      linkUp: info.master_link_status === 'up',
    };
  }
  return { role: 'primary', offset: Number(info.master_repl_offset ?? 0) };
}

async function configGet(conn: RedisConnection, name: string): Promise<string | undefined> {
  const r = await conn.call('CONFIG', 'GET', name);
  return Array.isArray(r) && typeof r[1] === 'string' ? r[1] : undefined;
}

/** CONFIG REWRITE, so the setting outlives a restart; false when the server has no config file to rewrite. */
async function persist(conn: RedisConnection): Promise<boolean> {
  const r = await conn.send(['CONFIG', 'REWRITE']);
  return !(r instanceof RespError);
}

export function createRedisCacheActivities(
  config: Config,
  region: string,
  env: NodeJS.ProcessEnv = process.env,
): CacheActivities {
  const of = (service: string): { svc: Service; cache: RedisCache } => {
    const svc = config.services.find((s) => s.name === service);
    if (!svc?.cache || svc.cache.provider !== 'redis')
      throw ApplicationFailure.nonRetryable(
        `service "${service}" has no redis cache in the ${region} worker's config`,
        CacheFailure.Config,
      );
    if (!svc.cache.regions[region])
      throw ApplicationFailure.nonRetryable(
        `service "${service}" has no cache in region ${region}`,
        CacheFailure.Config,
      );
    return { svc, cache: svc.cache };
  };
  const where = (service: string, r: string, cache: RedisCache): string =>
    `${service}'s Redis in ${r} (${cache.regions[r]!.host}:${cache.regions[r]!.port})`;
  /** A connection to a region's node; unreachable is retryable, and says where. */
  async function on<T>(
    service: string,
    cache: RedisCache,
    r: string,
    fn: (conn: RedisConnection) => Promise<T>,
  ): Promise<T> {
    try {
      return await withRedis(target(cache, r, env), fn);
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      if (err instanceof RespError)
        throw ApplicationFailure.nonRetryable(`${where(service, r, cache)}: ${err.message}`, CacheFailure.Config);
      throw ApplicationFailure.retryable(
        `${where(service, r, cache)} is unreachable: ${(err as Error).message}`,
        CacheFailure.Unreachable,
      );
    }
  }

  async function describeNode(service: string, cache: RedisCache, r: string): Promise<CacheNodeState> {
    try {
      return await on(service, cache, r, async (conn) => {
        const now = await role(conn);
        const fenced =
          now.role === 'primary'
            ? Number(await configGet(conn, 'min-replicas-to-write')) >= FENCE_MIN_REPLICAS
            : undefined;
        return {
          region: r,
          reachable: true,
          role: now.role,
          offset: now.offset,
          ...(now.replicaOf ? { replicaOf: now.replicaOf } : {}),
          ...(fenced !== undefined ? { fenced } : {}),
          ...(now.linkUp === false ? { error: 'replication link down' } : {}),
        };
      });
    } catch (err) {
      return { region: r, reachable: false, error: (err as Error).message };
    }
  }

  async function cacheFence({ service }: ServiceRef): Promise<CacheFenceResult> {
    const { cache } = of(service);
    return on(service, cache, region, async (conn) => {
      const now = await role(conn);
      if (now.role === 'replica') {
        const ro = await configGet(conn, 'replica-read-only');
        if (ro !== 'yes')
          throw ApplicationFailure.nonRetryable(
            `${where(service, region, cache)} is a replica with replica-read-only ${ro}: it takes writes; set replica-read-only yes`,
            CacheFailure.FenceNotVerified,
          );
        return {
          region,
          alreadyFenced: true,
          verified: true,
          offset: now.offset,
          detail: `a replica of ${now.replicaOf}: read-only by construction`,
        };
      }
      const current = Number(await configGet(conn, 'min-replicas-to-write'));
      const already = current >= FENCE_MIN_REPLICAS;
      // The setting it replaces, written before the fence (afterwards the write would be refused).
      if (!already) await conn.call('SET', markerKey(region), String(current));
      await conn.call('CONFIG', 'SET', 'min-replicas-to-write', String(FENCE_MIN_REPLICAS));
      const persisted = await persist(conn);
      const probe = await conn.send(['SET', PROBE_KEY, String(Date.now())]);
      const refused = probe instanceof RespError && probe.code === 'NOREPLICAS';
      if (!refused)
        throw ApplicationFailure.nonRetryable(
          `${where(service, region, cache)}: a write after min-replicas-to-write ${FENCE_MIN_REPLICAS} was not refused (${probe instanceof RespError ? probe.message : 'it was written'}); do not promote another region on this fence`,
          CacheFailure.FenceNotVerified,
        );
      const offset = (await role(conn)).offset;
      return {
        region,
        alreadyFenced: already,
        verified: true,
        offset,
        detail: `min-replicas-to-write ${FENCE_MIN_REPLICAS} (was ${already ? 'already fenced' : current}); a write was refused: ${(probe as RespError).message}; ${persisted ? 'written to redis.conf (survives a restart)' : 'CONFIG REWRITE failed: the fence ends with a restart'}`,
      };
    });
  }

  /** Gives a node back the min-replicas-to-write the fence replaced; false when it was not fenced. */
  async function lift(conn: RedisConnection, r: string, saved?: string | null): Promise<boolean> {
    if (Number(await configGet(conn, 'min-replicas-to-write')) < FENCE_MIN_REPLICAS) return false;
    const was = saved !== undefined ? saved : await conn.call('GET', markerKey(r));
    await conn.call('CONFIG', 'SET', 'min-replicas-to-write', typeof was === 'string' ? was : '0');
    await persist(conn);
    return true;
  }

  async function cacheUnfence({ service }: ServiceRef): Promise<UnfenceResult> {
    const { cache } = of(service);
    return on(service, cache, region, async (conn) => {
      const now = await role(conn);
      if (now.role === 'replica')
        return {
          region,
          unfenced: false,
          detail: `${region}'s Redis is a replica of ${now.replicaOf}; nothing to undo`,
        };
      const lifted = await lift(conn, region);
      if (lifted) await conn.call('DEL', markerKey(region));
      return {
        region,
        unfenced: lifted,
        detail: lifted ? `${region}'s Redis takes writes again` : `${region}'s Redis was not fenced`,
      };
    });
  }

  async function cachePromote({
    service,
    mode = 'planned',
    offset,
    timeoutMs: asked,
  }: CachePromoteInput): Promise<CachePromoteResult> {
    const { cache } = of(service);
    const timeoutMs = asked ?? durationMs(cache.syncTimeout);
    const before = await describeNode(service, cache, region);
    return on(service, cache, region, async (conn) => {
      let now = await role(conn);
      if (now.role === 'primary') {
        const lifted = await lift(conn, region);
        return {
          region,
          promoted: false,
          alreadyPrimary: true,
          before,
          detail: `already a primary${lifted ? '; its fence lifted' : ''}`,
        };
      }
      if (mode === 'planned' && offset !== undefined) {
        const started = Date.now();
        while (now.offset < offset) {
          if (Date.now() - started > timeoutMs) {
            throw ApplicationFailure.nonRetryable(
              `${where(service, region, cache)} replicated up to offset ${now.offset}, short of the fenced primary's ${offset}, after ${timeoutMs} ms (link ${now.linkUp ? 'up' : 'down'}); not promoted`,
              CacheFailure.SyncTimeout,
            );
          }
          heartbeat({ offset: now.offset });
          await pause(50);
          now = await role(conn);
        }
      }
      await conn.call('REPLICAOF', 'NO', 'ONE');
      // Into redis.conf: restarted, the new writer must not go back to following the old one.
      await persist(conn);
      // A fence the node carried from an earlier life as a primary must not stay on the new writer.
      const lifted = await lift(conn, region);
      const probe = await conn.send(['SET', PROBE_KEY, String(Date.now())]);
      if (probe instanceof RespError)
        throw ApplicationFailure.retryable(
          `${where(service, region, cache)} was promoted but refuses writes: ${probe.message}`,
          CacheFailure.NotPrimary,
        );
      return {
        region,
        promoted: true,
        alreadyPrimary: false,
        before,
        detail: `REPLICAOF NO ONE at offset ${now.offset}${offset !== undefined && mode === 'planned' ? ` (fenced primary: ${offset})` : ' (unplanned: what the old primary had not sent is lost to the cache)'}${lifted ? '; an old fence lifted' : ''}`,
      };
    });
  }

  async function cacheRepoint({
    service,
    primaryRegion,
    regions: only,
    untilFollowing,
  }: CacheRepointInput): Promise<CacheRepointResult> {
    const { svc, cache } = of(service);
    const primary = cache.regions[primaryRegion];
    if (!primary)
      throw ApplicationFailure.nonRetryable(
        `service "${service}" has no cache in ${primaryRegion}`,
        CacheFailure.Config,
      );
    const unknown = (only ?? []).filter((r) => r === primaryRegion || !cache.regions[r]);
    if (unknown.length > 0)
      throw ApplicationFailure.nonRetryable(
        `cannot re-point ${unknown.join(', ')} at ${primaryRegion}: ${unknown.map((r) => (r === primaryRegion ? `${r} is the primary itself` : `${r} has no cache of ${service}`)).join('; ')}`,
        CacheFailure.Config,
      );
    const others = svc.regions.filter((r) => r !== primaryRegion && (!only || only.includes(r)));
    const regions = await Promise.all(
      others.map(async (r) => {
        try {
          return await on(service, cache, r, async (conn) => {
            const now = await role(conn);
            const wanted = `${primary.host}:${primary.port}`;
            if (now.role === 'replica' && now.replicaOf === wanted)
              return { region: r, following: true, detail: `already a replica of ${wanted}` };
            // Read before REPLICAOF: the full sync that follows replaces the node's data.
            const saved = now.role === 'primary' ? await conn.call('GET', markerKey(r)) : null;
            // The old primary is a replica (read-only) from the next command on, so its fence can go.
            await conn.call('REPLICAOF', primary.host, String(primary.port));
            // Into redis.conf: an old primary restarted from its own file would come back a writer.
            await persist(conn);
            const lifted =
              now.role === 'primary' ? await lift(conn, r, typeof saved === 'string' ? saved : null) : false;
            return {
              region: r,
              following: true,
              detail: `REPLICAOF ${wanted} (was ${now.role === 'primary' ? 'a primary' : `a replica of ${now.replicaOf}`})${lifted ? '; its fence lifted' : ''}`,
            };
          });
        } catch (err) {
          return {
            region: r,
            following: false,
            detail: `not re-pointed: ${(err as Error).message}; when it answers, point it at ${primary.host}:${primary.port} (REPLICAOF) before clients reach it`,
          };
        }
      }),
    );
    const behind = regions.filter((r) => !r.following);
    if (untilFollowing && behind.length > 0)
      throw ApplicationFailure.retryable(
        behind.map((r) => `${r.region}: ${r.detail}`).join('; '),
        CacheFailure.Unreachable,
      );
    return { regions };
  }

  return {
    cacheDescribe: ({ service }) => describeNode(service, of(service).cache, region),
    cacheFence,
    cacheUnfence,
    cachePromote,
    cacheRepoint,
  };
}
