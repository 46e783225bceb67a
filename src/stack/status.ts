// `stack status`: every component of the config's stack, with its address and health as the
// live process or server reports it (not as stack.json remembers it).
import type { Config } from '../lib/config/schema';
import { isInitialised, logFile, postmasterPid, type PgNode } from '../lib/postgres/node';
import { stateDir } from '../lib/paths';
import { httpStatus, tcpOpen } from '../lib/net';
import { motoHealthy, motoUrl } from './moto';
import { pgMembers, probePg } from './postgres';
import { isAlive, isOurs, logTail } from './process';
import { readState, type RecordedProcess, type StackState } from './state';
import { missingSearchAttributes } from './temporal';
import { CODEC_SERVER, codecServerAnswers, codecServerReady, codecServerUrl } from './codec';
import { appComponentName, appReady, appUrl } from './app';
import { appStatus } from '../demo/app';
import { workerComponentName, workerReady, workerRegions, workerSkipReason } from './workers';
import { monitoringStatus } from './monitoring/status';
import { isReplicated, replicatedStatus } from './replicated';

/** Temporal and moto listen on loopback only: the stack is for one machine. */
export const STACK_HOST = '127.0.0.1';

export type Health = 'up' | 'down' | 'skipped';

export interface ComponentStatus {
  name: string;
  kind:
    | 'temporal'
    | 'temporal-ui'
    | 'moto'
    | 'postgres'
    | 'worker'
    | 'codec-server'
    | 'app'
    | 'prometheus'
    | 'alertmanager'
    | 'blackbox'
    | 'postgres-exporter'
    | 'intake';
  address: string | null;
  pid: number | null;
  health: Health;
  /** Why it is down or skipped, or a warning about it. */
  detail?: string;
  log?: string;
  /** What `stack up` did: 'started', 'already running', 'initialised as primary', … (up only). */
  action?: string;
  // PostgreSQL nodes
  service?: string;
  region?: string;
  role?: 'primary' | 'standby';
  /** Temporal clusters of a replicated control plane: whether the namespace is active in this one. */
  controlPlane?: 'active' | 'standby';
  /** Standbys: the WAL receiver is streaming. */
  streaming?: boolean;
  /** Standbys: where the WAL receiver streams from (host:port). */
  upstream?: string;
  /** Primaries: standbys streaming from it (their application_name, the region). */
  replicas?: string[];
  dataDir?: string;
}

export interface StackStatus {
  components: ComponentStatus[];
  temporalUi: string;
  stateDir: string;
  config?: string;
}

export interface StackContext {
  config: Config;
  /** Absolute path of the config file (passed on to the workers). */
  configFile: string;
  /** State directory; stateDir() when absent. */
  home?: string;
}

export function temporalAddress(config: Config): string {
  return `${STACK_HOST}:${config.stack.temporalPort}`;
}

export function temporalUiUrl(config: Config): string {
  return `http://${STACK_HOST}:${config.stack.temporalUiPort}`;
}

/** The recorded process, when it is still the one we started. */
export function liveProcess(state: StackState, name: string): RecordedProcess | undefined {
  const rec = state.processes[name];
  return rec && isOurs(rec) ? rec : undefined;
}

/** The postmaster's pid when one runs for this data directory. */
export function livePostmaster(node: PgNode): number | undefined {
  if (!isInitialised(node)) return undefined;
  const pid = postmasterPid(node);
  return pid !== undefined && isAlive(pid) ? pid : undefined;
}

async function notOursDetail(host: string, port: number): Promise<string> {
  return (await tcpOpen(host, port, 500)) ? `not running (port ${port} is used by another process)` : 'not running';
}

async function temporalStatus(ctx: StackContext, state: StackState): Promise<ComponentStatus[]> {
  const { config } = ctx;
  const rec = liveProcess(state, 'temporal');
  const log = state.processes.temporal?.log;
  const pid = rec?.pid ?? null;
  const server: ComponentStatus = {
    name: 'temporal',
    kind: 'temporal',
    address: temporalAddress(config),
    pid,
    health: 'down',
    ...(log ? { log } : {}),
  };
  const ui: ComponentStatus = {
    name: 'temporal-ui',
    kind: 'temporal-ui',
    address: temporalUiUrl(config),
    pid,
    health: 'down',
    ...(log ? { log } : {}),
  };
  if (!rec) {
    server.detail = await notOursDetail(STACK_HOST, config.stack.temporalPort);
    ui.detail = 'temporal is not running';
    return [server, ui];
  }
  try {
    const missing = await missingSearchAttributes(STACK_HOST, config.stack.temporalPort, config.temporal.namespace);
    server.health = 'up';
    if (missing.length) server.detail = `search attributes not registered: ${missing.join(', ')} (run stack up)`;
  } catch (err) {
    server.detail = `pid ${rec.pid} runs but does not answer: ${(err as Error).message}; last log: ${logTail(rec.log, rec.logOffset)}`;
  }
  const code = await httpStatus(`${temporalUiUrl(config)}/`);
  if (code === 200) ui.health = 'up';
  else ui.detail = code === undefined ? 'Web UI does not answer' : `Web UI answers HTTP ${code}`;
  // A server started before the stack had a codec server shows sealed payloads only.
  if (ui.health === 'up' && !rec.argv.includes('--ui-codec-endpoint')) {
    ui.detail =
      'started without the codec endpoint: payloads show encrypted; restart with `regionshift stack down && regionshift stack up`';
  }
  return [server, ui];
}

async function motoStatus(ctx: StackContext, state: StackState): Promise<ComponentStatus> {
  const port = ctx.config.stack.motoPort;
  const rec = liveProcess(state, 'moto');
  const log = state.processes.moto?.log;
  const s: ComponentStatus = {
    name: 'moto',
    kind: 'moto',
    address: motoUrl(STACK_HOST, port),
    pid: rec?.pid ?? null,
    health: 'down',
    ...(log ? { log } : {}),
  };
  if (!rec) s.detail = await notOursDetail(STACK_HOST, port);
  else if (await motoHealthy(STACK_HOST, port)) s.health = 'up';
  else s.detail = `pid ${rec.pid} runs but /moto-api/ does not answer 200`;
  return s;
}

/** The service's databases that are up as primaries. */
function primariesOf(nodes: ComponentStatus[], service: string | undefined): ComponentStatus[] {
  return nodes.filter((n) => n.service === service && n.health === 'up' && n.role === 'primary');
}

/** Two writable primaries in one service: a former primary came back without being rejoined. */
function flagSplitBrain(nodes: ComponentStatus[]): void {
  for (const service of new Set(nodes.map((n) => n.service))) {
    const primaries = primariesOf(nodes, service);
    if (primaries.length < 2) continue;
    const regions = primaries.map((p) => p.region).join(', ');
    for (const p of primaries) {
      p.detail = `warning: ${service} has ${primaries.length} primaries (${regions}); rejoin the former primary as a standby`;
    }
  }
}

async function postgresStatus(ctx: StackContext): Promise<ComponentStatus[]> {
  const nodes = await Promise.all(
    pgMembers(ctx.config).map(async (m): Promise<ComponentStatus> => {
      const pid = livePostmaster(m.node);
      const s: ComponentStatus = {
        name: m.name,
        kind: 'postgres',
        address: `${m.node.host}:${m.node.port}`,
        pid: pid ?? null,
        health: 'down',
        service: m.service,
        region: m.region,
        dataDir: m.node.dataDir,
        log: logFile(m.node),
      };
      if (pid === undefined) {
        s.detail = isInitialised(m.node) ? 'not running' : 'not initialised (stack up creates it)';
        return s;
      }
      try {
        const probe = await probePg(m.node);
        s.health = 'up';
        s.role = probe.role;
        if (probe.role === 'standby') {
          s.streaming = probe.streaming ?? false;
          if (probe.upstream) s.upstream = probe.upstream;
        } else {
          s.replicas = probe.replicas ?? [];
        }
      } catch (err) {
        s.detail = `postmaster ${pid} runs but does not answer: ${(err as Error).message}`;
      }
      return s;
    }),
  );
  flagSplitBrain(nodes);
  return nodes;
}

function workerStatus(ctx: StackContext, state: StackState): ComponentStatus[] {
  const skip = workerSkipReason();
  return workerRegions(ctx.config).map((region): ComponentStatus => {
    const name = workerComponentName(region);
    const s: ComponentStatus = { name, kind: 'worker', address: null, pid: null, health: 'down', region };
    if (skip) return { ...s, health: 'skipped', detail: skip };
    const recorded = state.processes[name];
    if (recorded) s.log = recorded.log;
    const rec = liveProcess(state, name);
    if (!rec) return { ...s, detail: 'not running' };
    s.pid = rec.pid;
    if (workerReady(rec)) s.health = 'up';
    else s.detail = `pid ${rec.pid} runs but has not printed "regionshift worker ready"`;
    return s;
  });
}

async function codecServerStatus(ctx: StackContext, state: StackState): Promise<ComponentStatus> {
  const s: ComponentStatus = {
    name: CODEC_SERVER,
    kind: 'codec-server',
    address: codecServerUrl(ctx.config),
    pid: null,
    health: 'down',
  };
  const skip = workerSkipReason();
  if (skip) return { ...s, health: 'skipped', detail: skip };
  const recorded = state.processes[CODEC_SERVER];
  if (recorded) s.log = recorded.log;
  const rec = liveProcess(state, CODEC_SERVER);
  if (!rec) return { ...s, detail: await notOursDetail(STACK_HOST, ctx.config.stack.codecServerPort) };
  s.pid = rec.pid;
  if (!codecServerReady(rec)) s.detail = `pid ${rec.pid} runs but has not printed that it is ready`;
  else if (await codecServerAnswers(ctx.config)) s.health = 'up';
  else s.detail = `pid ${rec.pid} runs but POST /decode does not answer`;
  return s;
}

/**
 * The demo application (stack.app), when the config has one. It writes where it was last told; a
 * region whose database is not the writer refuses every write, so that is said with the fix.
 */
async function demoAppStatus(
  ctx: StackContext,
  state: StackState,
  databases: Promise<ComponentStatus[]>,
): Promise<ComponentStatus[]> {
  const app = ctx.config.stack.app;
  if (!app) return [];
  const name = appComponentName(app.service);
  const s: ComponentStatus = {
    name,
    kind: 'app',
    address: appUrl(ctx.config)!,
    pid: null,
    health: 'down',
    service: app.service,
  };
  const skip = workerSkipReason();
  if (skip) return [{ ...s, health: 'skipped', detail: skip }];
  const recorded = state.processes[name];
  if (recorded) s.log = recorded.log;
  const rec = liveProcess(state, name);
  if (!rec) return [{ ...s, detail: await notOursDetail(STACK_HOST, app.port) }];
  s.pid = rec.pid;
  if (!appReady(rec)) return [{ ...s, detail: `pid ${rec.pid} runs but has not printed that it is ready` }];
  try {
    const st = await appStatus(s.address!);
    const writers = primariesOf(await databases, app.service);
    const writer = writers.length === 1 ? writers[0]!.region : undefined;
    const detail =
      writer && writer !== st.primary
        ? `warning: writing to ${st.primary}, but the writer is ${writer}: curl -sS -X POST ${s.address}/primary -H 'Idempotency-Key: by-hand-${Date.now()}' -d '{"primary":"${writer}"}'`
        : `writing to ${st.primary}`;
    return [{ ...s, health: 'up', detail }];
  } catch (err) {
    return [{ ...s, detail: `pid ${rec.pid} runs but GET /status fails: ${(err as Error).message}` }];
  }
}

export async function stackStatus(ctx: StackContext): Promise<StackStatus> {
  const home = ctx.home ?? stateDir();
  const state = readState(home);
  const databases = postgresStatus(ctx);
  const [temporal, moto, postgres, codec, app, monitoring] = await Promise.all([
    isReplicated(ctx.config)
      ? replicatedStatus(ctx.config, home, state, (name) => liveProcess(state, name))
      : temporalStatus(ctx, state),
    motoStatus(ctx, state),
    databases,
    codecServerStatus(ctx, state),
    demoAppStatus(ctx, state, databases),
    monitoringStatus(ctx.config, home, ctx.configFile, state, liveProcess),
  ]);
  return {
    components: [...temporal, moto, ...postgres, ...workerStatus(ctx, state), codec, ...app, ...monitoring],
    temporalUi: temporalUiUrl(ctx.config),
    stateDir: home,
    config: ctx.configFile,
  };
}
