// `npm run bench [-- --runs N --unplanned-runs M --clients C --json]`: figures as medians over
// several runs on a local stack of the bench's own (temporary ports and folders, torn down at
// the end). Each section adds its figures under its own keys; --json prints the merged object
// and nothing else on stdout.
import { parseArgs } from 'node:util';
import { postgresDatabase } from '../src/lib/config/schema';
import { connect } from '../src/lib/runs/client';
import { ensureLedger, nodeOf } from '../src/demo/ledger';
import { startWriteLoad, type WriteLoad } from '../src/demo/load';
import { configRegions } from '../src/demo/region';
import type { Client } from '@temporalio/client';
import { BENCH_POLICY, failoverSection } from './failover';
import { fourRegionsSection } from './four-regions';
import { evacuateSection } from './evacuate';
import { reconcileSection } from './reconcile';
import { intakeSection } from './intake';
import { detectionSection } from './detection';
import { controlPlaneSection } from './control-plane';
import { PEERS, peersSection } from './peers/section';
import type { BenchOptions, BenchSection, Check, SectionResult } from './section';
import { chooseSections, nameList } from './options';
import { deepMerge, spread, type Figures } from './stats';
import { makeBenchStack, type BenchStack } from './temp-stack';

/** Later issues append their sections here. */
// four-regions, evacuate, detection and control-plane last of the defaults: each brings up a stack of its own, after the shared one has done its work.
const SECTIONS: BenchSection[] = [
  failoverSection,
  intakeSection,
  reconcileSection,
  fourRegionsSection,
  evacuateSection,
  detectionSection,
  controlPlaneSection,
];
/** Off unless asked for: it installs packages and starts other tools' clusters. */
const OPTIONAL_SECTIONS: BenchSection[] = [peersSection];

const USAGE = `usage: npm run bench -- [--runs N] [--unplanned-runs M] [--clients C] [--json]
  --runs N            planned failovers, alternating direction (default 5)
  --unplanned-runs M  unplanned failovers, each killing the primary of a fresh pair (default 3);
                      detection runs as many (at least 3), each on a fresh stack with monitoring
  --clients C         concurrent writers on the ledger during the runs (default 0: none; the
                      load generator shares this machine's CPUs with the orchestrator)
  --ledger-10m        also reconcile in a 10,000,000-entry ledger (generating it takes minutes)
  --peers             also run regionshift side by side with Patroni, pg_auto_failover and repmgr
                      (installs their Debian packages with apt-get when missing: needs root)
  --peer-runs N       runs of each kind (planned, unplanned) per peer tool (default 3)
  --peer-tools LIST   comma-separated subset of: ${PEERS.map((p) => p.name).join(', ')}
  --timeline          print each planned failover's history, event by event (time since start, gap)
  --only LIST         run only these sections (comma-separated: failover, intake, reconcile, four-regions, evacuate, detection, control-plane, peers)
  --json              one JSON object of figures on stdout, progress on stderr`;

function count(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} takes a whole number ≥ 0, not "${value}"`);
  return n;
}

function medianOf(c: Check) {
  return spread(c.samples, c.unit === '×' ? 2 : 0);
}

/** Whether the median meets every target the check sets (under targetMax, at least targetMin). */
function meets(c: Check): boolean {
  const s = medianOf(c);
  return (
    s.n > 0 &&
    (c.targetMax === undefined || s.median < c.targetMax) &&
    (c.targetMin === undefined || s.median >= c.targetMin)
  );
}

function checkLine(c: Check): string[] {
  const s = medianOf(c);
  const unit = c.unit === '×' ? '×' : c.unit === 'count' ? '' : ' ms';
  const figure = s.n ? `median ${s.median}${unit} (min ${s.min}, max ${s.max}, ${s.n} runs)` : 'no successful run';
  const targets = [
    c.targetMax !== undefined ? `< ${c.targetMax}${unit}` : '',
    c.targetMin !== undefined ? `≥ ${c.targetMin}${unit}` : '',
  ].filter(Boolean);
  const verdict =
    targets.length === 0 ? 'no target set' : `target ${targets.join(' and ')}: ${meets(c) ? 'PASS' : 'FAIL'}`;
  return [`${c.path}  ${figure}  ${verdict}`, `    ${c.what}`, `    reproduce: ${c.reproduce}`];
}

function failed(c: Check): boolean {
  return (c.targetMax !== undefined || c.targetMin !== undefined) && !meets(c);
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string' },
      'unplanned-runs': { type: 'string' },
      clients: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      'ledger-10m': { type: 'boolean', default: false },
      peers: { type: 'boolean', default: false },
      'peer-runs': { type: 'string' },
      'peer-tools': { type: 'string' },
      only: { type: 'string' },
      timeline: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const options: BenchOptions = {
    runs: count(values.runs, 'runs', 5),
    unplannedRuns: count(values['unplanned-runs'], 'unplanned-runs', 3),
    clients: count(values.clients, 'clients', 0),
    ledger10m: values['ledger-10m'] ?? false,
    peerRuns: count(values['peer-runs'], 'peer-runs', 3),
    peerTools: nameList(
      values['peer-tools'],
      'peer-tools',
      PEERS.map((p) => p.name),
    ),
    timeline: values.timeline ?? false,
  };
  const sections = chooseSections(
    SECTIONS,
    OPTIONAL_SECTIONS,
    values.peers ? ['peers'] : [],
    nameList(
      values.only,
      'only',
      [...SECTIONS, ...OPTIONAL_SECTIONS].map((s) => s.name),
    ),
  );
  const json = values.json ?? false;
  const say = (line: string) => (json ? console.error(line) : console.log(line));

  let stack: BenchStack | undefined;
  let client: Client | undefined;
  let load: WriteLoad | undefined;
  const cleanups: Array<() => Promise<void>> = [];
  const teardown = async () => {
    for (const stop of cleanups.splice(0).reverse()) await stop().catch((err: Error) => say(`cleanup: ${err.message}`));
    await load?.stop();
    await client?.connection.close().catch(() => undefined);
    if (stack) {
      say(`stopping the bench stack (${stack.dir})…`);
      await stack.destroy();
    }
  };
  const interrupted = () => {
    say('interrupted: tearing the bench stack down…');
    teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  const results: Array<{ name: string; result: SectionResult }> = [];
  try {
    stack = await makeBenchStack(BENCH_POLICY);
    say(`bench stack in ${stack.dir} (Temporal UI ${stack.config.temporal.uiUrl} while it runs)`);
    const up = await stack.up((line) => say(`  ${line}`));
    if (!up.ok)
      throw new Error(
        `the bench stack did not come up: ${up.components
          .filter((c) => c.health === 'down')
          .map((c) => `${c.name}: ${c.detail}`)
          .join('; ')}`,
      );
    const { service, home } = configRegions(stack.config, 'ledger');
    await ensureLedger(nodeOf(service, home), postgresDatabase(service).regions[home]!.appUser);
    client = await connect(stack.config);
    load = startWriteLoad(stack.config, service, { clients: options.clients });
    if (options.clients > 0 && !(await load.waitForAck(home, 0, 15_000)))
      throw new Error(`the write load could not commit in ${home}: ${[...load.errors.keys()].join(', ')}`);
    for (const section of sections) {
      say(`\n[${section.name}]`);
      const registerCleanup = (stop: () => Promise<void>) => cleanups.push(stop);
      results.push({
        name: section.name,
        result: await section.run({
          stack,
          config: stack.config,
          service,
          client,
          load,
          options,
          say,
          registerCleanup,
        }),
      });
    }
  } finally {
    await teardown();
  }

  const figures = results.reduce<Figures>((all, r) => deepMerge(all, r.result.figures), {});
  const checks = results.flatMap((r) => r.result.checks);
  const failures = results.flatMap((r) => r.result.failures);
  if (json) {
    console.log(JSON.stringify(figures));
  } else {
    console.log('\nresults (medians; wall-clock on this machine, local stack):');
    for (const c of checks) console.log(checkLine(c).join('\n'));
    for (const r of results) for (const n of r.result.notes) console.log(`note (${r.name}): ${n}`);
  }
  for (const f of failures) console.error(`FAILED: ${f}`);
  const missed = checks.filter(failed);
  if (missed.length) say(`target missed: ${missed.map((c) => c.path).join(', ')}`);
  return failures.length || missed.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`bench: ${err.message}`);
    process.exit(1);
  },
);
