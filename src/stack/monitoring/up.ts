// `stack up` / `stack status` for the monitoring that closes the alarm loop: the blackbox exporters
// (one vantage point per region), the PostgreSQL exporters, Prometheus, Alertmanager and the
// stack's `regionshift intake`. Files are generated and checked (promtool, amtool) before any
// process starts, so a broken rules file refuses the whole `up` with nothing started.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PrerequisiteError } from '../../lib/postgres/node';
import { REPO_ROOT } from '../../lib/paths';
import type { Config } from '../../lib/config/schema';
import { httpStatus } from '../../lib/net';
import { isAlive, logSince, logTail, spawnDetached, type ProcessRecord } from '../process';
import { writeState, type RecordedProcess, type StackState } from '../state';
import { waitUntil } from '../wait';
import { workerSkipReason } from '../workers';
import { ensureMonitoringBins, type MonitoringBins } from './bins';
import {
  ALERTMANAGER,
  INTAKE,
  PROMETHEUS,
  alertmanagerToken,
  alertmanagerUrl,
  exporterUrl,
  intakeUrl,
  monitoringEnabled,
  monitoringPlan,
  pgExporterEnv,
  prometheusUrl,
  writeMonitoringFiles,
  type MonitoringPlan,
} from './config';

const HOST = '127.0.0.1';
const READY_MS = 60_000;
/** Printed by `regionshift intake` once it listens (src/cli/intake.ts). */
export const INTAKE_READY_LINE = 'regionshift intake ready';

/** A rules file or a generated config that Prometheus or Alertmanager would refuse. */
export class MonitoringConfigError extends PrerequisiteError {
  override name = 'MonitoringConfigError';
}

export interface MonitoringOutcome {
  action?: string;
  error?: string;
}

export interface PreparedMonitoring {
  plan: MonitoringPlan;
  bins: MonitoringBins;
  tokenEnv: string;
  token: string;
}

type Live = (state: StackState, name: string) => RecordedProcess | undefined;

/** The ports monitoring needs, for up's port check (entries for processes not already running). */
export function monitoringPorts(
  config: Config,
  home: string,
  configFile: string,
  state: StackState,
  live: Live,
): Array<{ host: string; port: number; component: string; setting: string }> {
  if (!monitoringEnabled(config)) return [];
  const plan = monitoringPlan(config, home, configFile);
  const out: Array<{ host: string; port: number; component: string; setting: string }> = [];
  const want = (component: string, port: number, setting: string) => {
    if (!live(state, component)) out.push({ host: HOST, port, component, setting });
  };
  want(PROMETHEUS, plan.prometheus.port, 'stack.monitoring.prometheusPort');
  want(ALERTMANAGER, plan.alertmanager.port, 'stack.monitoring.alertmanagerPort');
  plan.vantagePoints.forEach((vp, i) =>
    want(vp.name, vp.port, `stack.monitoring.blackboxPort (+${i} for ${vp.region})`),
  );
  plan.exporters.forEach((e, i) =>
    want(e.name, e.port, `stack.monitoring.postgresExporterPort (+${i} for ${e.service} in ${e.region})`),
  );
  if (!workerSkipReason())
    want(
      INTAKE,
      plan.intake.port,
      config.stack.monitoring.intakePort !== undefined
        ? 'stack.monitoring.intakePort'
        : 'triggers.intake.port (or stack.monitoring.intakePort)',
    );
  return out;
}

function check(cmd: string, args: string[], what: string): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.status === 0) return undefined;
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^Checking /.test(l) && !/SUCCESS/.test(l));
  return `${what}: ${text.slice(0, 6).join(' | ') || `${cmd} exited ${r.status ?? r.signal}`}`;
}

/**
 * Installs what is missing, writes the configs and checks them. Throws MonitoringConfigError
 * naming the file and what is wrong in it; nothing has been started then.
 */
export async function prepareMonitoring(
  config: Config,
  home: string,
  configFile: string,
  onProgress?: (line: string) => void,
): Promise<PreparedMonitoring | undefined> {
  if (!monitoringEnabled(config)) return undefined;
  const plan = monitoringPlan(config, home, configFile);
  const bins = await ensureMonitoringBins({ onProgress });
  const problems: string[] = [];
  for (const r of plan.configuredRuleFiles) {
    const why = check(
      bins.promtool,
      ['check', 'rules', r.path],
      `alert rules file ${r.path} (stack.monitoring.ruleFiles: ${r.given} in ${configFile})`,
    );
    if (why) problems.push(why);
  }
  if (problems.length)
    throw new MonitoringConfigError(
      `${problems.join('\n')}\nfix the file or remove it from stack.monitoring.ruleFiles; nothing was started`,
    );
  const { tokenEnv, token } = alertmanagerToken(config, plan);
  writeMonitoringFiles(config, plan, token);
  // The shipped rules and the generated files are ours: a failure here is a bug, said as such.
  const ours = [
    check(
      bins.promtool,
      ['check', 'config', plan.prometheus.configFile],
      `generated ${plan.prometheus.configFile} (with the rules in ${join(REPO_ROOT, 'runbooks', 'alerts')})`,
    ),
    check(bins.amtool, ['check-config', plan.alertmanager.configFile], `generated ${plan.alertmanager.configFile}`),
  ].filter((p): p is string => p !== undefined);
  if (ours.length)
    throw new MonitoringConfigError(
      `${ours.join('\n')}\nthis is a regionshift bug (please report it); set stack.monitoring.enabled: false to start the stack without monitoring; nothing was started`,
    );
  return { plan, bins, tokenEnv, token };
}

function exitedReason(rec: ProcessRecord): () => string | undefined {
  return () =>
    isAlive(rec.pid)
      ? undefined
      : `exited during start: ${logTail(rec.log, rec.logOffset) || '(no output)'} (log: ${rec.log})`;
}

async function startOne(
  state: StackState,
  home: string,
  name: string,
  live: Live,
  onProgress: ((line: string) => void) | undefined,
  spec: {
    argv: string[];
    log: string;
    address: string;
    env?: NodeJS.ProcessEnv;
    ready: (rec: ProcessRecord) => Promise<boolean>;
    reloadUrl?: string;
  },
): Promise<MonitoringOutcome> {
  let rec: ProcessRecord | undefined = live(state, name);
  let action = 'already running';
  if (rec && spec.reloadUrl) {
    // The files were just rewritten (a rules file or a port in the config may have changed).
    const res = await fetch(spec.reloadUrl, { method: 'POST', signal: AbortSignal.timeout(5_000) }).catch(
      (err: Error) => err,
    );
    if (res instanceof Error || !res.ok) {
      const why = res instanceof Error ? res.message : `HTTP ${res.status} ${(await res.text()).trim().slice(0, 300)}`;
      return { action, error: `running, but could not reload its config (${why}); see ${spec.log}` };
    }
  }
  if (!rec) {
    onProgress?.(`starting ${name} on ${spec.address}…`);
    const started = { ...(await spawnDetached(spec.argv, { log: spec.log, env: spec.env })), address: spec.address };
    state.processes[name] = started;
    writeState(state, home);
    rec = started;
    action = 'started';
  }
  const r = rec;
  try {
    await waitUntil(async () => spec.ready(r), {
      what: name,
      timeoutMs: READY_MS,
      intervalMs: 200,
      abort: exitedReason(r),
    });
    return { action };
  } catch (err) {
    return { action, error: (err as Error).message };
  }
}

const answers200 = (url: string) => async () => (await httpStatus(url, 1_000)) === 200;

/**
 * Starts the exporters, Prometheus, Alertmanager and (once Temporal is up) the intake. Returns an
 * outcome per component; none throws.
 */
export async function upMonitoring(
  prepared: PreparedMonitoring,
  opts: {
    config: Config;
    configFile: string;
    home: string;
    state: StackState;
    live: Live;
    temporalAddress?: string;
    temporalError?: string;
    codecEnv: Record<string, string>;
    onProgress?: (line: string) => void;
  },
): Promise<Map<string, MonitoringOutcome>> {
  const { plan, bins } = prepared;
  const { state, home, live, onProgress } = opts;
  const logs = join(home, 'logs');
  const out = new Map<string, MonitoringOutcome>();
  const tasks: Array<Promise<void>> = [];
  const run = (name: string, spec: Parameters<typeof startOne>[5]) =>
    tasks.push(startOne(state, home, name, live, onProgress, spec).then((o) => void out.set(name, o)));

  for (const vp of plan.vantagePoints) {
    run(vp.name, {
      argv: [bins.blackbox, `--config.file=${vp.configFile}`, `--web.listen-address=${HOST}:${vp.port}`],
      log: join(logs, `blackbox-${vp.region}.log`),
      address: exporterUrl(vp.port),
      ready: answers200(`${exporterUrl(vp.port)}/metrics`),
      reloadUrl: `${exporterUrl(vp.port)}/-/reload`,
    });
  }
  for (const e of plan.exporters) {
    run(e.name, {
      // Only our queries: the default set costs a dozen queries per scrape, every second.
      argv: [
        bins.postgresExporter,
        `--web.listen-address=${HOST}:${e.port}`,
        '--no-collector.database',
        '--no-collector.bgwriter',
        '--disable-default-metrics',
        '--disable-settings-metrics',
        `--extend.query-path=${plan.queriesFile}`,
      ],
      log: join(logs, `postgres-exporter-${e.service}-${e.region}.log`),
      address: exporterUrl(e.port),
      env: pgExporterEnv(e),
      ready: answers200(`${exporterUrl(e.port)}/metrics`),
    });
  }
  run(ALERTMANAGER, {
    // No cluster port: a single Alertmanager, and a second stack on the machine must not clash on 9094.
    argv: [
      bins.alertmanager,
      `--config.file=${plan.alertmanager.configFile}`,
      `--storage.path=${plan.alertmanager.dataDir}`,
      `--web.listen-address=${HOST}:${plan.alertmanager.port}`,
      '--cluster.listen-address=',
    ],
    log: join(logs, 'alertmanager.log'),
    address: alertmanagerUrl(plan),
    ready: answers200(`${alertmanagerUrl(plan)}/-/ready`),
    reloadUrl: `${alertmanagerUrl(plan)}/-/reload`,
  });
  run(PROMETHEUS, {
    argv: [
      bins.prometheus,
      `--config.file=${plan.prometheus.configFile}`,
      `--storage.tsdb.path=${plan.prometheus.dataDir}`,
      '--storage.tsdb.retention.time=1d',
      `--web.listen-address=${HOST}:${plan.prometheus.port}`,
      '--web.enable-lifecycle',
    ],
    log: join(logs, 'prometheus.log'),
    address: prometheusUrl(plan),
    ready: answers200(`${prometheusUrl(plan)}/-/ready`),
    reloadUrl: `${prometheusUrl(plan)}/-/reload`,
  });

  const skip = workerSkipReason();
  if (skip) out.set(INTAKE, { error: skip });
  else if (opts.temporalError) out.set(INTAKE, { error: 'not started: temporal is not up' });
  else {
    run(INTAKE, {
      argv: [
        process.execPath,
        join(REPO_ROOT, 'bin', 'regionshift.js'),
        'intake',
        '--config',
        opts.configFile,
        '--host',
        HOST,
        '--port',
        String(plan.intake.port),
      ],
      log: join(logs, 'intake.log'),
      address: intakeUrl(plan),
      env: {
        ...process.env,
        ...opts.codecEnv,
        REGIONSHIFT_HOME: home,
        REGIONSHIFT_CONFIG: opts.configFile,
        ...(opts.temporalAddress ? { TEMPORAL_ADDRESS: opts.temporalAddress } : {}),
        [prepared.tokenEnv]: prepared.token,
      },
      ready: async (rec) =>
        logSince(rec.log, rec.logOffset).includes(INTAKE_READY_LINE) &&
        (await httpStatus(`${intakeUrl(plan)}/healthz`, 1_000)) === 200,
    });
  }
  await Promise.all(tasks);
  writeState(state, home);
  return out;
}
