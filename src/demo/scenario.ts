// The demo, start to finish: a clean pair, a write load on the ledger, a planned failover away
// from the first region, the loss of the region that is now primary, and the unplanned failover
// back. The numbers it reports come from two sides: the run's own record (steps, RTO, RPO
// evidence) and the application's (which acknowledged writes the new primary does not have).
import type { Client } from '@temporalio/client';
import { postgresDatabase, route53Traffic, type Service } from '../config/schema';
import type { RunRecord } from '../runbook/types';
import { connect } from '../runs/client';
import { stackUp, type StackContext, type UpResult } from '../stack/stack';
import { ensureLedger, nodeOf, presentIds } from './ledger';
import { startWriteLoad, type WriteLoad } from './load';
import { configRegions, killRegion, rebuildPair } from './region';
import { formatDemoRun, toDemoRun, type DemoRun } from './report';
import { clearStaleRun, runFailover, type FailoverRun } from './runs';
import { pairProblem } from './topology';

export const DEMO_SERVICE = 'ledger';
export const DEMO_REQUESTER = 'demo';
export const DEMO_APPROVER = 'demo-oncall';

export type DemoContext = StackContext & { home: string };

export interface DemoOptions {
  ctx: DemoContext;
  /** Progress for a person watching. */
  say: (line: string) => void;
  /** The per-run reports, in human words (not called in --json mode). */
  report?: (text: string) => void;
  clients?: number;
}

export interface DemoResult {
  runs: DemoRun[];
  temporalUi: string;
  /** Why the pair was rebuilt first, when it was. */
  reset: string | null;
  load: { clients: number; writesAcked: number; failedAttempts: Record<string, number> };
  ok: boolean;
}

function failedComponents(up: UpResult): string {
  return up.components.filter((c) => c.health === 'down').map((c) => `${c.name}: ${c.detail ?? 'down'}`).join('; ');
}

/** Stack up, and the service's pair rebuilt when it is not the demo's starting point. */
export async function prepareStack(ctx: DemoContext, client: () => Promise<Client>, service: Service, say: (line: string) => void): Promise<string | null> {
  const up = await stackUp({ ...ctx, onProgress: say });
  const core = up.components.filter((c) => ['temporal', 'temporal-ui', 'moto'].includes(c.name) && c.health === 'down');
  if (core.length) throw new Error(`the local stack did not come up: ${failedComponents(up)}`);
  const temporal = await client();
  await clearStaleRun(temporal, service.name, [DEMO_REQUESTER, 'bench'], say);
  const problem = await pairProblem(ctx, temporal, service).catch((err: Error) => `cannot inspect it (${err.message})`);
  if (!problem) return null;
  const [home, ...others] = service.regions;
  say(`resetting the demo ledger (${problem}): rebuilding ${home} as primary and ${others.join(', ')} as standby…`);
  const rebuilt = await rebuildPair({ ...ctx, onProgress: say }, temporal, service);
  if (!rebuilt.ok) throw new Error(`the rebuilt stack is not healthy: ${failedComponents(rebuilt)}`);
  const still = await pairProblem(ctx, temporal, service);
  if (still) throw new Error(`the pair was rebuilt but is still not ready: ${still}`);
  return problem;
}

async function lostWrites(load: WriteLoad, service: Service, run: FailoverRun): Promise<{ lost: number; acked: number }> {
  const rec = run.record;
  const oldPrimary = rec.source ?? '';
  // A failed run leaves (or puts back) the writer in the source: nothing can be missing there.
  const writer = rec.status === 'succeeded' ? rec.target : oldPrimary;
  const acked = load.ackedBy(oldPrimary).map((a) => a.id);
  if (writer === oldPrimary) return { lost: 0, acked: acked.length };
  const present = await presentIds(nodeOf(service, writer), acked);
  return { lost: acked.filter((id) => !present.has(id)).length, acked: acked.length };
}

async function summarise(load: WriteLoad, service: Service, run: FailoverRun, sinceMs: number): Promise<DemoRun> {
  const first = await load.waitForAck(run.record.target, sinceMs, run.record.status === 'succeeded' ? 15_000 : 0);
  const { lost, acked } = await lostWrites(load, service, run);
  return toDemoRun(run.record, { uiUrl: run.uiUrl, lostWrites: lost, writesAcked: acked, clientRtoMs: first ? first.at - sinceMs : undefined });
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const { ctx, say } = opts;
  const { config } = ctx;
  const { service, home, away } = configRegions(config, DEMO_SERVICE);
  if (!route53Traffic(service).endpointUrl) throw new Error(`service ${service.name} has no traffic.endpointUrl: the demo runs on the local stack (moto), not on real Route 53`);
  say(`Temporal UI: ${config.temporal.uiUrl}`);

  let temporal: Client | undefined;
  const client = async () => (temporal ??= await connect(config));
  let load: WriteLoad | undefined;
  try {
    const reset = await prepareStack(ctx, client, service, say);
    const db = postgresDatabase(service).regions[home]!;
    await ensureLedger(nodeOf(service, home), db.appUser);

    const clients = opts.clients ?? 4;
    say(`\nwrite load: ${clients} clients booking transfers on ${service.name} wherever ${route53Traffic(service).recordName} points`);
    load = startWriteLoad(config, service, { clients });
    if (!(await load.waitForAck(home, 0, 15_000))) {
      throw new Error(`the write load could not commit a transfer in ${home} within 15 s: ${[...load.errors].map(([k, v]) => `${k} ×${v}`).join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 1_000));
    say(`  ${load.acks.length} transfers committed in ${home} so far`);

    const runs: DemoRun[] = [];
    const show = (rec: RunRecord, run: DemoRun) => {
      runs.push(run);
      opts.report?.(`\n${formatDemoRun(rec, run)}`);
    };

    say(`\n== 1. planned failover ${home} → ${away}, under write load ==`);
    const plannedStart = Date.now();
    const planned = await runFailover(await client(), config, {
      service: service.name, target: away, mode: 'planned', requestedBy: DEMO_REQUESTER, trigger: 'demo',
      approver: { by: DEMO_APPROVER, reason: `demo: planned move to ${away}` }, onProgress: say,
    });
    show(planned.record, await summarise(load, service, planned, plannedStart));
    if (planned.record.status !== 'succeeded') {
      say(`\nthe planned failover ${planned.record.status}; the demo stops here (the region is not killed)`);
      await load.stop();
      return { runs, temporalUi: config.temporal.uiUrl, reset, load: loadFigures(load), ok: false };
    }

    say(`\n== 2. region ${away} fails: its PostgreSQL stops without a checkpoint, its worker is SIGKILLed ==`);
    const killed = await killRegion(ctx, service, away);
    say(`  postgres: ${killed.postgres}`);
    say(`  worker:   ${killed.worker}`);
    say(`\n== 3. unplanned failover ${away} → ${home} (RTO counted from the kill) ==`);
    const unplanned = await runFailover(await client(), config, {
      service: service.name, target: home, mode: 'unplanned', requestedBy: DEMO_REQUESTER, trigger: 'demo',
      triggeredAt: killed.at, approver: { by: DEMO_APPROVER, reason: `demo: region ${away} is down` }, onProgress: say,
    });
    show(unplanned.record, await summarise(load, service, unplanned, killed.at));

    await load.stop();
    const ok = runs.every((r) => r.status === 'succeeded') && runs[0]!.lostWrites === 0;
    return { runs, temporalUi: config.temporal.uiUrl, reset, load: loadFigures(load), ok };
  } finally {
    await load?.stop();
    await temporal?.connection.close().catch(() => undefined);
  }
}

function loadFigures(load: WriteLoad): DemoResult['load'] {
  return { clients: load.clients, writesAcked: load.acks.length, failedAttempts: Object.fromEntries(load.errors) };
}
