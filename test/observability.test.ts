// regionshift's own metrics and traces on real parts (docs/observability.md): the Temporal dev
// server, a PostgreSQL primary and streaming standby, moto, and region workers run as the CLI
// runs them. A planned failover must show in the worker's /metrics (its counter, an RTO
// observation, step durations, the Temporal SDK's metrics), alarms in the intake's, and the
// run as one trace with a span per step and per activity. Runs recorded before the interceptors
// existed must replay with the bundle that has them. The Grafana dashboard in docs/grafana may
// only query what these endpoints serve.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv from 'ajv';
import { Client } from '@temporalio/client';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataConverterFromEnv } from '../src/lib/codec/env';
import { runIntake, type RunningIntake } from '../src/intake/service';
import type { RunRecord } from '../src/contract/runbook/types';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { clientInterceptors, startTracing, workflowExporterSink } from '../src/lib/tracing';
import { Worker } from '@temporalio/worker';
import { WORKFLOW_BUNDLE } from '../workers/bundle';
import { createRegionWorkers, type RegionWorkers } from '../workers/region';
import { createFailoverEnv, type FailoverEnv } from './support/failover-env';
import { waitFor } from './support/wait';
import { GRAFANA_DASHBOARD_SCHEMA } from './support/grafana-dashboard-schema';
import { find, parseExposition, serves, type Exposition } from './support/prom-text';
import { latestReadiness } from '../src/lib/readiness';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const AM_TOKEN = 'alertmanager-bearer-token';
const BIN = join(__dirname, '..', 'bin', 'regionshift.js');
const DASHBOARD = join(__dirname, '..', 'docs', 'grafana', 'regionshift.json');

let fe: FailoverEnv;
let dir: string;
let configFile: string;
const processes: ChildProcess[] = [];
/** What each /metrics served, for the dashboard check. */
const served: Record<string, Exposition> = {};

interface WorkerProcess {
  child: ChildProcess;
  metricsUrl: string;
  out: () => string;
}

/** `regionshift worker`, as the local stack starts it; resolves once it printed its ready line. */
async function spawnWorker(args: string[], env: Record<string, string> = {}): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [BIN, 'worker', ...args, '--config', configFile], {
    env: { ...process.env, TEMPORAL_ADDRESS: fe.config.temporal.address, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  processes.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const deadline = Date.now() + 60_000;
  while (!out.includes('regionshift worker ready')) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`regionshift worker ${args.join(' ')} did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const url = /metrics=(\S+)/.exec(out)?.[1];
  if (!url) throw new Error(`the ready line names no metrics endpoint:\n${out}`);
  return { child, metricsUrl: url, out: () => out };
}

/** Runs the CLI to its end: exit code and everything it printed. */
function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, TEMPORAL_ADDRESS: fe.config.temporal.address, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    processes.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return parseExposition(await res.text());
}

async function run(client: Client, target: string): Promise<RunRecord> {
  const started = await startRun(client, fe.input({ target }));
  return awaitRecord(client, started.workflowId, started.runId);
}

/** Runs to replay with the workers' bundle: one recorded before tracing and metrics (as in-flight runs were), one after. */
const histories: {
  workflowId: string;
  history: Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>;
}[] = [];

async function keepHistory(rec: RunRecord): Promise<void> {
  histories.push({
    workflowId: rec.workflowId,
    history: await fe.client.workflow.getHandle(rec.workflowId, rec.runId).fetchHistory(),
  });
}

beforeAll(async () => {
  fe = await createFailoverEnv();
  // A run as the code before this change recorded it: the rig's workers have no interceptors.
  const before = await run(fe.client, EAST);
  expect(before.status).toBe('succeeded');
  await keepHistory(before);
  // The rig's in-process workers make way for workers built as the CLI builds them.
  await Promise.all(['control', WEST, EAST].map((w) => fe.stopRegion(w)));
  dir = mkdtempSync(join(tmpdir(), 'regionshift-observability-'));
  configFile = join(dir, 'regionshift.json');
  writeFileSync(configFile, JSON.stringify(fe.config));
});

afterAll(async () => {
  await Promise.allSettled(processes.map(stop));
  await fe?.teardown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** An OTLP/HTTP receiver (JSON, as @opentelemetry/exporter-trace-otlp-http sends): the span names it was sent. */
async function startOtlpReceiver(): Promise<{ url: string; spans: string[]; close: () => Promise<void> }> {
  const spans: string[] = [];
  const server = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') {
        const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: { name: string }[] }[] }[] };
        for (const rs of doc.resourceSpans)
          for (const ss of rs.scopeSpans) for (const sp of ss.spans) spans.push(sp.name);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    spans,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

describe('metrics', () => {
  let west: WorkerProcess;
  let east: WorkerProcess;
  let otlp: Awaited<ReturnType<typeof startOtlpReceiver>>;

  afterAll(async () => {
    await otlp?.close();
  });

  it('a planned failover shows in the /metrics of the worker that ran it: the run, its RTO and RPO, its steps, the lag it saw, the Temporal SDK', async () => {
    // Ports from the environment (how the local stack gives each worker its own), 0 = any free one;
    // spans to an OTLP endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT says.
    otlp = await startOtlpReceiver();
    const env = {
      REGIONSHIFT_METRICS_PORT: '0',
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    };
    [west, east] = await Promise.all([
      spawnWorker(['--region', WEST], env),
      spawnWorker(['--region', EAST, '--no-control'], env),
    ]);
    expect(west.out()).toMatch(
      /metrics=http:\/\/127\.0\.0\.1:\d+\/metrics \(REGIONSHIFT_METRICS_PORT; with the Temporal SDK's\) traces=OTLP/,
    );
    // The control worker warmed up before saying it was ready (workflows/warm-up.ts), on itself:
    // started eagerly, its task taken by this process, never counted as a run (below).
    expect(west.out()).toMatch(/version=\S+; warmed up in \d+ ms\n/);
    expect(east.out()).not.toContain('warm');
    const warmUps = await waitFor('the warm-up in the visibility store', async () => {
      const found = [];
      for await (const w of fe.client.workflow.list({ query: "WorkflowType = 'warmUp'" })) found.push(w);
      return found.length > 0 && found;
    });
    expect(warmUps.map((w) => w.status.name)).toEqual(['COMPLETED']);
    const warm = fe.client.workflow.getHandle(warmUps[0]!.workflowId);
    expect(await warm.result()).toBe('succeeded: never skipped');
    const takenBy = (await warm.fetchHistory()).events?.flatMap((e) =>
      e.workflowTaskStartedEventAttributes ? [e.workflowTaskStartedEventAttributes.identity] : [],
    );
    expect(new Set(takenBy)).toEqual(new Set([`${west.child.pid}@${hostname()}`]));

    const before = await scrape(west.metricsUrl);
    expect(find(before, 'regionshift_runs_total')).toEqual([]);

    const rec = await run(fe.client, WEST);
    expect(rec.status).toBe('succeeded');
    expect(rec.rtoMs).toBeGreaterThan(0);
    await keepHistory(rec);

    const m = await scrape(west.metricsUrl);
    served.worker = m;
    const labels = { kind: 'failover', mode: 'planned', service: 'ledger' };
    expect(find(m, 'regionshift_runs_total', { ...labels, result: 'succeeded' }).map((s) => s.value)).toEqual([1]);
    const rto = find(m, 'regionshift_run_rto_seconds_count', labels);
    expect(rto.map((s) => s.value)).toEqual([1]);
    const rtoSum = find(m, 'regionshift_run_rto_seconds_sum', labels)[0]!.value;
    expect(rtoSum).toBeCloseTo(rec.rtoMs! / 1000, 3);
    // A fenced, caught-up promotion loses nothing: RPO 0, in the lowest bucket.
    expect(find(m, 'regionshift_run_rpo_seconds_bucket', { ...labels, le: '0' }).map((s) => s.value)).toEqual([1]);
    // One observation per step the run went through, under the step's own id.
    const ran = rec.steps.filter((s) => s.startedAt && s.endedAt);
    expect(ran.length).toBeGreaterThan(4);
    for (const s of ran) {
      expect(
        find(m, 'regionshift_step_duration_seconds_count', { kind: 'failover', step: s.id, status: s.status }).map(
          (x) => x.value,
        ),
        s.id,
      ).toEqual([1]);
    }
    // The Temporal SDK's own metrics, served on the same endpoint.
    expect(m.samples.some((s) => s.name.startsWith('temporal_'))).toBe(true);
    expect(find(m, 'temporal_workflow_completed_total').length).toBeGreaterThan(0);

    // Replication lag, as each region's worker last saw its node (the run describes every region
    // at its end): us-east-1 is the standby now, us-west-2 the writer, which has no lag to show.
    expect(m.samples.filter((s) => s.name.startsWith('regionshift_replication_') && s.labels.region === WEST)).toEqual(
      [],
    );
    const e = await scrape(east.metricsUrl);
    served.eastWorker = e;
    const seen = find(e, 'regionshift_replication_lag_observed_timestamp_seconds', { service: 'ledger', region: EAST });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.value).toBeGreaterThan(Date.now() / 1000 - 120);
    for (const s of find(e, 'regionshift_replication_replay_lag_bytes', { service: 'ledger', region: EAST }))
      expect(s.value).toBeGreaterThanOrEqual(0);
    // Runs are counted by the worker that ran the workflow, once: the activity-only worker has none.
    expect(find(e, 'regionshift_runs_total')).toEqual([]);

    // Both workers exported the run's spans by OTLP: the run, its steps, the activities each ran.
    await waitFor(
      "the run's spans at the OTLP endpoint",
      async () =>
        otlp.spans.includes('RunWorkflow:runbook') &&
        otlp.spans.includes('Step:promote') &&
        otlp.spans.includes('RunActivity:dbVerifyWrites'),
      20_000,
    );
    expect(otlp.spans).toContain('RunActivity:dbFenceWrites'); // us-east-1 was the writer: its worker fenced it
  });

  it("the intake counts accepted and rejected alarms, and serves the guardians' states and the last readiness evaluation", async () => {
    (fe.config.services[0] as { triggers?: unknown }).triggers = {
      alarms: [{ source: 'alertmanager', name: 'LedgerPrimaryDown', regionLabel: 'region' }],
      debounce: { failures: 3, window: '2m' },
    };
    (fe.config as { triggers?: unknown }).triggers = { intake: { port: 0 } };
    let intake: RunningIntake | undefined;
    try {
      const evaluation = await latestReadiness(fe.client, fe.config, fe.config.services[0]!, { now: true });
      intake = await runIntake({
        journalPath: join(dir, 'journal.jsonl'),
        config: fe.config,
        client: fe.client,
        secrets: { alertmanager: AM_TOKEN },
        log: () => undefined,
      });
      const now = new Date().toISOString();
      const alarm = (status: string) =>
        JSON.stringify({
          version: '4',
          status,
          receiver: 'regionshift',
          groupKey: '{}',
          groupLabels: {},
          commonLabels: {},
          commonAnnotations: {},
          externalURL: 'http://alertmanager.test',
          alerts: [
            {
              status,
              labels: { alertname: 'LedgerPrimaryDown', region: WEST },
              annotations: {},
              startsAt: now,
              endsAt: now,
              generatorURL: 'http://prometheus.test',
              fingerprint: 'f00d',
            },
          ],
        });
      const post = (token: string) =>
        fetch(`${intake!.server.url}/alertmanager`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: alarm('resolved'),
        });
      expect((await post(AM_TOKEN)).status).toBe(202);
      expect((await post('wrong-token')).status).toBe(401);

      const m = await scrape(`${intake.server.url}/metrics`);
      served.intake = m;
      expect(
        find(m, 'regionshift_intake_alarms_total', { endpoint: 'alertmanager', outcome: 'accepted' }).map(
          (s) => s.value,
        ),
      ).toEqual([1]);
      expect(
        find(m, 'regionshift_intake_rejected_total', { endpoint: 'alertmanager', status: '401' }).map((s) => s.value),
      ).toEqual([1]);
      expect(find(m, 'regionshift_intake_pending_alarms')).toHaveLength(1);
      // The guardian answers (the west worker runs it): exactly one state is 1, and it is a known one.
      const states = find(m, 'regionshift_guardian_state', { service: 'ledger' });
      expect(states.filter((s) => s.value === 1).map((s) => s.labels.state)).toEqual([
        expect.stringMatching(/^(idle|debouncing|cooldown)$/),
      ]);
      // The readiness schedule's last evaluation, what the alert RegionshiftNotReady watches.
      expect(
        find(m, 'regionshift_readiness', { service: 'ledger' })
          .filter((s) => s.value === 1)
          .map((s) => s.labels.status),
      ).toEqual([evaluation.status]);
    } finally {
      await intake?.stop();
    }
  });

  it('an invalid metrics port is refused before anything starts, naming the setting', async () => {
    const bad = await runCli(['worker', '--region', WEST, '--config', configFile], {
      REGIONSHIFT_METRICS_PORT: 'ninety',
    });
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('REGIONSHIFT_METRICS_PORT="ninety" is not a port number');

    const flag = await runCli(['worker', '--region', WEST, '--config', configFile, '--metrics-port', '70000']);
    expect(flag.code).toBe(2);
    expect(flag.out).toContain('--metrics-port="70000" is not a port number');

    const badConfig = join(dir, 'bad-metrics.json');
    writeFileSync(badConfig, JSON.stringify({ ...fe.config, metrics: { workers: { [WEST]: 70000 } } }));
    const cfg = await runCli(['worker', '--region', WEST, '--config', badConfig]);
    expect(cfg.code).toBe(2);
    expect(cfg.out).toMatch(/metrics\.workers\.us-west-2.*must be a port number/);

    // A port another process holds: named with the setting it came from.
    const holder: Server = createServer();
    await new Promise<void>((ok) => holder.listen(0, '127.0.0.1', () => ok()));
    const taken = (holder.address() as { port: number }).port;
    try {
      const inUse = join(dir, 'in-use.json');
      writeFileSync(inUse, JSON.stringify({ ...fe.config, metrics: { workers: { [WEST]: taken } } }));
      const busy = await runCli(['worker', '--region', WEST, '--no-control', '--config', inUse]);
      expect(busy.code).toBe(2);
      expect(busy.out).toContain(`metrics port ${taken} (metrics.workers.us-west-2) is already in use`);
    } finally {
      holder.close();
    }
  });

  it('the spawned workers stop cleanly on SIGTERM', async () => {
    await Promise.all([stop(west.child), stop(east.child)]);
    expect(west.child.exitCode).toBe(0);
    expect(east.child.exitCode).toBe(0);
  });
});

describe('traces', () => {
  it('a failover is one trace: a root for the run, a span per step and per activity', async () => {
    const exporter = new InMemorySpanExporter();
    const processor = new SimpleSpanProcessor(exporter);
    const common = {
      config: fe.config,
      address: fe.config.temporal.address,
      namespace: fe.config.temporal.namespace,
      metricsPort: { port: 0, setting: 'test' },
      spanProcessor: processor,
    };
    const rws: RegionWorkers[] = [];
    const running: Promise<void>[] = [];
    try {
      rws.push(await createRegionWorkers({ ...common, region: WEST, control: true }));
      rws.push(await createRegionWorkers({ ...common, region: EAST, control: false }));
      for (const rw of rws) running.push(...rw.workers.map((w) => w.run()));
      // As `regionshift worker` does: new runs start on this control worker's version.
      await rws[0]!.makeCurrent();
      const tracing = startTracing('regionshift-test-client', processor, {})!;
      const client = new Client({
        connection: fe.client.connection,
        namespace: fe.config.temporal.namespace,
        dataConverter: dataConverterFromEnv(),
        interceptors: clientInterceptors(tracing),
      });

      const rec = await run(client, EAST);
      expect(rec.status).toBe('succeeded');
      await processor.forceFlush();

      const spans = exporter.getFinishedSpans();
      const rootOf = (s: ReadableSpan) =>
        spans.find((r) => r.spanContext().traceId === s.spanContext().traceId && !r.parentSpanId);
      const start = spans.filter((s) => s.name === 'StartWorkflow:runbook');
      expect(start).toHaveLength(1);
      const traceId = start[0]!.spanContext().traceId;
      const trace = spans.filter((s) => s.spanContext().traceId === traceId);
      // One root, and every other span hangs off a span of the same trace.
      expect(trace.filter((s) => !s.parentSpanId).map((s) => s.name)).toEqual(['StartWorkflow:runbook']);
      const ids = new Set(trace.map((s) => s.spanContext().spanId));
      for (const s of trace) if (s.parentSpanId) expect(ids.has(s.parentSpanId), `${s.name}'s parent`).toBe(true);
      const runSpan = trace.find((s) => s.name === 'RunWorkflow:runbook')!;
      expect(runSpan.parentSpanId).toBe(start[0]!.spanContext().spanId);

      // A span per step the run went through, under the run, with the step's times.
      const ran = rec.steps.filter((s) => s.startedAt && s.endedAt);
      const stepSpans = trace.filter((s) => s.name.startsWith('Step:'));
      expect(stepSpans.map((s) => s.name).sort()).toEqual(ran.map((s) => `Step:${s.id}`).sort());
      for (const s of stepSpans) expect(s.parentSpanId).toBe(runSpan.spanContext().spanId);
      const promote = stepSpans.find((s) => s.name === 'Step:promote')!;
      expect(promote.attributes['regionshift.region']).toBe(EAST);

      // A span per activity: scheduled by the run, and run by the region's worker under it.
      for (const activity of [
        'dbDescribe',
        'dbFenceWrites',
        'dbPromoteAfterLag',
        'trafficShift',
        'dbVerifyWrites',
        'dbRejoinAsStandby',
      ]) {
        const scheduled = trace.filter((s) => s.name === `StartActivity:${activity}`);
        const ranBy = trace.filter((s) => s.name === `RunActivity:${activity}`);
        expect(scheduled.length, activity).toBeGreaterThan(0);
        expect(ranBy.length, activity).toBeGreaterThan(0);
        for (const r of ranBy) expect(scheduled.map((s) => s.spanContext().spanId)).toContain(r.parentSpanId);
      }
      // Nothing of this run leaked into another trace.
      expect(spans.filter((s) => s.name.startsWith('Step:') && rootOf(s) !== start[0])).toEqual([]);
    } finally {
      for (const rw of rws) for (const w of rw.workers) w.shutdown();
      await Promise.allSettled(running);
      await Promise.allSettled(rws.map((rw) => rw.close()));
    }
  });
});

describe('replay', () => {
  it("runs recorded before and after the interceptors replay with the workers' bundle", async () => {
    expect(histories).toHaveLength(2);
    const results: string[] = [];
    const sinks = { regionshiftMetrics: { runEnded: { fn: () => undefined } }, ...workflowExporterSink(undefined) };
    for await (const r of Worker.runReplayHistories(
      { workflowBundle: { codePath: WORKFLOW_BUNDLE }, sinks, dataConverter: dataConverterFromEnv() },
      histories,
    ))
      results.push(`${r.workflowId} ${r.error ? String(r.error) : 'ok'}`);
    expect(results).toEqual(histories.map((h) => `${h.workflowId} ok`));
  });
});

describe('the Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: { title: string; targets?: { expr: string }[] }[];
    templating: { list: { query?: unknown }[] };
  };

  it('is a valid Grafana dashboard', () => {
    const validate = new Ajv({ allErrors: true, strict: false }).compile(GRAFANA_DASHBOARD_SCHEMA);
    expect(validate(dashboard), JSON.stringify(validate.errors, null, 2)).toBe(true);
    // The schema would let a broken one through if it accepted anything: it does not.
    expect(validate({ ...dashboard, panels: [{ ...dashboard.panels[0], gridPos: { x: 0 } }] })).toBe(false);
    expect(validate({ ...dashboard, schemaVersion: 'new' })).toBe(false);
    // On Grafana's 24-column grid, inside it and no two panels on the same cells.
    const boxes = (
      dashboard.panels as unknown as { title: string; gridPos: { x: number; y: number; w: number; h: number } }[]
    ).map((p) => ({ title: p.title, ...p.gridPos }));
    for (const b of boxes) expect(b.x + b.w, b.title).toBeLessThanOrEqual(24);
    for (const [i, a] of boxes.entries()) {
      for (const b of boxes.slice(i + 1)) {
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect(overlap, `${a.title} / ${b.title}`).toBe(false);
      }
    }
  });

  it('queries only metrics that /metrics serves', () => {
    expect(Object.keys(served).sort(), 'the metrics tests ran first').toEqual(['eastWorker', 'intake', 'worker']);
    const queried = new Set<string>();
    for (const p of dashboard.panels) {
      for (const t of p.targets ?? [])
        for (const m of t.expr.matchAll(/\b(?:regionshift|temporal|process|nodejs)_[a-z0-9_]+/g)) queried.add(m[0]);
    }
    for (const v of dashboard.templating.list)
      for (const m of JSON.stringify(v.query ?? '').matchAll(/\b(?:regionshift|temporal)_[a-z0-9_]+/g))
        queried.add(m[0]);
    const names = [...queried];
    expect(names.length).toBeGreaterThan(8);
    const all = Object.values(served);
    const missing = names.filter((n) => !all.some((e) => serves(e, n)));
    expect(missing).toEqual([]);
  });
});
