// A throw-away local stack's files: a folder under os.tmpdir() holding its REGIONSHIFT_HOME,
// PostgreSQL data directories and a config on free ports, so neither the bench nor the tests
// touch (or are disturbed by) a stack a developer is using.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePortRun, freePorts } from '../lib/net';
import { REPO_ROOT } from '../lib/paths';
import { loadConfig } from '../lib/config/load';

export interface TempStackFiles {
  dir: string;
  /** Its REGIONSHIFT_HOME. */
  home: string;
  configFile: string;
  temporalPort: number;
  uiPort: number;
  motoPort: number;
  codecServerPort: number;
  pg: Record<string, { port: number; dataDir: string }>;
  /** With `app`: the demo application's port (stack.app), which the ledger's own runbooks call. */
  appPort?: number;
  /** With `monitoring`: the ports of Prometheus, Alertmanager, the intake and the first exporters. */
  monitoring?: {
    prometheusPort: number;
    alertmanagerPort: number;
    intakePort: number;
    blackboxPort: number;
    postgresExporterPort: number;
  };
}

export interface TempStackOptions {
  /** mkdtemp prefix, e.g. regionshift-bench- */
  prefix: string;
  /** First line of the config, saying who wrote it. */
  comment: string;
  /** The ledger service's policy block as YAML lines indented by six spaces; absent: the defaults. */
  policy?: string;
  /** DNS TTL of the service's records; absent: the default. */
  ttl?: number;
  /** More of the ledger service's config, as YAML lines indented by four spaces. */
  serviceExtra?: string;
  /** The ledger's regions, writer first; default us-west-2 and us-east-1. */
  regions?: string[];
  /** Route 53 weights per region when every region serves (the reference design: 40/30/20/10); default: the writer 100. */
  weights?: Record<string, number>;
  /** The stand-in approver the policy lists, with a key made in the stack's folder (src/demo/approver.ts); default demo-oncall. */
  approver?: string;
  /** Start Prometheus, Alertmanager, the exporters and the intake too (on free ports); default off, so stacks that do not test detection stay light. */
  monitoring?: boolean;
  /** Services after the ledger, each on PostgreSQL of its own (its first region writes) and its own record. */
  moreServices?: TempService[];
  /**
   * Run the demo's banking application (stack.app) on a free port, with the ledger's own failover
   * and failback runbooks (the shipped runbooks/ledger-*.yaml, calling that port); default off.
   */
  app?: boolean;
  /** Top-level config after `services`, as YAML lines (e.g. `evacuation: { maxConcurrent: 2 }`). */
  extra?: string;
  /** replicated: one Temporal cluster per region (stack.controlPlane), each on nine free ports of its own. */
  controlPlane?: 'single' | 'replicated';
}

export interface TempService {
  name: string;
  /** Writer first. */
  regions: string[];
  weights?: Record<string, number>;
  priority?: number;
}

/** The port the shipped ledger runbooks tell the application on (regionshift.yaml: stack.app.port). */
const SHIPPED_APP_URL = 'http://127.0.0.1:8235/';

/** The shipped ledger runbooks with the application's URL on `port`, written under `dir`; their paths by kind. */
function ledgerRunbooks(dir: string, port: number): Record<string, string> {
  mkdirSync(join(dir, 'runbooks'), { recursive: true });
  const out: Record<string, string> = {};
  for (const kind of ['failover', 'failback']) {
    const shipped = join(REPO_ROOT, 'runbooks', `ledger-${kind}.yaml`);
    const text = readFileSync(shipped, 'utf8');
    if (!text.includes(SHIPPED_APP_URL))
      throw new Error(`${shipped} no longer calls ${SHIPPED_APP_URL}: update src/stack/temp.ts with it`);
    out[kind] = `runbooks/ledger-${kind}.yaml`;
    writeFileSync(join(dir, out[kind]), text.replaceAll(SHIPPED_APP_URL, `http://127.0.0.1:${port}/`));
  }
  return out;
}

/**
 * The shipped regionshift.yaml's ledger alarm mapping, debounce, undrain delay and cooldown, as
 * TempStackOptions' serviceExtra and policy: with monitoring on, the demo then runs on a
 * temporary stack as `regionshift demo` runs it (its test, and the histories a release records).
 */
export function shippedLedgerTriggers(): { serviceExtra: string; policy: string } {
  const ledger = loadConfig(join(REPO_ROOT, 'regionshift.yaml')).services[0]!;
  // JSON is YAML: the block goes in as the config has it.
  return {
    serviceExtra: `    triggers: ${JSON.stringify(ledger.triggers)}`,
    policy: `      cooldown: ${ledger.policy.cooldown}`,
  };
}

/** One service `ledger` on PostgreSQL (the first region writes, the others stream from it) and Route 53 in moto. */
export async function writeTempStack(opts: TempStackOptions): Promise<TempStackFiles> {
  const dir = mkdtempSync(join(tmpdir(), opts.prefix));
  // mkdtemp makes the folder 0700; the postgres user must be able to reach the data directories inside.
  chmodSync(dir, 0o755);
  const home = join(dir, 'state');
  const regions = opts.regions ?? ['us-west-2', 'us-east-1'];
  const services: TempService[] = [
    { name: 'ledger', regions, ...(opts.weights ? { weights: opts.weights } : {}) },
    ...(opts.moreServices ?? []),
  ];
  const nodes = services.reduce((n, svc) => n + svc.regions.length, 0);
  // One call, so no two components get the same port.
  const singles = await freePorts(4 + nodes + (opts.monitoring ? 3 : 0) + (opts.app ? 1 : 0));
  const [temporalPort, uiPort, motoPort, codecServerPort] = singles as [number, number, number, number];
  const pgPorts = singles.slice(4, 4 + nodes);
  let monitoring: TempStackFiles['monitoring'];
  if (opts.monitoring) {
    const [prometheusPort, alertmanagerPort, intakePort] = singles.slice(4 + nodes) as [number, number, number];
    // One vantage point per region, one exporter per node.
    const regionCount = new Set(services.flatMap((s) => s.regions)).size;
    const blackboxPort = await freePortRun(regionCount, singles);
    const postgresExporterPort = await freePortRun(nodes, [
      ...singles,
      ...Array.from({ length: regionCount }, (_, i) => blackboxPort + i),
    ]);
    monitoring = { prometheusPort, alertmanagerPort, intakePort, blackboxPort, postgresExporterPort };
  }
  const monitoringYaml = monitoring
    ? `, monitoring: { prometheusPort: ${monitoring.prometheusPort}, alertmanagerPort: ${monitoring.alertmanagerPort}, intakePort: ${monitoring.intakePort}, blackboxPort: ${monitoring.blackboxPort}, postgresExporterPort: ${monitoring.postgresExporterPort} }`
    : ', monitoring: { enabled: false }';
  // A cluster's frontend and its other services take nine consecutive ports.
  const clusters: Record<string, number> = {};
  if (opts.controlPlane === 'replicated') {
    const taken = [...singles, ...(monitoring ? [monitoring.blackboxPort, monitoring.postgresExporterPort] : [])];
    for (const r of new Set(services.flatMap((svc) => svc.regions))) {
      const base = await freePortRun(9, taken);
      clusters[r] = base;
      taken.push(...Array.from({ length: 9 }, (_, i) => base + i));
    }
  }
  const clustersYaml =
    opts.controlPlane === 'replicated'
      ? `, clusters: { ${Object.entries(clusters)
          .map(([r, p]) => `${r}: 127.0.0.1:${p}`)
          .join(', ')} }`
      : '';
  const appPort = opts.app ? singles[singles.length - 1]! : undefined;
  const appYaml = appPort ? `, app: { service: ledger, port: ${appPort} }` : '';
  const runbooks = appPort ? ledgerRunbooks(dir, appPort) : undefined;
  const configFile = join(dir, 'regionshift.yaml');
  const approver = opts.approver ?? 'demo-oncall';
  const blocks = services.map((svc) => {
    const ports = pgPorts.splice(0, svc.regions.length);
    const pg = Object.fromEntries(
      svc.regions.map((r, i) => [r, { port: ports[i]!, dataDir: join(dir, 'pg', `${svc.name}-${r}`) }]),
    );
    const map = (value: (r: string) => string): string =>
      `{ ${svc.regions.map((r) => `${r}: ${value(r)}`).join(', ')} }`;
    const ledger = svc.name === 'ledger';
    const yaml = `  - name: ${svc.name}
    regions: [${svc.regions.join(', ')}]
${
  ledger && runbooks
    ? `    runbooks: { ${Object.entries(runbooks)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')} }\n`
    : ''
}${svc.priority !== undefined ? `    priority: ${svc.priority}\n` : ''}    database:
      provider: postgres-streaming
      regions:
${svc.regions.map((r) => `        ${r}: { host: 127.0.0.1, port: ${pg[r]!.port}, dataDir: pg/${svc.name}-${r} }`).join('\n')}
    traffic:
      provider: route53
      hostedZone: regionshift.test.
      recordName: ${svc.name}.regionshift.test.
${opts.ttl !== undefined ? `      ttl: ${opts.ttl}\n` : ''}      endpoints: ${map((r) => `${ledger ? 'db' : svc.name}.${r}.regionshift.test.`)}
${svc.weights ? `      weights: ${map((r) => String(svc.weights![r] ?? 0))}\n` : ''}      endpointUrl: http://127.0.0.1:${motoPort}
${ledger && opts.serviceExtra ? `${opts.serviceExtra}\n` : ''}    policy:
${opts.policy ? `${opts.policy}\n` : ''}      approvers: [{ name: ${approver}, sshKeysFile: keys/${approver}.pub }]
`;
    return { pg, yaml };
  });
  writeFileSync(
    configFile,
    `# ${opts.comment}
temporal: { address: 127.0.0.1:${temporalPort}, namespace: default, uiUrl: http://127.0.0.1:${uiPort}${clustersYaml} }
stack: { temporalPort: ${temporalPort}, temporalUiPort: ${uiPort}, motoPort: ${motoPort}, codecServerPort: ${codecServerPort}${opts.controlPlane === 'replicated' ? ', controlPlane: replicated' : ''}${monitoringYaml}${appYaml} }
services:
${blocks.map((b) => b.yaml).join('')}${opts.extra ? `${opts.extra}\n` : ''}`,
  );
  return {
    dir,
    home,
    configFile,
    temporalPort,
    uiPort,
    motoPort,
    codecServerPort,
    pg: blocks[0]!.pg,
    ...(monitoring ? { monitoring } : {}),
    ...(appPort ? { appPort } : {}),
  };
}
