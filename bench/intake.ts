// Alarm intake throughput and latency, on a running stack: real HTTP deliveries (Alertmanager
// webhooks with a bearer token) through the intake into a guardian on the stack's Temporal.
//
//   thresholdToFirstStepMs  the Nth (threshold) alarm is sent → the run's first step starts
//                           (the step's startedAt, workflow time); the run is held at its
//                           approval gate and aborted afterwards, so the stack is not changed
//   deliveriesPerSecond     a burst of `deliveries` from `concurrency` senders at once (closed
//                           loop), while that run is in progress (the storm case): deliveries /
//                           wall time. burstP50Ms / burstP99Ms are its latencies, which at
//                           saturation are mostly queueing (concurrency / throughput).
//   p50Ms / p99Ms           per delivery, due → 202 (the alarm is on disk in the intake's
//                           journal), `deliveries` sent at `rate` per second (open loop), i.e. a
//                           storm of 1,000 alarms in 4 s by default, below saturation
//   drainMs                 the burst's last 202 → the guardian has every alarm of it
// `--direct` measures without the journal (202 only once Temporal has stored the signal), for
// comparison.
//
// The bench uses a guardian of its own (regionshift-guardian-bench-…), so it neither disturbs
// nor is disturbed by the service's real guardian; the run it triggers is the service's real
// run id (single flight: the bench refuses to start while a run is in progress).
//
// Standalone: `npm run build && node dist/bench/intake.js [--deliveries N] [--concurrency C] [--rate R] [--direct] [--json]`
// brings up a bench stack of its own (bench/temp-stack.ts), measures, and tears it down.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { Client } from '@temporalio/client';
import type { Config, Service } from '../src/lib/config/schema';
import { Deliverer, guardianSeed } from '../src/intake/deliver';
import { AlarmJournal } from '../src/intake/journal';
import { startIntakeServer } from '../src/intake/server';
import type { GuardianInput } from '../src/contract/guardian/types';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { CONTROL_TASK_QUEUE, runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { abortRun, awaitRecord } from '../src/lib/runs/client';
import { alertmanagerBody, type LoadInput, type LoadResult } from './intake-load';
import type { BenchSection, SectionResult } from './section';

export interface IntakeBenchOptions {
  config: Config;
  client: Client;
  /** The service whose primary region the alarms are about (default: the first). */
  service?: Service | string;
  /** Deliveries in the burst (default 1000). */
  deliveries?: number;
  /** Concurrent senders of the burst (default 16). */
  concurrency?: number;
  /** Deliveries per second of the paced run, whose latencies are the figure (default 250). */
  rate?: number;
  /** Answer only once Temporal has the signal, without the journal (default false). */
  direct?: boolean;
  say?: (line: string) => void;
}

export interface IntakeFigures {
  intake: {
    /** Latency per delivery at `ratePerSecond` (paced, open loop). */
    p99Ms: number;
    p50Ms: number;
    ratePerSecond: number;
    /** Throughput of the burst (closed loop, `concurrency` senders) and its latencies, which are mostly queueing. */
    deliveriesPerSecond: number;
    burstP50Ms: number;
    burstP99Ms: number;
    thresholdToFirstStepMs: number;
    drainMs: number;
    deliveries: number;
    concurrency: number;
    signals: number;
    journal: boolean;
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
  const service =
    typeof opts.service === 'object'
      ? opts.service
      : opts.config.services.find((s) => s.name === (opts.service ?? opts.config.services[0]!.name));
  if (!service) throw new Error(`bench: unknown service ${String(opts.service)}`);
  const deliveries = opts.deliveries ?? 1000;
  const concurrency = opts.concurrency ?? 16;
  const rate = opts.rate ?? 250;
  const client = opts.client;
  const runId = runWorkflowId(service.name);

  // The service's last run (an earlier section's), so the run the alarms start is told apart from it.
  let previousRunId: string | undefined;
  try {
    const d = await client.workflow.getHandle(runId).describe();
    if (d.status.name === 'RUNNING')
      throw new Error(`bench: ${service.name} has a run in progress (${runId}); wait for it to end`);
    previousRunId = d.runId;
  } catch (err) {
    if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
  }

  // A config of the bench's own: one service, one alarm rule, an intake on a free port.
  const benchService = {
    ...service,
    triggers: {
      alarms: [{ source: 'alertmanager', name: ALARM, regionLabel: 'region' }],
      debounce: { failures: 3, window: '2m' },
    },
  } as Service;
  const config = {
    ...opts.config,
    services: [benchService],
    triggers: { intake: { host: '127.0.0.1', port: 0 } },
  } as Config;
  const guardianId = `regionshift-guardian-bench-${service.name}-${Date.now()}`;
  const deliverer = new Deliverer({
    client,
    config,
    runbook: loadRunbook(builtinRunbookPath('failover')),
    guardianWorkflowId: () => guardianId,
    // Held at the approval gate after preflight: the bench measures, then aborts; nothing changes.
    settingsExtra: { approval: { required: true, timeout: '10m', onTimeout: 'reject', approvers: [] } },
  });
  // The writer from the service's history, but not its last run: after the bench's own failovers
  // the cooldown would hold the alarm's run back, and the cooldown is not what is measured here.
  const { primary: writer } = await guardianSeed(client, service.name);
  const seed = writer ? { primary: writer } : {};
  const settings = deliverer.settingsOf(service.name);
  const input: GuardianInput = { service: service.name, settings, seed };
  await client.workflow.start('guardian', {
    workflowId: guardianId,
    taskQueue: CONTROL_TASK_QUEUE,
    args: [input],
    staticSummary: 'bench guardian (bench/intake.ts)',
  });
  const primary = writer ?? service.regions[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-bench-intake-'));
  const journal = opts.direct
    ? undefined
    : await AlarmJournal.open({ path: join(dir, 'journal.jsonl'), forward: deliverer, log: say });
  const server = await startIntakeServer({
    config,
    sink: journal ?? deliverer,
    secrets: { alertmanager: TOKEN },
    log: () => undefined,
  });
  const url = `${server.url}/alertmanager`;

  const post = async (): Promise<void> => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: alertmanagerBody(ALARM, primary),
    });
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
      return r.runId !== previousRunId && r.steps[0]?.startedAt ? r : undefined;
    }, 30_000);
    runStarted = true;
    const thresholdToFirstStepMs = Date.parse(rec.steps[0]!.startedAt!) - t0;
    if (thresholdToFirstStepMs < 0)
      throw new Error(
        `bench: run ${rec.runId} started its first step before the threshold alarm was sent: not the alarm's run`,
      );
    say(
      `  threshold (alarm ${failures} of ${failures}) → first step: ${thresholdToFirstStepMs} ms (run ${rec.runId}, trigger ${rec.trigger})`,
    );

    // 2. The storm, while the run is in progress (its alarms are attached to it), from senders on a
    // thread of their own (bench/intake-load.ts): a burst for throughput, then paced for latency.
    const send = (extra: Partial<LoadInput>) =>
      new Promise<LoadResult>((resolve, reject) => {
        const loadInput: LoadInput = {
          url,
          token: TOKEN,
          alarm: ALARM,
          region: primary,
          deliveries,
          concurrency,
          ...extra,
        };
        const w = new Worker(join(__dirname, 'intake-load.js'), { workerData: loadInput });
        w.once('message', (m: LoadResult | { error: string }) => {
          if ('error' in m) return reject(new Error(`bench: the senders failed: ${m.error}`));
          const refused = Object.entries(m.statuses).filter(([status]) => status !== '202');
          if (refused.length > 0)
            return reject(
              new Error(`bench: the intake answered ${refused.map(([st, n]) => `${st} ×${n}`).join(', ')}`),
            );
          resolve(m);
        });
        w.once('error', reject);
      });
    const signalsBefore = deliverer.signalsSent;
    const burst = await send({});
    const burstEnd = performance.now();
    await journal?.drained();
    const drainMs = Math.round(performance.now() - burstEnd);
    const signals = deliverer.signalsSent - signalsBefore;
    const paced = await send({ rate });
    await journal?.drained();
    const burstSorted = [...burst.latencies].sort((a, b) => a - b);
    const pacedSorted = [...paced.latencies].sort((a, b) => a - b);
    const figures: IntakeFigures = {
      intake: {
        p50Ms: round(percentile(pacedSorted, 50)),
        p99Ms: round(percentile(pacedSorted, 99)),
        ratePerSecond: rate,
        deliveriesPerSecond: Math.round(deliveries / (burst.wallMs / 1000)),
        burstP50Ms: round(percentile(burstSorted, 50)),
        burstP99Ms: round(percentile(burstSorted, 99)),
        thresholdToFirstStepMs,
        drainMs,
        deliveries,
        concurrency,
        signals,
        journal: journal !== undefined,
      },
    };
    const f = figures.intake;
    const how = journal ? '' : ' (direct, no journal)';
    say(
      `  burst${how}: ${deliveries} deliveries from ${concurrency} senders at once: ${f.deliveriesPerSecond}/s accepted (queueing: p50 ${f.burstP50Ms} ms, p99 ${f.burstP99Ms} ms); the guardian had them all ${drainMs} ms after the last 202 (${signals} signals)`,
    );
    say(`  paced${how}: ${deliveries} deliveries at ${rate}/s: p50 ${f.p50Ms} ms, p99 ${f.p99Ms} ms`);
    const w = journal?.stats().writeMs;
    if (w)
      say(
        `  journal writes (O_DSYNC, group commit): p50 ${w.p50} ms, p99 ${w.p99} ms, max ${w.max} ms over the last ${w.samples}`,
      );
    return figures;
  } finally {
    await server.close();
    await journal?.close();
    rmSync(dir, { recursive: true, force: true });
    if (runStarted) {
      await abortRun(client, runId, { by: 'bench', reason: 'bench/intake.ts: measured, not a real failover' }).catch(
        () => undefined,
      );
      await awaitRecord(client, runId).catch(() => undefined);
    }
    await client.workflow
      .getHandle(guardianId)
      .terminate('bench over')
      .catch(() => undefined);
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
        {
          path: 'intake.p99Ms',
          what: `p99 of ${f.intake.deliveries} alarm deliveries at ${f.intake.ratePerSecond}/s (HTTP → on disk in the intake's journal)`,
          samples: [f.intake.p99Ms],
          targetMax: 50,
          reproduce,
        },
        {
          path: 'intake.thresholdToFirstStepMs',
          what: "threshold alarm sent → the failover's first step started",
          samples: [f.intake.thresholdToFirstStepMs],
          targetMax: 1000,
          reproduce,
        },
      );
      out.notes.push(
        `intake: burst of ${f.intake.deliveries} from ${f.intake.concurrency} senders: ${f.intake.deliveriesPerSecond} deliveries/s (queueing p99 ${f.intake.burstP99Ms} ms); paced at ${f.intake.ratePerSecond}/s p50 ${f.intake.p50Ms} ms; the guardian had the burst ${f.intake.drainMs} ms after its last 202, in ${f.intake.signals} signals`,
      );
    } catch (err) {
      out.failures.push(`intake: ${(err as Error).message}`);
    }
    return out;
  },
};

async function standalone(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      deliveries: { type: 'string' },
      concurrency: { type: 'string' },
      rate: { type: 'string' },
      direct: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const say = (line: string) => (values.json ? console.error(line) : console.log(line));
  const { makeBenchStack } = await import('./temp-stack');
  const { BENCH_POLICY } = await import('./failover');
  const { connect } = await import('../src/lib/runs/client');
  const stack = await makeBenchStack(BENCH_POLICY);
  let client: Client | undefined;
  try {
    say(`bench stack in ${stack.dir}`);
    const up = await stack.up((line) => say(`  ${line}`));
    if (!up.ok) throw new Error('the bench stack did not come up');
    client = await connect(stack.config);
    const f = await intakeBench({
      config: stack.config,
      client,
      say,
      direct: values.direct,
      ...(values.deliveries ? { deliveries: Number(values.deliveries) } : {}),
      ...(values.concurrency ? { concurrency: Number(values.concurrency) } : {}),
      ...(values.rate ? { rate: Number(values.rate) } : {}),
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
