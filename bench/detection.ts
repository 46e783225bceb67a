// Unplanned failover with detection: the writer region is killed and nobody starts anything.
// The local stack's Prometheus sees its probes fail, Alertmanager tells the intake, the guardian
// starts the failover. failover.unplanned.detectedRtoMs is kill → the first INSERT the target
// accepts, as a client retrying every 100 ms sees it. Each sample gets a fresh stack of its own
// (two regions: one vantage point, so a quorum of one), so no guardian state or cooldown carries.
import { rmSync } from 'node:fs';
import { Client as PgClient } from 'pg';
import { loadConfig } from '../src/lib/config/load';
import type { Config } from '../src/lib/config/schema';
import { ensureLedger, nodeOf } from '../src/demo/ledger';
import { killRegion } from '../src/demo/region';
import { dsn, type PgNode } from '../src/lib/postgres/node';
import { runWorkflowId } from '../src/contract/runbook/ids';
import { awaitRecord, connect } from '../src/lib/runs/client';
import { stackCodecEnv } from '../src/stack/codec';
import { stackDown, stackUp } from '../src/stack/stack';
import { writeTempStack } from '../src/stack/temp';
import { postgresDatabase } from '../src/lib/config/schema';
import { BENCH_POLICY } from './failover';
import type { BenchContext, BenchSection, SectionResult } from './section';
import { spread } from './stats';
import { withStackEnv } from './temp-stack';

const TARGET_MS = 10_000;

/** The mapping a service adds to fail over on the stack's probes (as in docs/triggers.md). */
const TRIGGERS = [
  '    triggers:',
  '      alarms:',
  '        - { source: alertmanager, name: RegionshiftEndpointUnreachable, regionLabel: probe_to, vantageLabel: probe_from, labels: { service: ledger } }',
  // One vantage point per region here: one alert is the whole quorum.
  '      debounce: { failures: 1, window: 1m }',
  '      approval: { unplanned: { policy: auto } }',
].join('\n');

async function promQuery(port: number, query: string): Promise<Array<{ value: [number, string] }>> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(query)}`);
  return ((await res.json()) as { data: { result: Array<{ value: [number, string] }> } }).data.result;
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last: ${last})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** One INSERT on a fresh connection: a client that reconnects after every failure, as drivers do. */
async function tryInsert(url: string): Promise<boolean> {
  const pg = new PgClient({ connectionString: url, connectionTimeoutMillis: 500, query_timeout: 1_000 });
  pg.on('error', () => undefined);
  try {
    await pg.connect();
    await pg.query('INSERT INTO bench_detection (at) VALUES (now())');
    return true;
  } catch {
    return false;
  } finally {
    await pg.end().catch(() => undefined);
  }
}

export interface DetectionSample {
  detectedRtoMs: number;
  runRtoMs: number;
  runStartedMs: number;
  target: string;
  trigger: string;
}

/**
 * What another bench measures around one detected failover (the peers bench: its own write probe
 * and the stack's CPU and memory), on the sample's stack while it is up.
 */
export interface AroundKill {
  /** The stack is up and the writer holds the ledger; the kill is still to come. */
  prepare?(home: string, writer: PgNode, target: PgNode): Promise<void>;
  /** Right before the kill. */
  before?(): void;
  /** Once the target has accepted a write, before the stack goes down. */
  after?(killedAt: number): Promise<void>;
}

export async function detectedSample(
  say: (line: string) => void,
  i: number | string,
  around: AroundKill = {},
): Promise<DetectionSample> {
  const files = await writeTempStack({
    prefix: 'regionshift-bench-detect-',
    comment: 'written by npm run bench (detection); deleted when it ends',
    policy: BENCH_POLICY,
    ttl: 5,
    approver: 'bench-oncall',
    monitoring: true,
    serviceExtra: TRIGGERS,
  });
  const config: Config = loadConfig(files.configFile);
  const codecEnv = stackCodecEnv(files.home).env;
  return withStackEnv(async () => {
    process.env.REGIONSHIFT_HOME = files.home;
    process.env.REGIONSHIFT_CONFIG = files.configFile;
    process.env.TEMPORAL_ADDRESS = config.temporal.address;
    Object.assign(process.env, codecEnv);
    try {
      const up = await stackUp({ config, configFile: files.configFile, home: files.home });
      if (!up.ok)
        throw new Error(
          `the detection stack did not come up: ${up.components
            .filter((c) => c.health === 'down')
            .map((c) => `${c.name}: ${c.detail}`)
            .join('; ')}`,
        );
      const service = config.services[0]!;
      const [writer, target] = service.regions as [string, string];
      await ensureLedger(nodeOf(service, writer), postgresDatabase(service).regions[writer]!.appUser);
      const w = new PgClient({ connectionString: dsn(nodeOf(service, writer)) });
      await w.connect();
      await w.query('CREATE TABLE IF NOT EXISTS bench_detection (id bigserial PRIMARY KEY, at timestamptz NOT NULL)');
      await w.end();
      await around.prepare?.(files.home, nodeOf(service, writer), nodeOf(service, target));
      const port = files.monitoring!.prometheusPort;
      // Both probes answered for a few scrapes: the alert's "last good probe" exists.
      await until(
        'probes succeeding',
        async () =>
          (await promQuery(port, 'min_over_time(probe_success{job="regionshift-pg-probe"}[3s]) == 1')).length === 2
            ? true
            : undefined,
        60_000,
        500,
      );
      const targetUrl = dsn(nodeOf(service, target));
      around.before?.();
      const killed = await killRegion({ config, configFile: files.configFile, home: files.home }, service, writer);
      const firstWrite = await until(
        'a write accepted in the target',
        async () => ((await tryInsert(targetUrl)) ? Date.now() : undefined),
        90_000,
        100,
      );
      await around.after?.(killed.at);
      const client = await connect(config);
      try {
        const handle = client.workflow.getHandle(runWorkflowId(service.name));
        const desc = await handle.describe();
        const rec = await awaitRecord(client, runWorkflowId(service.name));
        if (rec.status !== 'succeeded') throw new Error(`the guardian's failover ${rec.status}: ${rec.error ?? ''}`);
        const s: DetectionSample = {
          detectedRtoMs: firstWrite - killed.at,
          runRtoMs: rec.rtoMs ?? NaN,
          runStartedMs: desc.startTime.getTime() - killed.at,
          target: rec.target,
          trigger: rec.trigger ?? '',
        };
        say(
          `  ${i}: ${writer} killed → run started after ${s.runStartedMs} ms (${s.trigger}) → first write accepted in ${target} after ${s.detectedRtoMs} ms; the run's own RTO ${s.runRtoMs} ms`,
        );
        return s;
      } finally {
        await client.connection.close().catch(() => undefined);
      }
    } finally {
      await stackDown({ home: files.home }).catch((err: Error) =>
        say(`  could not stop the detection stack in ${files.home}: ${err.message}`),
      );
      rmSync(files.dir, { recursive: true, force: true });
    }
  }, Object.keys(codecEnv));
}

export const detectionSection: BenchSection = {
  name: 'detection',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const out: SectionResult = { figures: {}, checks: [], notes: [], failures: [] };
    const runs = Math.max(3, ctx.options.unplannedRuns);
    ctx.say(
      `unplanned failovers with detection: the writer killed, nobody starts the run (${runs}, a fresh two-region stack with monitoring each):`,
    );
    const samples: DetectionSample[] = [];
    for (let i = 1; i <= runs; i++) {
      try {
        samples.push(await detectedSample(ctx.say, i));
      } catch (err) {
        out.failures.push(`detection sample ${i}: ${(err as Error).message}`);
      }
    }
    out.checks.push({
      path: 'failover.unplanned.detectedRtoMs',
      what: "writer killed (PostgreSQL -m immediate, worker SIGKILL) → the first INSERT the target accepts; detection by the stack's Prometheus/Alertmanager, run started by the guardian",
      samples: samples.map((s) => s.detectedRtoMs),
      targetMax: TARGET_MS,
      reproduce: `npm run bench -- --only detection --unplanned-runs ${runs}`,
    });
    out.notes.push(
      'detection: probes and rule evaluation every 1 s, alert for: 2s, Alertmanager group_wait 200ms (runbooks/alerts/regionshift.rules.yml, src/stack/monitoring/config.ts); ' +
        "the INSERT is retried every 100 ms on a fresh connection straight to the target's PostgreSQL",
    );
    out.figures = {
      failover: {
        unplanned: {
          detectedRtoMs: spread(samples.map((s) => s.detectedRtoMs)).median,
          detectionRunStartedMs: spread(samples.map((s) => s.runStartedMs)).median,
          detectionRuns: samples.length,
          detectionSamples: samples,
        },
      },
    };
    return out;
  },
};
