// What the local stack's monitoring is made of, and the config files it runs from, generated into
// <state dir>/monitoring/ on every `stack up` from the service config:
//   - one blackbox exporter per region: that region's vantage point. It probes the PostgreSQL of
//     every *other* region (labels probe_from, probe_to), so the guardian can tell a dead region
//     (every vantage point agrees) from a partition (one vantage point cut off);
//   - one PostgreSQL exporter per node: replication lag and whether a standby streams;
//   - Prometheus with the rules shipped in runbooks/alerts/, Alertmanager routing every alert to
//     the stack's `regionshift intake` with its bearer token.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parse, stringify } from 'yaml';
import type { Config } from '../../lib/config/schema';
import { triggersOf } from '../../lib/config/triggers';
import { dsn, type PgNode } from '../../lib/postgres/node';
import { REPO_ROOT } from '../../lib/paths';
import { pgMembers } from '../postgres';
import { workerRegions } from '../workers';

const HOST = '127.0.0.1';

export const PROMETHEUS = 'prometheus';
export const ALERTMANAGER = 'alertmanager';
export const INTAKE = 'intake';
export const blackboxName = (region: string): string => `blackbox:${region}`;
export const pgExporterName = (service: string, region: string): string => `postgres-exporter:${service}:${region}`;

/** The alert rules shipped with regionshift. */
export const SHIPPED_RULES = join(REPO_ROOT, 'runbooks', 'alerts', 'regionshift.rules.yml');

/**
 * Scrape and evaluation every second: detection has to fit in a 10 s detected RTO (alert `for:`
 * 2 s, Alertmanager's group_wait, the guardian, then the failover itself), and on loopback with
 * a handful of targets a 1 s scrape costs little.
 */
const SCRAPE_INTERVAL = '1s';

export interface VantagePoint {
  name: string;
  region: string;
  port: number;
  configFile: string;
}

export interface PgExporter {
  name: string;
  service: string;
  region: string;
  port: number;
  node: PgNode;
}

export interface Probe {
  from: string;
  to: string;
  service: string;
  /** host:port of the PostgreSQL probed. */
  target: string;
}

export interface MonitoringPlan {
  dir: string;
  prometheus: { port: number; configFile: string; dataDir: string };
  alertmanager: { port: number; configFile: string; dataDir: string };
  intake: { port: number };
  vantagePoints: VantagePoint[];
  exporters: PgExporter[];
  probes: Probe[];
  queriesFile: string;
  budgetsFile: string;
  tokenFile: string;
  /** Every rules file Prometheus loads: the shipped one, the budgets, the config's ruleFiles. */
  ruleFiles: string[];
  /** The extra rule files as written in the config, for error messages. */
  configuredRuleFiles: Array<{ given: string; path: string }>;
}

export function monitoringEnabled(config: Config): boolean {
  return config.stack.monitoring.enabled;
}

/** The blackbox module that probes `to`: one per target region, so one path can be cut alone (partition.ts). */
export const probeModule = (to: string): string => `pg_${to}`;

export function monitoringPlan(config: Config, home: string, configFile: string): MonitoringPlan {
  const m = config.stack.monitoring;
  const dir = join(home, 'monitoring');
  const regions = workerRegions(config);
  const members = pgMembers(config);
  const vantagePoints = regions.map((region, i) => ({
    name: blackboxName(region),
    region,
    port: m.blackboxPort + i,
    configFile: join(dir, `blackbox-${region}.yml`),
  }));
  const exporters = members.map((mem, i) => ({
    name: pgExporterName(mem.service, mem.region),
    service: mem.service,
    region: mem.region,
    port: m.postgresExporterPort + i,
    node: mem.node,
  }));
  const probes: Probe[] = [];
  for (const from of regions) {
    for (const mem of members) {
      if (mem.region === from) continue;
      probes.push({ from, to: mem.region, service: mem.service, target: `${mem.node.host}:${mem.node.port}` });
    }
  }
  const base = dirname(configFile);
  const configuredRuleFiles = m.ruleFiles.map((given) => ({
    given,
    path: isAbsolute(given) ? given : resolve(base, given),
  }));
  const budgetsFile = join(dir, 'budgets.rules.yml');
  return {
    dir,
    prometheus: {
      port: m.prometheusPort,
      configFile: join(dir, 'prometheus.yml'),
      dataDir: join(dir, 'prometheus-data'),
    },
    alertmanager: {
      port: m.alertmanagerPort,
      configFile: join(dir, 'alertmanager.yml'),
      dataDir: join(dir, 'alertmanager-data'),
    },
    intake: { port: m.intakePort ?? triggersOf(config).intake.port },
    vantagePoints,
    exporters,
    probes,
    queriesFile: join(dir, 'postgres-exporter-queries.yml'),
    budgetsFile,
    tokenFile: join(home, 'alertmanager-token'),
    ruleFiles: [SHIPPED_RULES, budgetsFile, ...configuredRuleFiles.map((r) => r.path)],
    configuredRuleFiles,
  };
}

export const prometheusUrl = (plan: MonitoringPlan): string => `http://${HOST}:${plan.prometheus.port}`;
export const alertmanagerUrl = (plan: MonitoringPlan): string => `http://${HOST}:${plan.alertmanager.port}`;
export const intakeUrl = (plan: MonitoringPlan): string => `http://${HOST}:${plan.intake.port}`;
export const exporterUrl = (port: number): string => `http://${HOST}:${port}`;

/** TEST-NET-1: no interface has it. */
const CUT_SOURCE = '192.0.2.1';

/** A blackbox module: a TCP connect to the PostgreSQL port (see the comment in blackboxConfig). */
function tcpModule(cut = false): Record<string, unknown> {
  return {
    prober: 'tcp',
    timeout: '1s',
    // A cut path binds to an address no interface has (TEST-NET-1), so every probe on it fails
    // at once, like a dropped route, while the exporter's other probes go on (partition.ts).
    tcp: { preferred_ip_protocol: 'ip4', ...(cut ? { source_ip_address: CUT_SOURCE } : {}) },
  };
}

/**
 * A vantage point's modules. TCP connect, not a login: blackbox's tcp prober sends text lines and
 * PostgreSQL's protocol is binary, and a failed login (a fenced primary refuses them) would log a
 * FATAL for every probe. A refused or unanswered connect is what a dead region looks like.
 */
export function blackboxConfig(config: Config, region: string, cutTo: string[] = []): string {
  const targets = [
    ...new Set(
      pgMembers(config)
        .filter((m) => m.region !== region)
        .map((m) => m.region),
    ),
  ];
  const modules = Object.fromEntries(targets.map((to) => [probeModule(to), tcpModule(cutTo.includes(to))]));
  return `# The vantage point of ${region}, written by \`regionshift stack up\`.\n${stringify({ modules })}`;
}

export function prometheusConfig(config: Config, plan: MonitoringPlan): string {
  const probeTargets = plan.probes.map((p) => {
    const vp = plan.vantagePoints.find((v) => v.region === p.from)!;
    return {
      targets: [`${HOST}:${vp.port}`],
      // The probed endpoint and module travel as URL parameters of the scrape (__param_*).
      labels: {
        __param_target: p.target,
        __param_module: probeModule(p.to),
        probe_from: p.from,
        probe_to: p.to,
        service: p.service,
        instance: `${p.from}->${p.to}`,
      },
    };
  });
  const scrapeConfigs: Record<string, unknown>[] = [
    { job_name: 'regionshift-pg-probe', metrics_path: '/probe', static_configs: probeTargets },
    {
      job_name: 'regionshift-postgres',
      // Lag alerts wait 4 s anyway; half the scrapes of the exporters' SQL.
      scrape_interval: '2s',
      scrape_timeout: '2s',
      static_configs: plan.exporters.map((e) => ({
        targets: [`${HOST}:${e.port}`],
        labels: { service: e.service, region: e.region },
      })),
    },
    ...extraScrapeJobs(config, plan),
  ];
  const doc = {
    global: { scrape_interval: SCRAPE_INTERVAL, scrape_timeout: SCRAPE_INTERVAL, evaluation_interval: SCRAPE_INTERVAL },
    rule_files: plan.ruleFiles,
    alerting: { alertmanagers: [{ static_configs: [{ targets: [`${HOST}:${plan.alertmanager.port}`] }] }] },
    scrape_configs: scrapeConfigs,
  };
  return `# Written by \`regionshift stack up\` on every start; edit the service config instead.\n${stringify(doc)}`;
}

/**
 * regionshift's own processes: the intake's /metrics (alarms accepted, guardians' states) and the
 * workers' whose ports the config fixes (metrics.workers); a worker on a free port prints it and
 * is not scraped here. Every 5 s: none of it is on the detection path.
 */
export function extraScrapeJobs(config: Config, plan: MonitoringPlan): Record<string, unknown>[] {
  const jobs: Record<string, unknown>[] = [
    {
      job_name: 'regionshift-intake',
      scrape_interval: '5s',
      static_configs: [{ targets: [`${HOST}:${plan.intake.port}`] }],
    },
  ];
  const workers = Object.entries(config.metrics?.workers ?? {}).filter(([, port]) => port > 0);
  if (workers.length) {
    const host = config.metrics?.host ?? HOST;
    jobs.push({
      job_name: 'regionshift-worker',
      scrape_interval: '5s',
      static_configs: workers.map(([region, port]) => ({ targets: [`${host}:${port}`], labels: { region } })),
    });
  }
  return jobs;
}

export function alertmanagerConfig(plan: MonitoringPlan): string {
  const doc = {
    route: {
      receiver: 'regionshift-intake',
      // Every alert its own group: one vantage point's alert must not wait for another's, and
      // the guardian counts vantage points itself.
      group_by: ['...'],
      // Alertmanager's 30 s default would be most of the detection budget; Prometheus has
      // already waited `for:` before sending.
      group_wait: '200ms',
      group_interval: '1s',
      // A repeat counts again toward the guardian's debounce, and lets a guardian that was down
      // hear of an alert still firing.
      repeat_interval: '30s',
    },
    receivers: [
      {
        name: 'regionshift-intake',
        webhook_configs: [
          {
            url: `${intakeUrl(plan)}/alertmanager`,
            send_resolved: true,
            http_config: { authorization: { type: 'Bearer', credentials_file: plan.tokenFile } },
          },
        ],
      },
    ],
  };
  return `# Written by \`regionshift stack up\`: every alert goes to the stack's regionshift intake.\n${stringify(doc)}`;
}

/**
 * The PostgreSQL exporter's queries. The default pg_replication_lag is the time since the last
 * replayed transaction, which grows on an idle primary: lag here is pg_stat_replication's own.
 */
export const POSTGRES_QUERIES = `# Queries of the local stack's PostgreSQL exporters (written by \`regionshift stack up\`).
regionshift_replication:
  query: "SELECT application_name AS standby, COALESCE(EXTRACT(EPOCH FROM replay_lag), 0) AS replay_lag_seconds, CASE WHEN pg_is_in_recovery() THEN 0 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END AS replay_lag_bytes FROM pg_stat_replication"
  metrics:
    - standby: { usage: LABEL, description: "the standby (its application_name, the region)" }
    - replay_lag_seconds: { usage: GAUGE, description: "replay lag of the standby as the primary measures it" }
    - replay_lag_bytes: { usage: GAUGE, description: "WAL the standby has not replayed yet" }
regionshift_standby:
  query: "SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END AS in_recovery, (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming') AS wal_receiver_streaming"
  metrics:
    - in_recovery: { usage: GAUGE, description: "1 on a standby" }
    - wal_receiver_streaming: { usage: GAUGE, description: "1 while the WAL receiver streams from its upstream" }
`;

export function budgetsRules(config: Config): string {
  const rules = config.services.map((s) => ({
    record: 'regionshift:rpo_budget_seconds',
    expr: `vector(${s.policy.rpoBudgetSeconds})`,
    labels: { service: s.name },
  }));
  const doc = { groups: [{ name: 'regionshift-budgets', rules }] };
  return `# Each service's policy.rpoBudgetSeconds, for RegionshiftReplicationLagOverBudget (written by \`regionshift stack up\`).\n${stringify(doc)}`;
}

/**
 * The bearer token Alertmanager presents to the intake: the intake's token variable when this
 * shell sets it, otherwise one made on the first `up` and kept in the state dir.
 */
export function alertmanagerToken(
  config: Config,
  plan: MonitoringPlan,
  env: NodeJS.ProcessEnv = process.env,
): { tokenEnv: string; token: string } {
  const tokenEnv = triggersOf(config).intake.alertmanager.tokenEnv;
  let token = env[tokenEnv];
  if (!token && existsSync(plan.tokenFile)) token = readFileSync(plan.tokenFile, 'utf8').trim();
  if (!token) token = randomBytes(24).toString('base64url');
  return { tokenEnv, token };
}

export function pgExporterEnv(e: PgExporter): NodeJS.ProcessEnv {
  return { ...process.env, DATA_SOURCE_NAME: `${dsn(e.node)}?sslmode=disable` };
}

/** Writes every generated file (the token file 0600). */
export function writeMonitoringFiles(config: Config, plan: MonitoringPlan, token: string): void {
  mkdirSync(plan.dir, { recursive: true });
  mkdirSync(plan.prometheus.dataDir, { recursive: true });
  mkdirSync(plan.alertmanager.dataDir, { recursive: true });
  writeFileSync(plan.tokenFile, `${token}\n`, { mode: 0o600 });
  chmodSync(plan.tokenFile, 0o600);
  for (const vp of plan.vantagePoints) {
    // A path cut by partition.ts stays cut across an `up` that finds the exporter running.
    const cut = existsSync(vp.configFile) ? cutTargets(vp.configFile) : [];
    writeFileSync(vp.configFile, blackboxConfig(config, vp.region, cut));
  }
  writeFileSync(plan.queriesFile, POSTGRES_QUERIES);
  writeFileSync(plan.budgetsFile, budgetsRules(config));
  writeFileSync(plan.prometheus.configFile, prometheusConfig(config, plan));
  writeFileSync(plan.alertmanager.configFile, alertmanagerConfig(plan));
}

/** The regions a vantage point's config currently cuts it off from. */
export function cutTargets(configFile: string): string[] {
  const doc = parse(readFileSync(configFile, 'utf8')) as {
    modules?: Record<string, { tcp?: { source_ip_address?: string } }>;
  } | null;
  return Object.entries(doc?.modules ?? {})
    .filter(([, mod]) => mod.tcp?.source_ip_address === CUT_SOURCE)
    .map(([name]) => name.slice('pg_'.length));
}
