// Failover figures: planned wall time and orchestration overhead (from each run's history), and
// unplanned RTO from the moment the primary dies (the run's own rtoMs, triggered at the kill).
import { standInSigner } from '../src/demo/approver';
import { postgresDatabase } from '../src/lib/config/schema';
import { presentIds, ensureLedger, nodeOf } from '../src/demo/ledger';
import { killRegion, rebuildPair } from '../src/demo/region';
import { runFailover, type FailoverRun } from '../src/demo/runs';
import { waitUntilStreaming } from '../src/stack/postgres';
import { createRoute53Activities } from '../activities/traffic/route53';
import { primaryRegionOf } from '../src/contract/traffic/plan';
import type { RunRecord } from '../src/contract/runbook/types';
import { runTiming, timelineOf, type RunTiming } from './history';
import { measureFloor } from './floor/measure';
import type { BenchContext, BenchSection, SectionResult } from './section';
import { spread, type Figures } from './stats';

const REQUESTER = 'bench';
const APPROVER = { by: 'bench-oncall', reason: 'bench: the primary was killed on purpose' };

/** The ledger policy the bench runs with (see the notes it prints); a gate nobody answers fails within a minute. */
export const BENCH_POLICY = `      rpoBudgetSeconds: 60
      allowDataLoss: true
      approval: { planned: none, unplanned: none }
      approvalTimeout: 1m
      lagTimeout: 30s`;

async function writer(ctx: BenchContext): Promise<string> {
  const region = primaryRegionOf(
    await createRoute53Activities(ctx.config).trafficDescribe({ service: ctx.service.name }),
  );
  if (!region) throw new Error('the traffic record points at no region');
  return region;
}

function other(ctx: BenchContext, region: string): string {
  return ctx.service.regions.find((r) => r !== region)!;
}

async function planned(ctx: BenchContext, out: SectionResult): Promise<Figures> {
  const { service, options, say } = ctx;
  const samples: Array<
    RunTiming & { runId: string; source: string; target: string; lostWrites: number; fenceMs: number }
  > = [];
  for (let i = 0; i < options.runs; i++) {
    const source = await writer(ctx);
    const target = other(ctx, source);
    // The previous run's rejoin restarts the old primary; a planned run needs it streaming again.
    await waitUntilStreaming(nodeOf(service, target));
    const run = await runFailover(ctx.client, ctx.config, {
      service: service.name,
      target,
      mode: 'planned',
      requestedBy: REQUESTER,
      trigger: 'bench',
    });
    if (run.record.status !== 'succeeded') {
      out.failures.push(`planned ${source} → ${target} ${run.record.status}: ${run.record.error ?? ''} (${run.uiUrl})`);
      break;
    }
    const t = await runTiming(ctx.client, run.workflowId, run.runId);
    if (options.timeline)
      for (const l of timelineOf(await ctx.client.workflow.getHandle(run.workflowId, run.runId).fetchHistory()))
        say(`    ${l}`);
    const lostWrites = await lost(ctx, run, 0);
    const fenceMs = stepMs(run.record, 'fence');
    samples.push({ runId: run.runId, source, target, ...t, lostWrites, fenceMs });
    say(
      `  planned ${i + 1}/${options.runs} ${source} → ${target}: wall ${t.wallMs} ms, fence ${fenceMs} ms, in providers ${t.providerMs} ms, overhead ${t.overheadMs} ms = start ${t.startMs} + ${t.gaps} gaps ${t.gapsMs} + close ${t.closeMs} (activity tasks queued ${t.queuedMs} ms, ${t.workflowTasks} workflow tasks ${t.workflowTaskMs} ms, the first ${t.firstTaskMs} ms), lost writes ${lostWrites}`,
    );
  }
  const wall = spread(samples.map((s) => s.wallMs));
  const overhead = spread(samples.map((s) => s.overheadMs));
  const reproduce = command(options.runs, 0, options.clients);
  // What the same number of one-at-a-time steps costs with no runbook code at all: the part of
  // the overhead that belongs to the server and the SDK, not to the interpreter.
  const steps = Math.round(spread(samples.map((s) => s.gaps)).median) + 1;
  const floor = samples.length ? await measureFloor(ctx.client, ctx.config, steps, options.runs) : [];
  for (const [i, f] of floor.entries())
    say(
      `  floor ${i + 1}/${floor.length}, ${steps} no-op steps one at a time: overhead ${f.overheadMs} ms = start ${f.startMs} + ${f.gaps} gaps ${f.gapsMs} + close ${f.closeMs} (${f.workflowTasks} workflow tasks ${f.workflowTaskMs} ms)`,
    );
  out.checks.push(
    {
      path: 'failover.planned.wallMs',
      what: 'planned failover, start → close',
      samples: samples.map((s) => s.wallMs),
      targetMax: 5_000,
      reproduce,
    },
    {
      path: 'failover.planned.fenceMs',
      what: 'the fence step (wall in pg_hba.conf, reload, proof, sessions ended): writes stop here',
      samples: samples.map((s) => s.fenceMs),
      reproduce,
    },
    {
      path: 'failover.planned.overheadMs',
      what: 'orchestration overhead per run (wall − time inside providers)',
      samples: samples.map((s) => s.overheadMs),
      targetMax: 100,
      reproduce,
    },
    {
      path: 'failover.planned.floorMs',
      what: `the same server and SDK running ${steps} no-op activities one at a time (bench/floor): the overhead of that many steps with no runbook code`,
      samples: floor.map((f) => f.overheadMs),
      reproduce,
    },
    // The machine's load moves the milliseconds above; this count only moves with the interpreter
    // (and with how many answers happen to land inside one task).
    {
      path: 'failover.planned.workflowTasks',
      what: 'workflow tasks per run (each a round trip through the server and a control worker)',
      samples: samples.map((s) => s.workflowTasks),
      unit: 'count',
      reproduce,
    },
  );
  if (samples.some((s) => s.lostWrites > 0)) out.failures.push('a planned failover lost acknowledged writes');
  return {
    wallMs: wall.median,
    fenceMs: spread(samples.map((s) => s.fenceMs)).median,
    overheadMs: overhead.median,
    providerMs: spread(samples.map((s) => s.providerMs)).median,
    workflowTasks: spread(samples.map((s) => s.workflowTasks)).median,
    firstTaskMs: spread(samples.map((s) => s.firstTaskMs)).median,
    // Where the overhead sits (bench/history.ts): the medians of its three parts.
    overheadStartMs: spread(samples.map((s) => s.startMs)).median,
    overheadGapsMs: spread(samples.map((s) => s.gapsMs)).median,
    overheadCloseMs: spread(samples.map((s) => s.closeMs)).median,
    floorMs: spread(floor.map((f) => f.overheadMs)).median,
    floorSteps: steps,
    runs: samples.length,
    writeClients: options.clients,
    lostWrites: samples.reduce((n, s) => n + s.lostWrites, 0),
    samples,
  };
}

/** How long one step of a run took, from its own record. */
function stepMs(rec: RunRecord, id: string): number {
  const step = rec.steps.find((s) => s.id === id);
  return step?.startedAt && step.endedAt ? Date.parse(step.endedAt) - Date.parse(step.startedAt) : NaN;
}

/** Acknowledged by the old primary since `sinceMs` (when this pair was built) and missing in the new one. */
async function lost(ctx: BenchContext, run: FailoverRun, sinceMs: number): Promise<number> {
  const acked = ctx.load.ackedBy(run.record.source ?? '', sinceMs).map((a) => a.id);
  const present = await presentIds(nodeOf(ctx.service, run.record.target), acked);
  return acked.filter((id) => !present.has(id)).length;
}

async function unplanned(ctx: BenchContext, out: SectionResult): Promise<Figures> {
  const { service, options, say, stack } = ctx;
  const samples: Array<{
    runId: string;
    source: string;
    target: string;
    rtoMs: number;
    clientRtoMs: number | null;
    lostWrites: number;
    approvals: number;
  }> = [];
  let pairBuiltAt = 0;
  for (let i = 0; i < options.unplannedRuns; i++) {
    // After a failed planned run the pair may be in any state; after an unplanned one it is broken.
    if (i > 0 || out.failures.length > 0) {
      // The region killed last time is gone (and diverged): each run starts from a new pair.
      say('  rebuilding a clean pair…');
      pairBuiltAt = Date.now();
      const up = await rebuildPair(
        { config: ctx.config, configFile: stack.configFile, home: stack.home },
        ctx.client,
        service,
      );
      if (!up.ok)
        throw new Error(
          `the rebuilt pair is not healthy: ${up.components
            .filter((c) => c.health === 'down')
            .map((c) => `${c.name}: ${c.detail}`)
            .join('; ')}`,
        );
      await ensureLedger(
        nodeOf(service, service.regions[0]!),
        postgresDatabase(service).regions[service.regions[0]!]!.appUser,
      );
    }
    const source = await writer(ctx);
    const target = other(ctx, source);
    await waitUntilStreaming(nodeOf(service, target));
    // Some writes through the primary first, so there is something to lose.
    if (options.clients > 0) {
      await ctx.load.waitForAck(source, Date.now(), 10_000);
      await new Promise((r) => setTimeout(r, 500));
    }
    const killed = await killRegion(
      { config: ctx.config, configFile: stack.configFile, home: stack.home },
      service,
      source,
    );
    const run = await runFailover(ctx.client, ctx.config, {
      service: service.name,
      target,
      mode: 'unplanned',
      requestedBy: REQUESTER,
      trigger: 'bench',
      triggeredAt: killed.at,
      approver: { ...APPROVER, signer: standInSigner(service, APPROVER.by) },
    });
    if (run.record.status !== 'succeeded' || run.record.rtoMs === undefined) {
      out.failures.push(
        `unplanned ${source} → ${target} ${run.record.status}: ${run.record.error ?? ''} (${run.uiUrl})`,
      );
      break;
    }
    const first = options.clients > 0 ? await ctx.load.waitForAck(target, killed.at, 15_000) : undefined;
    const lostWrites = await lost(ctx, run, pairBuiltAt);
    samples.push({
      runId: run.runId,
      source,
      target,
      rtoMs: run.record.rtoMs,
      clientRtoMs: first ? first.at - killed.at : null,
      lostWrites,
      approvals: run.approved.length,
    });
    const seen = first ? ` (first transfer committed after ${first.at - killed.at} ms)` : '';
    say(
      `  unplanned ${i + 1}/${options.unplannedRuns} ${source} killed → ${target}: RTO ${run.record.rtoMs} ms${seen}, lost writes ${lostWrites}, gates approved ${run.approved.length}`,
    );
  }
  const rto = spread(samples.map((s) => s.rtoMs));
  out.checks.push({
    path: 'failover.unplanned.rtoMs',
    what: 'unplanned RTO, primary killed → writes verified in the target',
    samples: samples.map((s) => s.rtoMs),
    reproduce: command(0, options.unplannedRuns, options.clients),
  });
  out.notes.push(
    'unplanned runs use policy approval.unplanned none and allowDataLoss true (rpoBudgetSeconds 60); any gate that still asks ' +
      `(the data-loss gate does when the RPO estimate is unknown) is approved by ${APPROVER.by} within ~100 ms, and counts in the RTO`,
  );
  return {
    rtoMs: rto.median,
    runs: samples.length,
    writeClients: options.clients,
    lostWrites: samples.reduce((n, s) => n + s.lostWrites, 0),
    samples,
  };
}

function command(runs: number, unplannedRuns: number, clients: number): string {
  return `npm run bench -- --runs ${runs} --unplanned-runs ${unplannedRuns}${clients ? ` --clients ${clients}` : ''}`;
}

function load(ctx: BenchContext): string {
  return ctx.options.clients ? `${ctx.options.clients} clients writing through the traffic record` : 'no write load';
}

export const failoverSection: BenchSection = {
  name: 'failover',
  async run(ctx) {
    const out: SectionResult = { figures: {}, checks: [], notes: [], failures: [] };
    out.notes.push(
      ctx.options.clients
        ? `write load: ${ctx.options.clients} clients on this machine's CPUs, competing with the orchestrator; overhead is measured under it`
        : 'no write load (--clients N adds one; it shares the CPUs with the orchestrator, so overhead grows with it); lost writes are then 0 by construction',
      "planned: wall = WorkflowExecutionStarted → close in the run's history; time inside providers = the union of ActivityTaskStarted → close intervals (parallel preflight probes counted once); overhead = wall − that",
    );
    const failover: Figures = {};
    if (ctx.options.runs > 0) {
      ctx.say(`planned failovers (${ctx.options.runs}, alternating direction, ${load(ctx)}):`);
      failover.planned = await planned(ctx, out);
    }
    if (ctx.options.unplannedRuns > 0) {
      ctx.say(
        `unplanned failovers, each killing the primary of a fresh pair (${ctx.options.unplannedRuns}, ${load(ctx)}):`,
      );
      failover.unplanned = await unplanned(ctx, out);
    }
    out.figures = { failover };
    return out;
  },
};
