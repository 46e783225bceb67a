// The demo, start to finish: a clean pair and a write load on the ledger; a planned failover away
// from the home region and back (no acknowledged write lost either way); the loss of the home
// region and the unplanned failover away from it; the home region's return, read-only on its own
// timeline; reconciliation of what it acknowledged that never replicated; and failback home, a
// zero-loss switchover that restores the traffic as it was before the failure. The numbers come
// from two sides: each run's own record (steps, RTO, RPO evidence, counts per class) and the
// application's (which acknowledged writes a region does not have).
import type { Client } from '@temporalio/client';
import { postgresDatabase, route53Traffic, type Config, type Service } from '../lib/config/schema';
import type { RunRecord } from '../contract/runbook/types';
import { connect, temporalAddressFor } from '../lib/runs/client';
import { stackUp, type StackContext, type UpResult } from '../stack/stack';
import { ensureLedger, nodeOf, presentIds } from './ledger';
import { startWriteLoad, type WriteLoad } from './load';
import { configRegions, cutReplication, killRegion, rebuildPair, reviveRegion } from './region';
import {
  formatDemoDrain,
  formatDemoFailback,
  formatDemoReconciliation,
  formatDemoRun,
  toDemoDrain,
  toDemoFailback,
  toDemoReconciliation,
  toDemoRun,
  type DemoDrain,
  type DemoFailback,
  type DemoReconciliation,
  type DemoRun,
} from './results';
import { standInSigner } from './approver';
import type { DecisionSigner } from '../lib/sign';
import {
  awaitGuardianRun,
  clearStaleRun,
  guardianCooldownUntil,
  runFailover,
  runDrain,
  runFollowUp,
  type Approver,
  type FailoverRun,
} from './runs';
import { serviceTriggersOf } from '../lib/config/triggers';
import { durationMs } from '../contract/runbook/duration';
import { listCases, resolveCase } from '../lib/runs/reconcile';
import { waitUntilStreaming } from '../stack/postgres';
import { createRoute53Activities } from '../../activities/traffic/route53';
import type { TrafficState } from '../contract/activities';
import { describeRegions, notFollowing, pairProblem, regionsNow, type DemoRegion } from './topology';
import { appStatus } from './app';
import { appUrl } from '../stack/app';
import type { DemoAppFollow } from './results';

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
  /** The failovers: planned away and back, then the unplanned one. */
  runs: DemoRun[];
  /** A region that is not the writer lost, drained, back and undrained (services with a third region). */
  drains: DemoDrain[];
  /** Per reconciliation: counts per class, entries re-applied, cases opened. */
  reconciliations: DemoReconciliation[];
  /** The failback home, with its RPO (must be zero). */
  failback: DemoFailback | null;
  /** The region the planned round trip left without traffic, undrained to its configured share after the failback. */
  backInService: DemoDrain | null;
  temporalUi: string;
  /** Why the pair was rebuilt first, when it was. */
  reset: string | null;
  load: { clients: number; writesAcked: number; failedAttempts: Record<string, number> };
  ok: boolean;
}

function failedComponents(up: UpResult): string {
  return up.components
    .filter((c) => c.health === 'down')
    .map((c) => `${c.name}: ${c.detail ?? 'down'}`)
    .join('; ');
}

/** Stack up, and the service's pair rebuilt when it is not the demo's starting point. */
export async function prepareStack(
  ctx: DemoContext,
  client: () => Promise<Client>,
  service: Service,
  say: (line: string) => void,
): Promise<string | null> {
  const up = await stackUp({ ...ctx, onProgress: say });
  const core = up.components.filter((c) => ['temporal', 'temporal-ui', 'moto'].includes(c.name) && c.health === 'down');
  if (core.length) throw new Error(`the local stack did not come up: ${failedComponents(up)}`);
  const temporal = await client();
  // A run the guardian started in an earlier demo may still wait for the demo's approval.
  await clearStaleRun(temporal, service.name, [DEMO_REQUESTER, 'bench', 'guardian'], say);
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

async function lostWrites(
  load: WriteLoad,
  service: Service,
  run: FailoverRun,
): Promise<{ lost: number; acked: number }> {
  const rec = run.record;
  const oldPrimary = rec.source ?? '';
  // A failed run leaves (or puts back) the writer in the source: nothing can be missing there.
  const writer = rec.status === 'succeeded' ? rec.target : oldPrimary;
  const acked = load.ackedBy(oldPrimary).map((a) => a.id);
  if (writer === oldPrimary) return { lost: 0, acked: acked.length };
  const present = await presentIds(nodeOf(service, writer), acked);
  return { lost: acked.filter((id) => !present.has(id)).length, acked: acked.length };
}

async function summarise(
  config: Config,
  load: WriteLoad,
  service: Service,
  run: FailoverRun,
  sinceMs: number,
  killedAt?: number,
): Promise<DemoRun> {
  const ok = run.record.status === 'succeeded';
  const first = await load.waitForAck(run.record.target, sinceMs, ok ? 15_000 : 0);
  const { lost, acked } = await lostWrites(load, service, run);
  const regionsAfter = await following(service, ok ? run.record.target : (run.record.source ?? run.record.target));
  const app = await appFollows(config, service, run.record);
  return toDemoRun(run.record, {
    uiUrl: run.uiUrl,
    lostWrites: lost,
    writesAcked: acked,
    clientRtoMs: first ? first.at - sinceMs : undefined,
    regionsAfter,
    app,
    ...(killedAt !== undefined ? { killedAt } : {}),
  });
}

/** The application writes every 100 ms: once told, its next write lands in the new writer. */
const APP_FOLLOW_MS = 10_000;

/** The stack's banking application of this service (stack.app), if any. */
function demoAppUrl(config: Config, service: Service): string | undefined {
  return config.stack.app?.service === service.name ? appUrl(config) : undefined;
}

/**
 * The banking application after a run: the run's tell-app step told it the writer, and its writes
 * land there, in the writer's own database. Nobody else tells it, so a run that did not reach it
 * leaves it writing to the old primary.
 */
async function appFollows(config: Config, service: Service, rec: RunRecord): Promise<DemoAppFollow | null> {
  const url = demoAppUrl(config, service);
  if (!url) return null;
  const ok = rec.status === 'succeeded';
  const writer = ok ? rec.target : (rec.source ?? rec.target);
  const deadline = Date.now() + (ok ? APP_FOLLOW_MS : 0);
  for (;;) {
    const st = await appStatus(url).catch((err: Error) => err);
    if (st instanceof Error)
      return { primary: `unreachable (${st.message})`, toldWith: null, lastWrite: null, inWriter: false };
    const told = st.told.find((t) => t.run === rec.runId);
    const last = st.last;
    const settled =
      st.primary === writer && last?.region === writer && (!told || Date.parse(last.at) > Date.parse(told.at));
    if (settled || Date.now() >= deadline) {
      const inWriter = last
        ? await presentIds(nodeOf(service, writer), [last.id]).then(
            (p) => p.has(last.id),
            () => false,
          )
        : false;
      return {
        primary: st.primary,
        toldWith: told?.key ?? null,
        lastWrite: last ? { id: last.id, region: last.region } : null,
        inWriter,
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The demo starts with the application writing home; one that stopped half-way may have left it elsewhere. */
async function pointAppHome(config: Config, service: Service, say: (line: string) => void): Promise<void> {
  const url = demoAppUrl(config, service);
  if (!url) return;
  const home = service.regions[0]!;
  const st = await appStatus(url).catch((err: Error) => {
    throw new Error(
      `the demo's banking application (stack.app) does not answer on ${url}: ${err.message}; see \`regionshift stack status\` and its log`,
    );
  });
  if (st.primary === home) return;
  const res = await fetch(`${url}/primary`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': `demo-start:${Date.now()}` },
    body: JSON.stringify({ primary: home }),
  });
  say(`  application: ${(await res.text()).trim()} (an earlier demo left it there)`);
}

/**
 * The databases once every region that is up streams from the writer, or as they are after 20 s.
 * A run's last step restarts the old primary as a standby; it takes a moment to stream.
 */
async function following(service: Service, writer: string): Promise<DemoRegion[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const regions = await regionsNow(service);
    if (notFollowing(regions, writer).length === 0 || Date.now() > deadline) return regions;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * The demo's failures are noticed by the stack's monitoring and acted on by the guardian, never
 * started by the demo: the service must map the stack's probe alert and the stack must run it.
 */
export function alertPathProblem(config: Config, service: Service): string | undefined {
  if (!config.stack.monitoring.enabled) return 'stack.monitoring.enabled is false: nothing would notice a region die';
  const probe = serviceTriggersOf(service).alarms.some(
    (a) =>
      a.source === 'alertmanager' &&
      'RegionshiftEndpointUnreachable'.startsWith(a.name.replace(/\*$/, '')) &&
      a.severity === 'critical',
  );
  if (!probe) {
    return (
      `service ${service.name} maps no critical alertmanager alarm RegionshiftEndpointUnreachable in triggers.alarms: the guardian would never hear a region die ` +
      `(add { source: alertmanager, name: RegionshiftEndpointUnreachable, regionLabel: probe_to, vantageLabel: probe_from, labels: { service: ${service.name} } }, as regionshift.yaml does)`
    );
  }
  return undefined;
}

/**
 * The guardian starts nothing until policy.cooldown after the last run (the demo's own runs
 * count): a region killed before then would sit failing until Alertmanager repeats the alert.
 */
async function waitOutCooldown(temporal: Client, service: Service, say: (line: string) => void): Promise<void> {
  const until = await guardianCooldownUntil(temporal, service.name);
  if (until === undefined || until <= Date.now()) return;
  say(
    `  waiting ${((until - Date.now()) / 1000).toFixed(1)} s for the guardian's cooldown (${service.policy.cooldown} after the last run) to end, so it acts on the failure by itself`,
  );
  await new Promise((r) => setTimeout(r, until - Date.now() + 200));
}

/** How long the guardian may take to start a run after a kill: detection takes seconds; one missed delivery waits for Alertmanager's repeat (30 s). */
const DETECTION_TIMEOUT_MS = 60_000;

/**
 * A region that is not the writer goes down: the stack's probes see it, Alertmanager tells the
 * intake, and the guardian drains its traffic share to the others while the writer is untouched;
 * once it is back and healthy for triggers.undrainAfter, the guardian undrains it, the records
 * exactly as the drain found them. The demo only kills, revives, and approves as the on-call.
 */
async function loseAndDrain(
  opts: DemoOptions,
  temporal: Client,
  service: Service,
  spare: string,
  writer: string,
  signer: DecisionSigner,
): Promise<DemoDrain[]> {
  const { ctx, say } = opts;
  const drains: DemoDrain[] = [];
  const show = async (run: FailoverRun, killedAt?: number): Promise<boolean> => {
    const d = toDemoDrain(run.record, {
      uiUrl: run.uiUrl,
      regionsAfter: await regionsNow(service),
      ...(killedAt !== undefined ? { killedAt } : {}),
    });
    drains.push(d);
    opts.report?.(`\n${formatDemoDrain(run.record, d)}`);
    return run.record.status === 'succeeded';
  };
  await waitOutCooldown(temporal, service, say);
  const killed = await killRegion(ctx, service, spare);
  say(`  postgres: ${killed.postgres}`);
  say(`  worker:   ${killed.worker}`);
  say(
    `  nobody starts anything: the probes of ${spare} fail, Prometheus fires, Alertmanager tells the intake, the guardian decides`,
  );
  const approver: Approver = { by: DEMO_APPROVER, reason: `demo: ${spare} is down`, signer };
  const drain = await awaitGuardianRun(temporal, ctx.config, {
    service: service.name,
    startedAfter: killed.at,
    timeoutMs: DETECTION_TIMEOUT_MS,
    approver,
    onProgress: say,
  });
  if (!(await show(drain, killed.at))) return drains;

  say(`\n== ${spare} comes back: its PostgreSQL and its worker restart, the standby catches up with ${writer} ==`);
  const drainEnded = Date.now();
  await stackUp({ ...ctx, onProgress: say });
  const back = await following(service, writer);
  say(`  databases: ${describeRegions(back)}`);
  const t = serviceTriggersOf(service);
  say(
    `  the guardian undrains ${spare} once its probes have succeeded for ${t.undrainAfter} (triggers.undrainAfter) and its cooldown (${service.policy.cooldown}) is over`,
  );
  const undrain = await awaitGuardianRun(temporal, ctx.config, {
    service: service.name,
    startedAfter: drainEnded,
    timeoutMs: durationMs(t.undrainAfter) + durationMs(service.policy.cooldown) + DETECTION_TIMEOUT_MS,
    approver: { ...approver, reason: `demo: ${spare} is healthy again` },
    onProgress: say,
  });
  await show(undrain);
  return drains;
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const { ctx, say } = opts;
  const { config } = ctx;
  const { service, home, away, spare } = configRegions(config, DEMO_SERVICE);
  if (!route53Traffic(service).endpointUrl)
    throw new Error(
      `service ${service.name} has no traffic.endpointUrl: the demo runs on the local stack (moto), not on real Route 53`,
    );
  const noAlerts = alertPathProblem(config, service);
  if (noAlerts)
    throw new Error(`the demo's failures are detected by the stack's monitoring, not started by the demo: ${noAlerts}`);
  say(`Temporal UI: ${config.temporal.uiUrl}`);
  const signer = standInSigner(service, DEMO_APPROVER);

  // With a replicated control plane the namespace moves during the demo (the home region's cluster
  // dies with it, and the intake fails the namespace over): every chapter asks where it is now.
  let temporal: { client: Client; address: string } | undefined;
  const retired: Client[] = [];
  const client = async (): Promise<Client> => {
    const address = await temporalAddressFor(config);
    if (temporal?.address !== address) {
      if (temporal) retired.push(temporal.client);
      temporal = { client: await connect(config, { address }), address };
    }
    return temporal.client;
  };
  let load: WriteLoad | undefined;
  try {
    const reset = await prepareStack(ctx, client, service, say);
    await pointAppHome(config, service, say);
    const db = postgresDatabase(service).regions[home]!;
    await ensureLedger(nodeOf(service, home), db.appUser);

    const clients = opts.clients ?? 4;
    say(
      `\nwrite load: ${clients} clients booking transfers on ${service.name} in the region ${route53Traffic(service).recordName} sends the most traffic to (the writer's)`,
    );
    load = startWriteLoad(config, service, { clients });
    if (!(await load.waitForAck(home, 0, 15_000))) {
      throw new Error(
        `the write load could not commit a transfer in ${home} within 15 s: ${[...load.errors].map(([k, v]) => `${k} ×${v}`).join(', ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 1_000));
    say(`  ${load.acks.length} transfers committed in ${home} so far`);

    const runs: DemoRun[] = [];
    let drains: DemoDrain[] = [];
    const reconciliations: DemoReconciliation[] = [];
    const show = (rec: RunRecord, run: DemoRun) => {
      runs.push(run);
      opts.report?.(`\n${formatDemoRun(rec, run)}`);
    };

    say(`\n== 1. planned failover ${home} → ${away}, under write load ==`);
    const plannedStart = Date.now();
    const planned = await runFailover(await client(), config, {
      service: service.name,
      target: away,
      mode: 'planned',
      requestedBy: DEMO_REQUESTER,
      trigger: 'demo',
      approver: { by: DEMO_APPROVER, reason: `demo: planned move to ${away}`, signer },
      onProgress: say,
    });
    show(planned.record, await summarise(config, load, service, planned, plannedStart));
    const stop = async (why: string): Promise<DemoResult> => {
      say(`\n${why}; the demo stops here`);
      await load!.stop();
      return {
        runs,
        drains,
        reconciliations,
        failback: null,
        backInService: null,
        temporalUi: config.temporal.uiUrl,
        reset,
        load: loadFigures(load!),
        ok: false,
      };
    };
    if (planned.record.status !== 'succeeded') return stop(`the planned failover ${planned.record.status}`);

    say(`\n== 2. planned failover back home ${away} → ${home}, under write load ==`);
    // The previous run's last step restarted the old primary as a standby: let it stream first.
    await waitUntilStreaming(nodeOf(service, home));
    const backStart = Date.now();
    const back = await runFailover(await client(), config, {
      service: service.name,
      target: home,
      mode: 'planned',
      requestedBy: DEMO_REQUESTER,
      trigger: 'demo',
      approver: { by: DEMO_APPROVER, reason: `demo: planned move back to ${home}`, signer },
      onProgress: say,
    });
    show(back.record, await summarise(config, load, service, back, backStart));
    if (back.record.status !== 'succeeded') return stop(`the planned failover back ${back.record.status}`);

    let chapter = 3;
    if (spare) {
      say(
        `\n== ${chapter++}. region ${spare} fails (not the writer): its PostgreSQL (no checkpoint) and its worker (SIGKILL); its traffic is drained to the others ==`,
      );
      drains = await loseAndDrain(opts, await client(), service, spare, home, signer);
      const failed = drains.find((d) => d.status !== 'succeeded');
      if (failed || drains.length < 2)
        return stop(`the ${failed?.kind ?? 'drain'} of ${spare} ${failed?.status ?? 'did not run'}`);
    }
    const trafficBefore = await traffic(config, service);

    const standbys = service.regions.filter((r) => r !== home);
    say(
      `\n== ${chapter++}. region ${home} fails: first its links (replication to ${standbys.join(', ')} stops, ${home} keeps acknowledging writes), a second later its PostgreSQL (no checkpoint) and its worker (SIGKILL) ==`,
    );
    await Promise.all(standbys.map((r) => waitUntilStreaming(nodeOf(service, r))));
    await waitOutCooldown(await client(), service, say);
    await new Promise((r) => setTimeout(r, 1_000));
    for (const line of await Promise.all(standbys.map((r) => cutReplication(ctx, service, r))))
      say(`  link:     ${line}`);
    await new Promise((r) => setTimeout(r, 1_000));
    const killed = await killRegion(ctx, service, home);
    say(`  postgres: ${killed.postgres}`);
    say(`  worker:   ${killed.worker}`);
    if (killed.temporal) say(`  temporal: ${killed.temporal}`);
    say(
      `\n== ${chapter++}. unplanned failover away from ${home}, started by the guardian from the alerts (RTO counted from the kill, detection included) ==`,
    );
    const unplanned = await awaitGuardianRun(await client(), config, {
      service: service.name,
      startedAfter: killed.at,
      timeoutMs: DETECTION_TIMEOUT_MS,
      approver: { by: DEMO_APPROVER, reason: `demo: region ${home} is down`, signer },
      onProgress: say,
    });
    const unplannedRun = await summarise(config, load, service, unplanned, killed.at, killed.at);
    show(unplanned.record, unplannedRun);
    if (unplanned.record.status !== 'succeeded') return stop(`the unplanned failover ${unplanned.record.status}`);
    if (unplanned.record.target !== away)
      return stop(
        `the guardian failed over to ${unplanned.record.target}, not ${away}: the rest of the story moves between ${home} and ${away}`,
      );

    say(`\n== ${chapter++}. ${home} comes back: its database read-only on its own timeline, its worker up ==`);
    await new Promise((r) => setTimeout(r, 1_000));
    const revived = await reviveRegion({ ...ctx, onProgress: say }, service, home);
    say(`  postgres: ${revived.postgres}`);

    say(`\n== ${chapter++}. reconciliation: what ${home} acknowledged that ${away} never got ==`);
    const rc = await runFollowUp(await client(), config, {
      kind: 'reconcile',
      service: service.name,
      requestedBy: DEMO_REQUESTER,
      trigger: 'demo',
      onProgress: say,
    });
    const resolved: DemoReconciliation['casesResolved'] = [];
    const held = new Set<string>();
    if (rc.record.status === 'succeeded') {
      const id = rc.record.reconciliation!.id;
      for (const c of await listCases(await client(), config, {
        service: service.name,
        status: 'all',
        reconciliationId: id,
      }))
        for (const t of c.txnIds) held.add(t);
      // The demo plays the on-call for the cases too: it books each case's proposal (or rejects it).
      for (const c of await listCases(await client(), config, { service: service.name, reconciliationId: id })) {
        const action = c.proposals.accept ? 'accept' : c.proposals.compensate ? 'compensate' : 'reject';
        await resolveCase(
          await client(),
          config,
          { service: service.name, caseId: c.id, by: DEMO_APPROVER, action, note: 'demo: decided by the on-call' },
          signer,
        );
        resolved.push({ id: c.id, kind: c.kind, action, by: DEMO_APPROVER });
      }
    }
    const after = await missingAfterReconciliation(load, service, home, away, held);
    const reconciliation = toDemoReconciliation(rc.record, {
      uiUrl: rc.uiUrl,
      missingBefore: unplannedRun.lostWrites,
      missingAfter: after,
      casesResolved: resolved,
    });
    reconciliations.push(reconciliation);
    opts.report?.(`\n${formatDemoReconciliation(rc.record, reconciliation)}`);
    if (rc.record.status !== 'succeeded') return stop(`the reconciliation ${rc.record.status}`);

    say(
      `\n== ${chapter++}. failback ${away} → ${home}: ${home} rejoins as a replica, then a planned switchover and the traffic as it was ==`,
    );
    const failbackStart = Date.now();
    const fb = await runFollowUp(await client(), config, {
      kind: 'failback',
      service: service.name,
      requestedBy: DEMO_REQUESTER,
      trigger: 'demo',
      approver: { by: DEMO_APPROVER, reason: 'demo: fail back home', signer },
      onProgress: say,
    });
    if (fb.record.status === 'succeeded') await load.waitForAck(home, Date.now(), 15_000);
    const acked = load.ackedBy(away, failbackStart).map((a) => a.id);
    const present = fb.record.status === 'succeeded' ? await presentIds(nodeOf(service, home), acked) : new Set(acked);
    const failback = toDemoFailback(fb.record, {
      uiUrl: fb.uiUrl,
      lostWrites: acked.filter((id) => !present.has(id)).length,
      writesAcked: acked.length,
      trafficBefore,
      trafficAfter: await traffic(config, service),
      regionsAfter: await following(service, fb.record.status === 'succeeded' ? home : away),
      app: await appFollows(config, service, fb.record),
    });
    opts.report?.(`\n${formatDemoFailback(fb.record, failback)}`);

    // A failover moves traffic away from its source: the planned failover back left the away region
    // no share, and the failback restores the records from before the outage, so it has none still.
    // With no drain of it to undo, an undrain gives it its configured share.
    let backInService: DemoDrain | null = null;
    if (failback.status === 'succeeded' && failback.trafficAfter[away] === 0) {
      say(
        `\n== ${chapter++}. ${away} back into service: the records the failback restored give it no traffic (the planned failover back moved its share away); the on-call undrains it ==`,
      );
      const back = await runDrain(await client(), config, {
        kind: 'undrain',
        service: service.name,
        region: away,
        requestedBy: DEMO_REQUESTER,
        trigger: 'demo',
        approver: { by: DEMO_APPROVER, reason: `demo: ${away} back into service`, signer },
        onProgress: say,
      });
      backInService = toDemoDrain(back.record, { uiUrl: back.uiUrl, regionsAfter: await regionsNow(service) });
      opts.report?.(`\n${formatDemoDrain(back.record, backInService)}`);
    }

    await load.stop();
    const everyStandbyFollows = [...runs, failback].every(
      (r) => notFollowing(r.regionsAfter, r.status === 'succeeded' ? r.target : (r.source ?? r.target)).length === 0,
    );
    // The application, when the stack runs one, writes where each run left the writer.
    const appFollowsWriter = [...runs, failback].every(
      (r) =>
        !demoAppUrl(config, service) ||
        (r.app?.primary === (r.status === 'succeeded' ? r.target : r.source) && r.app.inWriter),
    );
    const ok =
      runs.every((r) => r.status === 'succeeded') &&
      runs.filter((r) => r.mode === 'planned').every((r) => r.lostWrites === 0) &&
      drains.every((d) => d.status === 'succeeded') &&
      reconciliation.status === 'succeeded' &&
      reconciliation.missingAfter === 0 &&
      failback.status === 'succeeded' &&
      (backInService?.status ?? 'succeeded') === 'succeeded' &&
      failback.rpo.lostWrites === 0 &&
      failback.rpo.zeroLoss &&
      everyStandbyFollows &&
      appFollowsWriter;
    return {
      runs,
      drains,
      reconciliations,
      failback,
      backInService,
      temporalUi: config.temporal.uiUrl,
      reset,
      load: loadFigures(load),
      ok,
    };
  } finally {
    await load?.stop();
    for (const c of [...retired, ...(temporal ? [temporal.client] : [])])
      await c.connection.close().catch(() => undefined);
  }
}

async function traffic(config: Config, service: Service): Promise<TrafficState> {
  return createRoute53Activities(config).trafficDescribe({ service: service.name });
}

/**
 * Writes the old primary acknowledged that the new one still lacks after reconciliation and that
 * no case holds: every one of them is a loss nobody was told about (must be 0).
 */
async function missingAfterReconciliation(
  load: WriteLoad,
  service: Service,
  oldPrimary: string,
  newPrimary: string,
  held: Set<string>,
): Promise<number> {
  const acked = load
    .ackedBy(oldPrimary)
    .map((a) => a.id)
    .filter((id) => !held.has(id));
  const present = await presentIds(nodeOf(service, newPrimary), acked);
  return acked.filter((id) => !present.has(id)).length;
}

function loadFigures(load: WriteLoad): DemoResult['load'] {
  return { clients: load.clients, writesAcked: load.acks.length, failedAttempts: Object.fromEntries(load.errors) };
}
