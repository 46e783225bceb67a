// regionshift's side of each pairing: the bench's own two-region temp stack, a planned failover
// as bench/failover.ts runs it, and an unplanned one detected by the stack's own alert path.
import { nodeOf, presentIds } from '../../src/demo/ledger';
import { startWriteLoad } from '../../src/demo/load';
import { runFailover } from '../../src/demo/runs';
import { waitUntilStreaming } from '../../src/stack/postgres';
import { readState } from '../../src/stack/state';
import { createRoute53Activities } from '../../activities/traffic/route53';
import { primaryRegionOf } from '../../src/contract/traffic/plan';
import type { BenchContext } from '../section';
import { acceptsWrite, createBenchTables, firstTime, isStreamingStandby, type Endpoint } from './pg';
import { sampleUsage, type Usage } from './procs';
import { detectedSample } from '../detection';
import type { Sample } from './measure';

const REQUESTER = 'bench-peers';
const DEADLINE_MS = 180_000;

/**
 * regionshift's own processes: the Temporal server and the region workers. moto is left out:
 * it stands in for AWS's Route 53 API, which the peers have no counterpart of.
 */
export function regionshiftRoots(ctx: BenchContext): number[] {
  return stackRoots(ctx.stack.home);
}

function stackRoots(home: string): number[] {
  const procs = readState(home).processes;
  return Object.entries(procs)
    .filter(([name]) => name !== 'moto')
    .map(([, rec]) => rec.pid);
}

async function writerRegion(ctx: BenchContext): Promise<string> {
  const region = primaryRegionOf(
    await createRoute53Activities(ctx.config).trafficDescribe({ service: ctx.service.name }),
  );
  if (!region) throw new Error('the traffic record points at no region');
  return region;
}

function endpoint(ctx: BenchContext, region: string): Endpoint {
  const n = nodeOf(ctx.service, region);
  return { host: n.host, port: n.port };
}

/** The probe tables, on whichever node is primary now (after a rebuild they are gone). */
export async function prepareRegionshift(ctx: BenchContext): Promise<void> {
  await createBenchTables(endpoint(ctx, await writerRegion(ctx)));
}

/** Command issued → the target accepts a write, and → the old primary streams again; writes lost by a one-client load. */
export async function regionshiftPlanned(ctx: BenchContext): Promise<Sample> {
  const source = await writerRegion(ctx);
  const target = ctx.service.regions.find((r) => r !== source)!;
  await waitUntilStreaming(nodeOf(ctx.service, target));
  // The writer goes through the traffic record, as the application does.
  const load = startWriteLoad(ctx.config, ctx.service, { clients: 1 });
  if (!(await load.waitForAck(source, 0, 15_000)))
    throw new Error(`regionshift: the write load could not commit in ${source}`);
  const usage = sampleUsage(() => regionshiftRoots(ctx));
  const t0 = Date.now();
  const deadline = t0 + DEADLINE_MS;
  const wrote = firstTime(() => acceptsWrite(endpoint(ctx, target)), deadline);
  const standby = firstTime(() => isStreamingStandby(endpoint(ctx, source)), deadline);
  const run = await runFailover(ctx.client, ctx.config, {
    service: ctx.service.name,
    target,
    mode: 'planned',
    requestedBy: REQUESTER,
    trigger: 'bench',
  });
  const [w, s] = await Promise.all([wrote, standby]);
  const used = usage.stop();
  // Some writes through the new primary, then nothing may be missing there.
  await load.waitForAck(target, Date.now(), 10_000);
  await load.stop();
  if (run.record.status !== 'succeeded')
    throw new Error(
      `regionshift planned ${source} → ${target} ${run.record.status}: ${run.record.error ?? ''} (${run.uiUrl})`,
    );
  const acked = load.acks.map((a) => a.id);
  const present = await presentIds(nodeOf(ctx.service, target), acked);
  return {
    ms: w === undefined ? undefined : w - t0,
    standbyMs: s === undefined ? undefined : s - t0,
    lostWrites: acked.filter((id) => !present.has(id)).length,
    ackedWrites: acked.length,
    ...used,
    detail: `${source} → ${target}, run ${run.runId}`,
  };
}

/**
 * Primary killed (server -m immediate, its region worker SIGKILLed) → the target accepts a write,
 * with nobody starting anything: the stack's Prometheus and Alertmanager see the probes fail, the
 * intake tells the guardian, the guardian starts the run (bench/detection.ts). Each run gets a
 * fresh two-region stack with monitoring, as the detection bench does; its CPU and memory count
 * the monitoring too, since the peers' counts hold their own detection.
 */
export async function regionshiftUnplanned(ctx: BenchContext, i: number): Promise<Sample> {
  let usage: { stop(): Usage } | undefined;
  let used: Usage | undefined;
  let home = '';
  let target: Endpoint | undefined;
  let ms: number | undefined;
  let wrote: Promise<number | undefined> | undefined;
  const s = await detectedSample(ctx.say, `  regionshift unplanned ${i + 1}`, {
    async prepare(h, writer, to) {
      home = h;
      target = { host: to.host, port: to.port };
      await createBenchTables({ host: writer.host, port: writer.port });
    },
    before() {
      usage = sampleUsage(() => stackRoots(home));
      // The peers' probe, so every tool is timed by the same INSERT every 25 ms.
      wrote = firstTime(() => acceptsWrite(target!), Date.now() + DEADLINE_MS);
    },
    async after(killedAt) {
      const w = await wrote;
      used = usage!.stop();
      ms = w === undefined ? undefined : w - killedAt;
    },
  });
  return {
    ms,
    ...used!,
    detail: `detected; run started ${s.runStartedMs} ms after the kill (${s.trigger}) → ${s.target}`,
  };
}
