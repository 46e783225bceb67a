// Redis for the services that have a `cache` (provider redis): Debian's redis-server, installed
// with apt-get when missing and we are root (as the monitoring programs are), one server per
// region; the service's first region holds the primary, the others replicate from it. Each runs
// from a redis.conf of its own, so the fence's CONFIG REWRITE has a file to persist into.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../lib/config/schema';
import { PrerequisiteError } from '../lib/postgres/node';
import { spawnDetached } from './process';
import { runStreaming } from './run';
import type { StackState } from './state';

export interface RedisNodeSpec {
  region: string;
  host: string;
  port: number;
  dir: string;
  replicaOf?: { host: string; port: number };
}

function which(file: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${file}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

/** redis-server's path; installs the Debian package when it is missing and we are root. */
export async function ensureRedisServer(opts: { onProgress?(line: string): void } = {}): Promise<string> {
  const found = which('redis-server');
  if (found) return found;
  const missing =
    "redis-server not found: install it with `apt-get install redis-server`, or remove the services' cache sections";
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get'))
    throw new PrerequisiteError(`${missing} (not root, so not installed)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const onLine = (line: string) => opts.onProgress?.(`  apt: ${line}`);
  opts.onProgress?.('redis-server not found; installing with apt-get…');
  try {
    await runStreaming('apt-get', ['update'], { env, onLine, idleNoticeMs: 15_000 });
    // No recommends, and the package's own service is not wanted: each region runs its own server.
    await runStreaming('apt-get', ['install', '-y', '--no-install-recommends', 'redis-server'], {
      env: { ...env, RUNLEVEL: '1' },
      onLine,
      idleNoticeMs: 15_000,
    });
  } catch (err) {
    throw new PrerequisiteError(`${missing} (apt-get failed: ${(err as Error).message})`);
  }
  const after = which('redis-server');
  if (!after) throw new PrerequisiteError(`${missing} (still missing after apt-get install)`);
  return after;
}

/** Writes the node's redis.conf and returns the command that runs it in the foreground. */
export function redisArgv(bin: string, node: RedisNodeSpec): string[] {
  mkdirSync(node.dir, { recursive: true });
  const conf = join(node.dir, 'redis.conf');
  if (!existsSync(conf)) {
    // No snapshots or AOF: a cache; the replicas hold the copies that matter for a failover.
    const lines = [
      `bind ${node.host}`,
      `port ${node.port}`,
      `dir ${node.dir}`,
      'daemonize no',
      'protected-mode no',
      'save ""',
      'appendonly no',
      'replica-read-only yes',
      `logfile ""`,
      ...(node.replicaOf ? [`replicaof ${node.replicaOf.host} ${node.replicaOf.port}`] : []),
    ];
    writeFileSync(conf, `${lines.join('\n')}\n`);
  }
  return [bin, conf];
}

/** Each redis cache node the config names: the first region of its service is the primary. */
export function redisNodes(config: Config, home: string): Map<string, RedisNodeSpec> {
  const nodes = new Map<string, RedisNodeSpec>();
  for (const svc of config.services) {
    if (svc.cache?.provider !== 'redis') continue;
    const cache = svc.cache;
    const first = cache.regions[svc.regions[0]!]!;
    for (const region of svc.regions) {
      const r = cache.regions[region]!;
      nodes.set(`redis:${svc.name}:${region}`, {
        region,
        host: r.host,
        port: r.port,
        dir: join(home, 'redis', svc.name, region),
        ...(region === svc.regions[0] ? {} : { replicaOf: { host: first.host, port: first.port } }),
      });
    }
  }
  return nodes;
}

/**
 * Starts every cache node that is not running, recorded in the stack's processes (stack down
 * stops them with the rest). Returns an outcome per node.
 */
export async function upRedis(
  config: Config,
  state: StackState,
  home: string,
  live: (state: StackState, name: string) => unknown,
  onProgress?: (line: string) => void,
): Promise<Map<string, { action?: string; error?: string }>> {
  const out = new Map<string, { action?: string; error?: string }>();
  const nodes = redisNodes(config, home);
  if (nodes.size === 0) return out;
  let bin: string;
  try {
    bin = await ensureRedisServer({ onProgress });
  } catch (err) {
    for (const name of nodes.keys()) out.set(name, { error: (err as Error).message });
    return out;
  }
  for (const [name, node] of nodes) {
    if (live(state, name)) continue;
    try {
      const rec = await spawnDetached(redisArgv(bin, node), {
        log: join(home, 'logs', `${name.replace(/:/g, '-')}.log`),
      });
      state.processes[name] = { ...rec, address: `${node.host}:${node.port}` };
      out.set(name, {
        action: `started on ${node.host}:${node.port}${node.replicaOf ? `, replica of ${node.replicaOf.host}:${node.replicaOf.port}` : ''}`,
      });
    } catch (err) {
      out.set(name, { error: (err as Error).message });
    }
  }
  return out;
}
