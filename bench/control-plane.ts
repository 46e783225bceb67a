// controlPlane.failoverMs: on a stack of the bench's own with a replicated control plane (one
// Temporal cluster per region), the writer region is killed whole (PostgreSQL, worker and its
// Temporal cluster, where the namespace is active); at once the namespace is failed over to the
// surviving cluster (as `failover --mode unplanned --control-plane` does) and the unplanned run
// starts there. Timed from the kill to the database runbook's first step starting on the
// survivor. Detection is not in this figure (the detection section measures it on its own): the
// failover is asked for at the kill.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { temporal } from '@temporalio/proto';
import type { Client } from '@temporalio/client';
import { killRegion } from '../src/demo/region';
import { runFailover } from '../src/demo/runs';
import { connect } from '../src/lib/runs/client';
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
const MAX_RUNS = 2;
const TARGET_MS = 30_000;

/** A live process's resident memory, MiB (/proc/<pid>/status VmRSS). */
function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return kb ? Math.round(Number(kb) / 1024) : 0;
}

/** When the run's first activity started, from the survivor's history (server clock, this machine). */
async function firstStepStartedAt(client: Client, workflowId: string, runId: string): Promise<number> {
  const h = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const started = (h.events ?? []).find(
    (e) => e.eventType === temporal.api.enums.v1.EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
  );
  const t = started?.eventTime;
  if (!t) throw new Error(`run ${runId} has no started activity in its history`);
  return Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
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
    const reproduce = `npm run bench -- --only control-plane --unplanned-runs ${runs}`;
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
