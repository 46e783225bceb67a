// `stack up`: start what is not running, leave what runs alone. Ports and prerequisites are
// checked before anything starts, so a refusal leaves the machine as it was.
import { join } from 'node:path';
import { PrerequisiteError, logFile } from '../lib/postgres/node';
import { stateDir } from '../lib/paths';
import { httpStatus, isPortFree, listenerOf } from '../lib/net';
import { ensureMoto, motoArgv, motoHealthy, motoUrl } from './moto';
import { seedTraffic, stackWriter } from './traffic';
import { bringUpService, ensurePgBin, pgMembers, waitUntilStreaming, type PgMember } from './postgres';
import { ensureSshKeygen } from './ssh';
import { isAlive, logTail, spawnDetached, type ProcessRecord } from './process';
import { StackBusyError, acquireLock, readState, writeState, type StackState } from './state';
import {
  STACK_HOST,
  livePostmaster,
  liveProcess,
  stackStatus,
  temporalAddress,
  temporalUiUrl,
  type ComponentStatus,
  type StackContext,
} from './status';
import { ensureTemporalCli, missingSearchAttributes, registerSearchAttributes, temporalArgv } from './temporal';
import { CODEC_SERVER, codecServerArgv, codecServerReady, codecServerUrl, stackCodecEnv } from './codec';
import { waitUntil } from './wait';
import { isReplicated, replicatedPorts, upReplicated } from './replicated';
import { monitoringPorts, prepareMonitoring, upMonitoring } from './monitoring/up';
import { upRedis } from './redis';
import { appArgv, appComponentName, appReady, appUrl } from './app';
import { workerArgv, workerComponentName, workerEnv, workerReady, workerRegions, workerSkipReason } from './workers';

/** A port the stack needs is taken by a process that is not part of it. */
export class PortInUseError extends PrerequisiteError {
  override name = 'PortInUseError';
}

export interface UpOptions extends StackContext {
  /** Progress lines for a person waiting ("starting temporal on …"). */
  onProgress?: (line: string) => void;
}

export interface UpResult {
  components: ComponentStatus[];
  temporalUi: string;
  /** Every component is up or skipped. */
  ok: boolean;
  /** Nothing had to be started. */
  nothingStarted: boolean;
}

const TEMPORAL_READY_MS = 90_000;
const MOTO_READY_MS = 60_000;
const WORKER_READY_MS = 90_000;

interface Outcome {
  action?: string;
  error?: string;
}

function exitedReason(rec: ProcessRecord): () => string | undefined {
  return () =>
    isAlive(rec.pid)
      ? undefined
      : `exited during start: ${logTail(rec.log, rec.logOffset) || '(no output)'} (log: ${rec.log})`;
}

async function checkPorts(ctx: StackContext, state: StackState, members: PgMember[]): Promise<void> {
  const { config } = ctx;
  const file = ctx.configFile;
  const wanted: Array<{ host: string; port: number; component: string; setting: string }> = [];
  if (isReplicated(config)) {
    wanted.push(...replicatedPorts(config, ctx.home ?? stateDir(), (name) => liveProcess(state, name)));
  } else if (!liveProcess(state, 'temporal')) {
    wanted.push({
      host: STACK_HOST,
      port: config.stack.temporalPort,
      component: 'temporal',
      setting: 'stack.temporalPort',
    });
    wanted.push({
      host: STACK_HOST,
      port: config.stack.temporalUiPort,
      component: 'temporal-ui',
      setting: 'stack.temporalUiPort',
    });
  }
  if (!liveProcess(state, 'moto')) {
    wanted.push({ host: STACK_HOST, port: config.stack.motoPort, component: 'moto', setting: 'stack.motoPort' });
  }
  const app = config.stack.app;
  if (app && !liveProcess(state, appComponentName(app.service)) && !workerSkipReason()) {
    wanted.push({
      host: STACK_HOST,
      port: app.port,
      component: appComponentName(app.service),
      setting: 'stack.app.port',
    });
  }
  if (!liveProcess(state, CODEC_SERVER) && !workerSkipReason()) {
    wanted.push({
      host: STACK_HOST,
      port: config.stack.codecServerPort,
      component: CODEC_SERVER,
      setting: 'stack.codecServerPort',
    });
  }
  for (const m of members) {
    if (livePostmaster(m.node) !== undefined) continue;
    wanted.push({
      host: m.node.host,
      port: m.node.port,
      component: m.name,
      setting: `the port of ${m.region} in service ${m.service}'s database.regions`,
    });
  }
  wanted.push(...monitoringPorts(config, ctx.home ?? stateDir(), file, state, liveProcess));
  const seen = new Map<number, string>();
  const problems: string[] = [];
  for (const w of wanted) {
    const other = seen.get(w.port);
    if (other) {
      problems.push(
        `port ${w.port} is configured for both ${other} and ${w.component}; set ${w.setting} in ${file} to another port`,
      );
      continue;
    }
    seen.set(w.port, w.component);
    if (!(await isPortFree(w.host, w.port))) {
      const holder = listenerOf(w.port);
      const who = holder ? ` (pid ${holder.pid}: ${holder.command})` : '';
      problems.push(
        `port ${w.port} (${w.component}) is in use by another process${who}; free it or set ${w.setting} in ${file}`,
      );
    }
  }
  if (problems.length) throw new PortInUseError(`${problems.join('\n')}\nnothing was started`);
}

async function upTemporal(ctx: UpOptions, state: StackState, home: string, bin: string | undefined): Promise<Outcome> {
  const { config } = ctx;
  const port = config.stack.temporalPort;
  const namespace = config.temporal.namespace;
  let rec = liveProcess(state, 'temporal');
  let action = 'already running';
  if (!rec) {
    if (!bin) return { error: 'no Temporal CLI binary' };
    ctx.onProgress?.(`starting temporal on ${temporalAddress(config)}…`);
    const argv = temporalArgv(bin, {
      host: STACK_HOST,
      port,
      uiPort: config.stack.temporalUiPort,
      dbFile: join(home, 'temporal.db'),
      namespace,
      codecEndpoint: codecServerUrl(config),
    });
    rec = {
      ...(await spawnDetached(argv, { log: join(home, 'logs', 'temporal.log') })),
      address: temporalAddress(config),
    };
    state.processes.temporal = rec;
    writeState(state, home);
    action = 'started';
  }
  const started = rec;
  try {
    const missing = await waitUntil(async () => missingSearchAttributes(STACK_HOST, port, namespace), {
      what: `temporal on ${temporalAddress(config)}`,
      timeoutMs: TEMPORAL_READY_MS,
      intervalMs: 250,
      abort: exitedReason(started),
    });
    await registerSearchAttributes(STACK_HOST, port, namespace, missing);
    await waitUntil(async () => (await httpStatus(`${temporalUiUrl(config)}/`)) === 200, {
      what: `Temporal UI on ${temporalUiUrl(config)}`,
      timeoutMs: 30_000,
      abort: exitedReason(started),
    });
    return { action };
  } catch (err) {
    return { action, error: (err as Error).message };
  }
}

async function upMoto(ctx: UpOptions, state: StackState, home: string, server: string | undefined): Promise<Outcome> {
  const port = ctx.config.stack.motoPort;
  let rec = liveProcess(state, 'moto');
  let action = 'already running';
  if (!rec) {
    if (!server) return { error: 'no moto_server' };
    ctx.onProgress?.(`starting moto on ${motoUrl(STACK_HOST, port)}…`);
    rec = {
      ...(await spawnDetached(motoArgv(server, STACK_HOST, port), { log: join(home, 'logs', 'moto.log') })),
      address: motoUrl(STACK_HOST, port),
    };
    state.processes.moto = rec;
    writeState(state, home);
    action = 'started';
  }
  try {
    await waitUntil(() => motoHealthy(STACK_HOST, port), {
      what: `moto on ${motoUrl(STACK_HOST, port)}`,
      timeoutMs: MOTO_READY_MS,
      abort: exitedReason(rec),
    });
    return { action };
  } catch (err) {
    return { action, error: (err as Error).message };
  }
}

async function upPostgres(
  ctx: UpOptions,
  state: StackState,
  home: string,
  members: PgMember[],
  bins: Map<PgMember, string>,
): Promise<Map<string, Outcome>> {
  const out = new Map<string, Outcome>();
  const services = [...new Set(members.map((m) => m.service))];
  await Promise.all(
    services.map(async (service) => {
      const own = members.filter((m) => m.service === service);
      const results = await bringUpService(own, (m) => bins.get(m) as string, ctx.onProgress);
      for (const r of results) {
        const m = r.member;
        if (r.touched || state.postgres[m.name]) {
          state.postgres[m.name] = {
            region: m.region,
            dataDir: m.node.dataDir,
            host: m.node.host,
            port: m.node.port,
            bin: bins.get(m) as string,
            log: logFile(m.node),
          };
        }
        const outcome: Outcome = { ...(r.action ? { action: r.action } : {}), ...(r.error ? { error: r.error } : {}) };
        if (!r.error) {
          try {
            await waitUntilStreaming(m.node);
          } catch (err) {
            outcome.error = `${(err as Error).message}; log ${logFile(m.node)}`;
          }
        }
        out.set(m.name, outcome);
      }
      writeState(state, home);
    }),
  );
  return out;
}

/** A detached process of the stack, started unless it is running already, then waited for until ready. */
async function upDetached(
  ctx: UpOptions,
  state: StackState,
  home: string,
  p: {
    name: string;
    what: string;
    address: string;
    argv: string[];
    log: string;
    env?: NodeJS.ProcessEnv;
    ready(rec: ProcessRecord): boolean | Promise<boolean>;
  },
): Promise<Outcome> {
  let rec = liveProcess(state, p.name);
  let action = 'already running';
  if (!rec) {
    ctx.onProgress?.(`starting ${p.what} on ${p.address}…`);
    rec = {
      ...(await spawnDetached(p.argv, { log: join(home, 'logs', p.log), ...(p.env ? { env: p.env } : {}) })),
      address: p.address,
    };
    state.processes[p.name] = rec;
    writeState(state, home);
    action = 'started';
  }
  const started = rec;
  try {
    await waitUntil(async () => p.ready(started), {
      what: p.name,
      timeoutMs: WORKER_READY_MS,
      intervalMs: 250,
      abort: exitedReason(started),
    });
    return { action };
  } catch (err) {
    return { action, error: (err as Error).message };
  }
}

async function upWorker(
  ctx: UpOptions,
  state: StackState,
  home: string,
  region: string,
  codecEnv: Record<string, string>,
): Promise<Outcome> {
  const name = workerComponentName(region);
  let rec = liveProcess(state, name);
  let action = 'already running';
  if (!rec) {
    ctx.onProgress?.(`starting ${name}…`);
    const argv = workerArgv(region);
    // Replicated: no TEMPORAL_ADDRESS, so the worker polls its own region's cluster (src/cli/worker.ts).
    const env = workerEnv(ctx.configFile, isReplicated(ctx.config) ? undefined : temporalAddress(ctx.config), codecEnv);
    rec = {
      ...(await spawnDetached(argv, { log: join(home, 'logs', `worker-${region}.log`), env })),
      address: `region.${region}`,
    };
    state.processes[name] = rec;
    writeState(state, home);
    action = 'started';
  }
  const started = rec;
  try {
    await waitUntil(async () => workerReady(started), {
      what: name,
      timeoutMs: WORKER_READY_MS,
      intervalMs: 250,
      abort: exitedReason(started),
    });
    return { action };
  } catch (err) {
    return { action, error: (err as Error).message };
  }
}

/** One state directory holds one stack: mixing two configs' processes would confuse every later command. */
function refuseOtherConfig(state: StackState, configFile: string, home: string): void {
  if (!state.config || state.config === configFile) return;
  const running =
    Object.keys(state.processes).some((name) => liveProcess(state, name)) ||
    Object.values(state.postgres).some(
      (pg) => livePostmaster({ region: pg.region, dataDir: pg.dataDir, host: pg.host, port: pg.port }) !== undefined,
    );
  if (running) {
    throw new StackBusyError(
      `a stack brought up from ${state.config} is running in ${home}; run \`regionshift stack down\` first, or set REGIONSHIFT_HOME to another folder for this config`,
    );
  }
}

/** Brings the stack up. Throws PrerequisiteError (nothing started) for taken ports and missing tools. */
export async function stackUp(ctx: UpOptions): Promise<UpResult> {
  const home = ctx.home ?? stateDir();
  const release = acquireLock(home);
  try {
    const state = readState(home);
    refuseOtherConfig(state, ctx.configFile, home);
    state.config = ctx.configFile;
    const members = pgMembers(ctx.config);
    await checkPorts(ctx, state, members);

    const progress = (line: string) => ctx.onProgress?.(line);
    const codec = stackCodecEnv(home);
    if (codec.note) progress(codec.note);
    const replicated = isReplicated(ctx.config);
    const temporalBin =
      replicated || liveProcess(state, 'temporal') ? undefined : await ensureTemporalCli({ onProgress: progress });
    const motoServer = liveProcess(state, 'moto') ? undefined : await ensureMoto({ onProgress: progress });
    const bins = new Map<PgMember, string>();
    for (const m of members) bins.set(m, m.pgBin ?? (await ensurePgBin({ onProgress: progress })));
    // The control workers verify decisions with it.
    await ensureSshKeygen({ onProgress: progress });
    const monitoring = await prepareMonitoring(ctx.config, home, ctx.configFile, progress);

    const [clusters, moto, pg] = await Promise.all([
      replicated
        ? upReplicated(ctx.config, state, home, (name) => liveProcess(state, name), progress)
        : upTemporal(ctx, state, home, temporalBin).then(
            (t) =>
              new Map([
                ['temporal', t],
                ['temporal-ui', t],
              ]),
          ),
      upMoto(ctx, state, home, motoServer),
      upPostgres(ctx, state, home, members, bins),
    ]);
    const temporal: Outcome = {
      ...(replicated ? {} : clusters.get('temporal')),
      ...([...clusters.values()].find((o) => o.error) ?? {}),
    };
    const outcomes = new Map<string, Outcome>([...clusters, ['moto', moto], ...pg]);
    // Services with a redis cache: one server per region (src/stack/redis.ts).
    for (const [name, o] of await upRedis(ctx.config, state, home, liveProcess, progress)) outcomes.set(name, o);
    if (!moto.error) {
      await seedTraffic(ctx.config, progress).catch((err: Error) => {
        outcomes.set('moto', {
          ...moto,
          error: `moto is up but the Route 53 records could not be created: ${err.message}`,
        });
      });
    }

    if (!workerSkipReason()) {
      const regions = workerRegions(ctx.config);
      const blocked = temporal.error ? 'not started: temporal is not up' : undefined;
      const app = ctx.config.stack.app;
      await Promise.all([
        // The codec server the Temporal UI decrypts payloads through, started like a worker: the built CLI.
        upDetached(ctx, state, home, {
          name: CODEC_SERVER,
          what: 'the codec server',
          address: codecServerUrl(ctx.config),
          argv: codecServerArgv(ctx.configFile),
          log: 'codec-server.log',
          env: { ...process.env, ...codec.env },
          ready: codecServerReady,
        }).then((o) => outcomes.set(CODEC_SERVER, o)),
        ...(app
          ? [
              // The demo application needs only its service's databases, which are up by now.
              stackWriter(ctx.config.services.find((s) => s.name === app.service)!)
                .then((writer) =>
                  upDetached(ctx, state, home, {
                    name: appComponentName(app.service),
                    what: 'the demo application',
                    address: appUrl(ctx.config)!,
                    argv: appArgv(ctx.configFile, writer),
                    log: `app-${app.service}.log`,
                    ready: appReady,
                  }),
                )
                .then((o) => outcomes.set(appComponentName(app.service), o)),
            ]
          : []),
        ...regions.map(async (region) => {
          const outcome = blocked ? { error: blocked } : await upWorker(ctx, state, home, region, codec.env);
          outcomes.set(workerComponentName(region), outcome);
        }),
      ]);
    }
    if (monitoring) {
      const mon = await upMonitoring(monitoring, {
        config: ctx.config,
        configFile: ctx.configFile,
        home,
        state,
        live: liveProcess,
        // Replicated: the intake finds the active cluster itself.
        ...(isReplicated(ctx.config) ? {} : { temporalAddress: temporalAddress(ctx.config) }),
        ...(temporal.error ? { temporalError: temporal.error } : {}),
        codecEnv: codec.env,
        onProgress: progress,
      });
      for (const [name, o] of mon) outcomes.set(name, o);
    }
    writeState(state, home);

    const status = await stackStatus({ ...ctx, home });
    for (const c of status.components) {
      const o = outcomes.get(c.name);
      if (!o) continue;
      if (o.action) c.action = o.action;
      // The start error says more than a later probe; a component that failed to start is down
      // even if it answers by now.
      if (o.error) {
        c.health = 'down';
        c.detail = o.error;
      }
    }
    const ok = status.components.every((c) => c.health !== 'down');
    const nothingStarted = [...outcomes.values()].every((o) => o.action === 'already running');
    return { components: status.components, temporalUi: status.temporalUi, ok, nothingStarted };
  } finally {
    release();
  }
}
