// Alarm intake throughput and latency, on a running stack: real HTTP deliveries (Alertmanager
// webhooks with a bearer token) through the intake into a guardian on the stack's Temporal.
//
//   thresholdToFirstStepMs  the Nth (threshold) alarm is sent → the run's first step starts
//                           (the step's startedAt, workflow time); the run is held at its
//                           approval gate and aborted afterwards, so the stack is not changed
//   p50Ms / p99Ms           per delivery, request sent → 202 (the alarm is fsync'd in the
//                           intake's journal), over `deliveries` deliveries from `concurrency`
//                           concurrent senders, while that run is in progress (the storm case)
//   deliveriesPerSecond     deliveries / wall time of that burst
//   drainMs                 the burst's last 202 → the guardian has every alarm of it
// `--direct` measures without the journal (202 only once Temporal has stored the signal), for
// comparison.
//
// The bench uses a guardian of its own (regionshift-guardian-bench-…), so it neither disturbs
// nor is disturbed by the service's real guardian; the run it triggers is the service's real
// run id (single flight: the bench refuses to start while a run is in progress).
//
// Standalone: `npm run build && node dist/bench/intake.js [--deliveries N] [--concurrency C] [--direct] [--json]`
// brings up a bench stack of its own (bench/temp-stack.ts), measures, and tears it down.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { Client } from '@temporalio/client';
import type { Config, Service } from '../src/config/schema';
import { Deliverer, guardianSeed } from '../src/intake/deliver';
import { AlarmJournal } from '../src/intake/journal';
import { startIntakeServer } from '../src/intake/server';
import type { GuardianInput } from '../src/intake/types';
import { builtinRunbookPath, loadRunbook } from '../src/runbook/load';
import { CONTROL_TASK_QUEUE, runWorkflowId } from '../src/runbook/ids';
import type { RunRecord } from '../src/runbook/types';
import { abortRun, awaitRecord } from '../src/runs/client';
import { alertmanagerBody, type LoadInput, type LoadResult } from './intake-load';
import type { BenchSection, SectionResult } from './section';

export interface IntakeBenchOptions {
  config: Config;
  client: Client;
  /** The service whose primary region the alarms are about (default: the first). */
  service?: Service | string;
  /** Deliveries in the burst (default 1000). */
  deliveries?: number;
  /** Concurrent senders (default 16). */
  concurrency?: number;
  /** Answer only once Temporal has the signal, without the journal (default false). */
  direct?: boolean;
  say?: (line: string) => void;
}

export interface IntakeFigures {
  intake: {
    p99Ms: number; p50Ms: number; deliveriesPerSecond: number; thresholdToFirstStepMs: number; drainMs: number;
    deliveries: number; concurrency: number; signals: number; journal: boolean;
  };
}

const TOKEN = 'bench-alertmanager-token';
const ALARM = 'RegionshiftBenchPrimaryDown';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round = (n: number): number => Math.round(n * 10) / 10;

export async function intakeBench(opts: IntakeBenchOptions): Promise<IntakeFigures> {
  const say = opts.say ?? (() => undefined);
  const service = typeof opts.service === 'object' ? opts.service : opts.config.services.find((s) => s.name === (opts.service ?? opts.config.services[0]!.name));
  if (!service) throw new Error(`bench: unknown service ${String(opts.service)}`);
  const deliveries = opts.deliveries ?? 1000;
  const concurrency = opts.concurrency ?? 16;
  const client = opts.client;
  const runId = runWorkflowId(service.name);

  try {
    const d = await client.workflow.getHandle(runId).describe();
    if (d.status.name === 'RUNNING') throw new Error(`bench: ${service.name} has a run in progress (${runId}); wait for it to end`);
  } catch (err) {
    if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
  }

  // A config of the bench's own: one service, one alarm rule, an intake on a free port.
  const benchService = { ...service, triggers: { alarms: [{ source: 'alertmanager', name: ALARM, regionLabel: 'region' }], debounce: { failures: 3, window: '2m' } } } as Service;
  const config = { ...opts.config, services: [benchService], triggers: { intake: { host: '127.0.0.1', port: 0 } } } as Config;
  const guardianId = `regionshift-guardian-bench-${service.name}-${Date.now()}`;
  const deliverer = new Deliverer({
    client, config, runbook: loadRunbook(builtinRunbookPath('failover')), guardianWorkflowId: () => guardianId,
    // Held at the approval gate after preflight: the bench measures, then aborts; nothing changes.
    settingsExtra: { approval: { required: true, timeout: '10m', onTimeout: 'reject', approvers: [] } },
  });
  const seed = await guardianSeed(client, service.name);
  const settings = deliverer.settingsOf(service.name);
  const input: GuardianInput = { service: service.name, settings, seed };
  await client.workflow.start('guardian', { workflowId: guardianId, taskQueue: CONTROL_TASK_QUEUE, args: [input], staticSummary: 'bench guardian (bench/intake.ts)' });
  const primary = seed.primary ?? service.regions[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-bench-intake-'));
  const journal = opts.direct ? undefined : await AlarmJournal.open({ path: join(dir, 'journal.jsonl'), forward: deliverer, log: say });
  const server = await startIntakeServer({ config, sink: journal ?? deliverer, secrets: { alertmanager: TOKEN }, log: () => undefined });
  const url = `${server.url}/alertmanager`;

  const post = async (): Promise<void> => {
    const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: alertmanagerBody(ALARM, primary) });
    await res.arrayBuffer();
    if (res.status !== 202) throw new Error(`bench: the intake answered ${res.status}`);
  };

  let runStarted = false;
  try {
    // 1. Threshold to first step.
    const { failures } = settings.debounce;
    for (let i = 1; i < failures; i++) await post();
    const t0 = Date.now();
    await post();
    const rec = await poll(async () => {
      const r = await client.workflow.getHandle(runId).query<RunRecord>('progress');
      return r.steps[0]?.startedAt ? r : undefined;
    }, 30_000);
    runStarted = true;
    const thresholdToFirstStepMs = Date.parse(rec.steps[0]!.startedAt!) - t0;
    say(`  threshold (alarm ${failures} of ${failures}) → first step: ${thresholdToFirstStepMs} ms (run ${rec.runId}, trigger ${rec.trigger})`);

    // 2. The storm: deliveries while the run is in progress (attached to it), from senders on a
    // thread of their own (bench/intake-load.ts).
    const signalsBefore = deliverer.signalsSent;
    const loadInput: LoadInput = { url, token: TOKEN, alarm: ALARM, region: primary, deliveries, concurrency };
    const result = await new Promise<LoadResult>((resolve, reject) => {
      const w = new Worker(join(__dirname, 'intake-load.js'), { workerData: loadInput });
      w.once('message', (m: LoadResult | { error: string }) => ('error' in m ? reject(new Error(`bench: the senders failed: ${m.error}`)) : resolve(m)));
      w.once('error', reject);
    });
    const refused = Object.entries(result.statuses).filter(([status]) => status !== '202');
    if (refused.length > 0) throw new Error(`bench: the intake answered ${refused.map(([st, n]) => `${st} ×${n}`).join(', ')}`);
    const latencies = result.latencies;
    const wall = result.wallMs;
    const burstEnd = performance.now();
    await journal?.drained();
    const drainMs = Math.round(performance.now() - burstEnd);
    latencies.sort((a, b) => a - b);
    const figures: IntakeFigures = {
      intake: {
        p50Ms: round(percentile(latencies, 50)),
        p99Ms: round(percentile(latencies, 99)),
        deliveriesPerSecond: Math.round(deliveries / (wall / 1000)),
        thresholdToFirstStepMs,
        drainMs,
        deliveries,
        concurrency,
        signals: deliverer.signalsSent - signalsBefore,
        journal: journal !== undefined,
      },
    };
    say(`  ${deliveries} deliveries from ${concurrency} senders${journal ? '' : ' (direct, no journal)'}: p50 ${figures.intake.p50Ms} ms, p99 ${figures.intake.p99Ms} ms, ${figures.intake.deliveriesPerSecond}/s; guardian had them all ${drainMs} ms after the last 202 (${figures.intake.signals} signals)`);
    return figures;
  } finally {
    await server.close();
    await journal?.close();
    rmSync(dir, { recursive: true, force: true });
    if (runStarted) {
      await abortRun(client, runId, { by: 'bench', reason: 'bench/intake.ts: measured, not a real failover' }).catch(() => undefined);
      await awaitRecord(client, runId).catch(() => undefined);
    }
    await client.workflow.getHandle(guardianId).terminate('bench over').catch(() => undefined);
  }
}

async function poll<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('bench: the guardian did not start the run in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The section for bench/main.ts's SECTIONS list. */
export const intakeSection: BenchSection = {
  name: 'intake',
  async run(ctx) {
    const out: SectionResult = { figures: {}, checks: [], notes: [], failures: [] };
    try {
      const f = await intakeBench({ config: ctx.config, client: ctx.client, service: ctx.service, say: ctx.say });
      out.figures = f as unknown as SectionResult['figures'];
      const reproduce = 'npm run build && node dist/bench/intake.js';
      out.checks.push(
        { path: 'intake.p99Ms', what: `p99 of ${f.intake.deliveries} alarm deliveries (HTTP → fsync'd in the intake's journal), ${f.intake.concurrency} concurrent senders`, samples: [f.intake.p99Ms], targetMax: 50, reproduce },
        { path: 'intake.thresholdToFirstStepMs', what: 'threshold alarm sent → the failover\'s first step started', samples: [f.intake.thresholdToFirstStepMs], targetMax: 1000, reproduce },
      );
      out.notes.push(`intake: ${f.intake.deliveriesPerSecond} deliveries/s, p50 ${f.intake.p50Ms} ms; the guardian had them all ${f.intake.drainMs} ms after the last 202, in ${f.intake.signals} signals`);
    } catch (err) {
      out.failures.push(`intake: ${(err as Error).message}`);
    }
    return out;
  },
};

async function standalone(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { deliveries: { type: 'string' }, concurrency: { type: 'string' }, direct: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } }, strict: true });
  const say = (line: string) => (values.json ? console.error(line) : console.log(line));
  const { makeBenchStack } = await import('./temp-stack');
  const { BENCH_POLICY } = await import('./failover');
  const { connect } = await import('../src/runs/client');
  const stack = await makeBenchStack(BENCH_POLICY);
  let client: Client | undefined;
  try {
    say(`bench stack in ${stack.dir}`);
    const up = await stack.up((line) => say(`  ${line}`));
    if (!up.ok) throw new Error('the bench stack did not come up');
    client = await connect(stack.config);
    const f = await intakeBench({
      config: stack.config, client, say, direct: values.direct,
      ...(values.deliveries ? { deliveries: Number(values.deliveries) } : {}),
      ...(values.concurrency ? { concurrency: Number(values.concurrency) } : {}),
    });
    console.log(values.json ? JSON.stringify(f) : JSON.stringify(f, null, 2));
    return 0;
  } finally {
    await client?.connection.close().catch(() => undefined);
    await stack.destroy();
  }
}

if (require.main === module) {
  standalone(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      console.error(`bench: ${err.message}`);
      process.exit(1);
    },
  );
}
