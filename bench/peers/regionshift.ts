// regionshift's side of each pairing: the bench's own two-region temp stack, a planned failover
// as bench/failover.ts runs it, and an unplanned one started by hand right after the kill.
import { postgresDatabase } from '../../src/config/schema';
import { ensureLedger, nodeOf, presentIds } from '../../src/demo/ledger';
import { startWriteLoad } from '../../src/demo/load';
import { killRegion, rebuildPair } from '../../src/demo/region';
import { standInSigner } from '../../src/demo/approver';
import { runFailover } from '../../src/demo/runs';
import { waitUntilStreaming } from '../../src/stack/postgres';
import { readState } from '../../src/stack/state';
import { createRoute53Activities } from '../../activities/traffic/route53';
import { primaryRegionOf } from '../../src/traffic/plan';
import type { BenchContext } from '../section';
import { acceptsWrite, createBenchTables, firstTime, isStreamingStandby, type Endpoint } from './pg';
import { sampleUsage } from './procs';
import type { Sample } from './measure';

const REQUESTER = 'bench-peers';
// The data-loss gate asks when the RPO estimate is unknown; the bench answers it at once.
const APPROVER = { by: 'bench-oncall', reason: 'bench: the primary was killed on purpose' };
const DEADLINE_MS = 180_000;

/**
 * regionshift's own processes: the Temporal server and the region workers. moto is left out:
 * it stands in for AWS's Route 53 API, which the peers have no counterpart of.
 */
export function regionshiftRoots(ctx: BenchContext): number[] {
  const procs = readState(ctx.stack.home).processes;
  return Object.entries(procs).filter(([name]) => name !== 'moto').map(([, rec]) => rec.pid);
}

async function writerRegion(ctx: BenchContext): Promise<string> {
  const region = primaryRegionOf(await createRoute53Activities(ctx.config).trafficDescribe({ service: ctx.service.name }));
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
  if (!(await load.waitForAck(source, 0, 15_000))) throw new Error(`regionshift: the write load could not commit in ${source}`);
  const usage = sampleUsage(() => regionshiftRoots(ctx));
  const t0 = Date.now();
  const deadline = t0 + DEADLINE_MS;
  const wrote = firstTime(() => acceptsWrite(endpoint(ctx, target)), deadline);
  const standby = firstTime(() => isStreamingStandby(endpoint(ctx, source)), deadline);
  const run = await runFailover(ctx.client, ctx.config, { service: ctx.service.name, target, mode: 'planned', requestedBy: REQUESTER, trigger: 'bench' });
  const [w, s] = await Promise.all([wrote, standby]);
  const used = usage.stop();
  // Some writes through the new primary, then nothing may be missing there.
  await load.waitForAck(target, Date.now(), 10_000);
  await load.stop();
  if (run.record.status !== 'succeeded') throw new Error(`regionshift planned ${source} → ${target} ${run.record.status}: ${run.record.error ?? ''} (${run.uiUrl})`);
  const acked = load.acks.map((a) => a.id);
  const present = await presentIds(nodeOf(ctx.service, target), acked);
  return {
    ms: w === undefined ? undefined : w - t0, standbyMs: s === undefined ? undefined : s - t0,
    lostWrites: acked.filter((id) => !present.has(id)).length, ackedWrites: acked.length, ...used,
    detail: `${source} → ${target}, run ${run.runId}`,
  };
}

/** Primary killed (server -m immediate, its region worker SIGKILLed) → the target accepts a write; the run is started right after the kill. */
export async function regionshiftUnplanned(ctx: BenchContext): Promise<Sample> {
  const source = await writerRegion(ctx);
  const target = ctx.service.regions.find((r) => r !== source)!;
  await waitUntilStreaming(nodeOf(ctx.service, target));
  const stackCtx = { config: ctx.config, configFile: ctx.stack.configFile, home: ctx.stack.home };
  const usage = sampleUsage(() => regionshiftRoots(ctx));
  const killed = await killRegion(stackCtx, ctx.service, source);
  const wrote = firstTime(() => acceptsWrite(endpoint(ctx, target)), killed.at + DEADLINE_MS);
  const run = await runFailover(ctx.client, ctx.config, {
    service: ctx.service.name, target, mode: 'unplanned', requestedBy: REQUESTER, trigger: 'bench', triggeredAt: killed.at, approver: { ...APPROVER, signer: standInSigner(ctx.service, APPROVER.by) },
  });
  const w = await wrote;
  const used = usage.stop();
  if (run.record.status !== 'succeeded') throw new Error(`regionshift unplanned ${source} → ${target} ${run.record.status}: ${run.record.error ?? ''} (${run.uiUrl})`);
  await rebuild(ctx);
  return { ms: w === undefined ? undefined : w - killed.at, ...used, detail: `${source} killed → ${target}, run ${run.runId}` };
}

/** The killed region is gone (and diverged): a clean pair for the next run, not timed. */
async function rebuild(ctx: BenchContext): Promise<void> {
  const up = await rebuildPair({ config: ctx.config, configFile: ctx.stack.configFile, home: ctx.stack.home }, ctx.client, ctx.service);
  if (!up.ok) throw new Error(`the rebuilt pair is not healthy: ${up.components.filter((c) => c.health === 'down').map((c) => `${c.name}: ${c.detail}`).join('; ')}`);
  const home = ctx.service.regions[0]!;
  await ensureLedger(nodeOf(ctx.service, home), postgresDatabase(ctx.service).regions[home]!.appUser);
  await prepareRegionshift(ctx);
}
