// controlPlane.failoverMs: on a stack of the bench's own with a replicated control plane (one
// Temporal cluster per region), the writer region is killed whole (PostgreSQL, worker and its
// Temporal cluster, where the namespace is active); at once the namespace is failed over to the
// surviving cluster (as `failover --mode unplanned --control-plane` does) and the unplanned run
// starts there. Timed from the kill to the database runbook's first step starting on the
// survivor. Detection is not in this figure (the detection section measures it on its own): the
// failover is asked for at the kill.
//
// controlPlane.autoFailoverMs: the same loss with no operator: an intake (as `regionshift intake`
// runs it, its client following the namespace) gets the alarm at the kill, waits out
// temporal.controlPlaneFailoverAfter (AUTO_SILENCE here), fails the namespace over itself and
// delivers; the guardian on the survivor starts the unplanned run. Same span, same clock.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { temporal } from '@temporalio/proto';
import type { Client } from '@temporalio/client';
import { killRegion } from '../src/demo/region';
import { runFailover } from '../src/demo/runs';
import { awaitRecord, connect, connectFollowing } from '../src/lib/runs/client';
import { runIntake, type RunningIntake } from '../src/intake/service';
import type { FollowingClient } from '../src/lib/runs/following';
import { runWorkflowId } from '../src/contract/runbook/ids';
import { guardianWorkflowId } from '../src/contract/guardian/ids';
import type { Config } from '../src/lib/config/schema';
import { readState } from '../src/stack/state';
import { clusterComponentName } from '../src/stack/replicated';
import { endpointOf, failoverControlPlane } from '../src/lib/runs/control-plane';
import { BENCH_POLICY } from './failover';
import type { BenchSection, SectionResult } from './section';
import { spread } from './stats';
import { makeBenchStack, withStackEnv, type BenchStack } from './temp-stack';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
/** Each run needs a fresh stack (the lost region's database does not come back by itself). */
const MAX_RUNS = 5;
const TARGET_MS = 30_000;
/** The intake's wait for the active cluster's silence in the automatic runs (the default is 60s). */
const AUTO_SILENCE = '5s';
const AUTO_SILENCE_MS = 5_000;
const AM_TOKEN = 'bench-alertmanager-token';

/** The intake of the automatic runs: the ledger's primary-down alarm, one signal enough. */
async function startIntake(
  config: Config,
  dir: string,
): Promise<{ intake: RunningIntake; client: FollowingClient; log: string[] }> {
  const c: Config = structuredClone(config);
  c.temporal.controlPlaneFailoverAfter = AUTO_SILENCE;
  (c.services[0] as { triggers?: unknown }).triggers = {
    alarms: [{ source: 'alertmanager', name: 'LedgerPrimaryDown', regionLabel: 'region' }],
    debounce: { failures: 1, window: '2m' },
  };
  (c as { triggers?: unknown }).triggers = { intake: { port: 0 } };
  const log: string[] = [];
  const client = await connectFollowing(c, { failover: true, log: (l) => void log.push(l) });
  const intake = await runIntake({
    config: c,
    client,
    journalPath: join(dir, 'bench-intake-journal.jsonl'),
    secrets: { alertmanager: AM_TOKEN },
    log: (l) => void log.push(l),
  });
  return { intake, client, log };
}

async function postPrimaryDown(intake: RunningIntake, region: string): Promise<void> {
  const now = new Date().toISOString();
  const res = await fetch(`${intake.server.url}/alertmanager`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${AM_TOKEN}` },
    body: JSON.stringify({
      version: '4',
      status: 'firing',
      receiver: 'regionshift',
      alerts: [
        {
          status: 'firing',
          labels: { alertname: 'LedgerPrimaryDown', region, severity: 'page' },
          annotations: {},
          startsAt: now,
          endsAt: '0001-01-01T00:00:00Z',
          fingerprint: `bench-${region}`,
        },
      ],
    }),
  });
  if (res.status !== 202) throw new Error(`the intake answered the alarm with ${res.status}: ${await res.text()}`);
}

/** A live process's resident memory, MiB (/proc/<pid>/status VmRSS). */
function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return kb ? Math.round(Number(kb) / 1024) : 0;
}

/** When the run's first activity started, from the survivor's history (server clock, this machine). */
const eventMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined): number =>
  t ? Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : 0;

async function firstStepStartedAt(client: Client, workflowId: string, runId: string): Promise<number> {
  const h = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const started = (h.events ?? []).find(
    (e) => e.eventType === temporal.api.enums.v1.EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
  );
  if (!started?.eventTime) throw new Error(`run ${runId} has no started activity in its history`);
  return eventMs(started.eventTime);
}

/**
 * How long the guardian's alarm waited for a control worker: its signal in the guardian's history
 * → the next workflow task started there. After the namespace moves, the survivor's worker takes
 * it; a long wait here is time spent before the guardian could decide anything.
 */
async function guardianPickupMs(client: Client, service: string, after: number): Promise<number | undefined> {
  const { EventType } = temporal.api.enums.v1;
  const h = await client.workflow.getHandle(guardianWorkflowId(service)).fetchHistory();
  const events = (h.events ?? []).filter((e) => eventMs(e.eventTime) >= after);
  const signal = events.findIndex(
    (e) =>
      e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED &&
      e.workflowExecutionSignaledEventAttributes?.signalName === 'alarm',
  );
  const started = events.slice(signal + 1).find((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED);
  return signal >= 0 && started ? eventMs(started.eventTime) - eventMs(events[signal]!.eventTime) : undefined;
}

export const controlPlaneSection: BenchSection = {
  name: 'control-plane',
  async run(ctx) {
    const out: SectionResult = { figures: {}, checks: [], notes: [], failures: [] };
    const runs = Math.min(Math.max(ctx.options.unplannedRuns, 1), MAX_RUNS);
    const samples: number[] = [];
    const namespaceMs: number[] = [];
    const rss: number[] = [];
    for (let i = 0; i < runs; i++) {
      await withStackEnv(async () => {
        let stack: BenchStack | undefined;
        let client: Client | undefined;
        try {
          stack = await makeBenchStack(BENCH_POLICY, { controlPlane: 'replicated' });
          ctx.say(`control-plane stack ${i + 1}/${runs} in ${stack.dir} (one Temporal cluster per region):`);
          const up = await stack.up((line) => ctx.say(`  ${line}`));
          if (!up.ok)
            throw new Error(
              `the replicated stack did not come up: ${up.components
                .filter((c) => c.health === 'down')
                .map((c) => `${c.name}: ${c.detail}`)
                .join('; ')}`,
            );
          const config = stack.config;
          const service = config.services[0]!;
          // Each cluster's memory once the stack is up and linked, before anything is killed.
          const procs = readState(stack.home).processes;
          for (const r of service.regions) {
            const pid = procs[clusterComponentName(r)]?.pid;
            if (pid) rss.push(rssMiB(pid));
          }
          const killed = await killRegion({ config, configFile: stack.configFile, home: stack.home }, service, WEST);
          const t0 = performance.now();
          const epoch0 = Date.now();
          await failoverControlPlane(config, EAST);
          namespaceMs.push(Math.round(performance.now() - t0));
          client = await connect(config, { address: endpointOf(config, EAST).address });
          const run = await runFailover(client, config, {
            service: service.name,
            target: EAST,
            mode: 'unplanned',
            requestedBy: 'bench',
            trigger: 'bench',
            triggeredAt: killed.at,
          });
          if (run.record.status !== 'succeeded') {
            out.failures.push(`control-plane run ${i + 1}: ${run.record.status}: ${run.record.error ?? ''}`);
            return;
          }
          const ms = (await firstStepStartedAt(client, run.workflowId, run.runId)) - epoch0;
          samples.push(ms);
          ctx.say(
            `  writer region ${WEST} killed with its cluster → first step on ${EAST}: ${ms} ms (namespace failover ${namespaceMs.at(-1)} ms)`,
          );
        } catch (err) {
          out.failures.push(`control-plane run ${i + 1}: ${(err as Error).message}`);
        } finally {
          await client?.connection.close().catch(() => undefined);
          await stack?.destroy().catch((err: Error) => out.failures.push(err.message));
        }
      });
    }
    // The automatic path: no operator, the intake moves the namespace.
    const autoSamples: number[] = [];
    for (let i = 0; i < runs; i++) {
      await withStackEnv(async () => {
        let stack: BenchStack | undefined;
        let client: Client | undefined;
        let auto: Awaited<ReturnType<typeof startIntake>> | undefined;
        try {
          stack = await makeBenchStack(BENCH_POLICY, { controlPlane: 'replicated' });
          ctx.say(`control-plane stack ${i + 1}/${runs}, automatic, in ${stack.dir}:`);
          const up = await stack.up((line) => ctx.say(`  ${line}`));
          if (!up.ok) throw new Error('the replicated stack did not come up');
          const config = stack.config;
          const service = config.services[0]!;
          auto = await startIntake(config, stack.dir);
          const killed = await killRegion({ config, configFile: stack.configFile, home: stack.home }, service, WEST);
          const epoch0 = Date.now();
          await postPrimaryDown(auto.intake, WEST);
          client = await connect(config, { address: endpointOf(config, EAST).address });
          const deadline = Date.now() + 180_000;
          let runId: string | undefined;
          let runStartedAt = 0;
          while (!runId) {
            const desc = await client.workflow
              .getHandle(runWorkflowId(service.name))
              .describe()
              .catch(() => undefined);
            if (desc && desc.startTime.getTime() >= killed.at) {
              runId = desc.runId;
              runStartedAt = desc.startTime.getTime();
            } else if (Date.now() > deadline)
              throw new Error(`no run started on ${EAST} within 180 s; intake: ${auto.log.slice(-3).join(' | ')}`);
            else await new Promise((r) => setTimeout(r, 200));
          }
          const rec = await awaitRecord(client, runWorkflowId(service.name), runId);
          if (rec.status !== 'succeeded') {
            out.failures.push(`control-plane automatic run ${i + 1}: ${rec.status}: ${rec.error ?? ''}`);
            return;
          }
          const firstStep = (await firstStepStartedAt(client, runWorkflowId(service.name), runId)) - epoch0;
          autoSamples.push(firstStep);
          const pickup = await guardianPickupMs(client, service.name, killed.at);
          ctx.say(
            `  writer region ${WEST} killed with its cluster, alarm to the intake → run started ${runStartedAt - epoch0} ms (the alarm waited ${pickup ?? '?'} ms for a control worker), first step on ${EAST}: ${firstStep} ms (${auto.log.find((l) => l.includes('failed over')) ?? 'no move logged'})`,
          );
        } catch (err) {
          out.failures.push(`control-plane automatic run ${i + 1}: ${(err as Error).message}`);
        } finally {
          await auto?.intake.stop().catch(() => undefined);
          await auto?.client.close().catch(() => undefined);
          await client?.connection.close().catch(() => undefined);
          await stack?.destroy().catch((err: Error) => out.failures.push(err.message));
        }
      });
    }

    const reproduce = `npm run bench -- --only control-plane --unplanned-runs ${runs}`;
    out.checks.push({
      path: 'controlPlane.autoFailoverMs',
      what: `writer region killed with its Temporal cluster, the alarm posted to an intake at the kill → the database runbook's first step on the surviving cluster, no operator (the intake waits ${AUTO_SILENCE} of silence, temporal.controlPlaneFailoverAfter; target: the manual target plus that wait)`,
      samples: autoSamples,
      targetMax: TARGET_MS + AUTO_SILENCE_MS,
      reproduce,
    });
    out.checks.push({
      path: 'controlPlane.failoverMs',
      what: "writer region killed with its Temporal cluster → the database runbook's first step on the surviving cluster (failover asked for at the kill: no detection)",
      samples,
      targetMax: TARGET_MS,
      reproduce,
    });
    out.figures = {
      controlPlane: {
        failoverMs: spread(samples).median,
        autoFailoverMs: spread(autoSamples).median,
        autoSilenceMs: AUTO_SILENCE_MS,
        autoSamples,
        namespaceFailoverMs: spread(namespaceMs).median,
        serverRssMiB: spread(rss).median,
        runs: samples.length,
        samples,
      },
    };
    out.notes.push(
      "control-plane: two regions, one full Temporal server each (SQLite); each run on a fresh stack, the writer region killed as soon as it is up; the namespace failed over through the survivor, then the unplanned run started there; serverRssMiB: one server's resident memory after stack up",
    );
    return out;
  },
};
