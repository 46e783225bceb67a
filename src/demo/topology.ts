// Is the local stack in the shape the demo starts from? The first region the writer and not
// fenced, every other region a standby streaming from it, traffic on the first region, both
// workers up, nothing in flight. Anything else (a previous demo's aftermath, a half-finished
// run) is named, and the demo rebuilds the pair.
import type { Client } from '@temporalio/client';
import { createRoute53Activities } from '../../activities/traffic/route53';
import type { Config, Service } from '../lib/config/schema';
import { fenceOnReturnWorkflowId, runWorkflowId } from '../contract/runbook/ids';
import { pgComponentName, probePg } from '../stack/postgres';
import { stackStatus, type StackContext } from '../stack/stack';
import { workerComponentName } from '../stack/workers';
import { primaryRegionOf } from '../contract/traffic/plan';
import { adminClient, nodeOf } from './ledger';
import { guardianWorkflowId } from '../contract/guardian/ids';
import type { GuardianView } from '../contract/guardian/types';

async function running(client: Client, workflowId: string): Promise<boolean> {
  try {
    return (await client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING';
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') return false;
    throw err;
  }
}

async function fenced(service: Service, region: string): Promise<boolean> {
  const client = await adminClient(nodeOf(service, region));
  try {
    const res = await client.query<{ v: string }>("SELECT current_setting('default_transaction_read_only') AS v");
    return res.rows[0]?.v === 'on';
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Why the pair is not the demo's starting point, or undefined when it is. */
export async function pairProblem(
  ctx: StackContext & { config: Config },
  client: Client,
  service: Service,
): Promise<string | undefined> {
  const [home, ...others] = service.regions as [string, ...string[]];
  const status = await stackStatus(ctx);
  const component = (name: string) => status.components.find((c) => c.name === name);
  const homeNode = nodeOf(service, home);
  const db = component(pgComponentName(service.name, home));
  if (db?.health !== 'up') return `${home}'s database is down`;
  if (db.role !== 'primary') return `${home} is a ${db.role}, not the primary`;
  for (const region of others) {
    const s = component(pgComponentName(service.name, region));
    if (s?.health !== 'up') return `${region}'s database is down`;
    if (s.role !== 'standby') return `${region} is a ${s.role ?? 'node of unknown role'}, not a standby`;
    if (!s.streaming || s.upstream !== `${homeNode.host}:${homeNode.port}`)
      return `${region} is not streaming from ${home}`;
  }
  for (const region of service.regions) {
    if (component(workerComponentName(region))?.health !== 'up') return `the ${region} worker is down`;
  }
  if (await fenced(service, home)) return `${home} is fenced`;
  const writer = primaryRegionOf(await createRoute53Activities(ctx.config).trafficDescribe({ service: service.name }));
  if (writer !== home) return `traffic points at ${writer ?? 'no region'}`;
  for (const region of service.regions) {
    const id = fenceOnReturnWorkflowId(service.name, region);
    if (await running(client, id)) return `${id} is still waiting to fence ${region}`;
  }
  if (await running(client, runWorkflowId(service.name))) return `a run of ${service.name} is in progress`;
  return guardianProblem(client, service.name, home);
}

/**
 * The guardian starts the demo's unplanned runs: it must take the first region for the writer
 * (else it would drain it instead of failing over) and hold no drain of its own (else it would
 * not drain that region again, and would undrain it on its own schedule).
 */
async function guardianProblem(client: Client, service: string, home: string): Promise<string | undefined> {
  let view: GuardianView;
  try {
    view = await client.workflow.getHandle(guardianWorkflowId(service)).query<GuardianView>('state');
  } catch (err) {
    // None yet: the intake starts it with the first alert, knowing nothing but the config.
    if ((err as Error).name === 'WorkflowNotFoundError') return undefined;
    throw err;
  }
  if (view.primary && view.primary !== home) return `the guardian takes ${view.primary} for the writer`;
  if (view.drained.length) return `the guardian holds a drain of ${view.drained.map((d) => d.region).join(', ')}`;
  return undefined;
}

/** One region's database as the demo sees it after a run. */
export interface DemoRegion {
  region: string;
  role: 'primary' | 'standby' | 'down';
  /** Standbys: the region whose server the WAL receiver streams from (host:port when no region has it). */
  streamingFrom?: string;
}

/** Every region's database now, asked directly (not the run's own record of it). */
export async function regionsNow(service: Service): Promise<DemoRegion[]> {
  const byAddress = new Map<string, string>(
    service.regions.map((r) => [`${nodeOf(service, r).host}:${nodeOf(service, r).port}`, r]),
  );
  return Promise.all(
    service.regions.map(async (region): Promise<DemoRegion> => {
      const p = await probePg(nodeOf(service, region)).catch(() => undefined);
      if (!p) return { region, role: 'down' };
      if (p.role === 'primary') return { region, role: 'primary' };
      return {
        region,
        role: 'standby',
        ...(p.streaming && p.upstream ? { streamingFrom: byAddress.get(p.upstream) ?? p.upstream } : {}),
      };
    }),
  );
}

/** Regions that are up but neither the writer nor streaming from it: standbys left behind. */
export function notFollowing(regions: DemoRegion[], writer: string): string[] {
  return regions
    .filter((r) => r.role !== 'down' && r.region !== writer && r.streamingFrom !== writer)
    .map((r) => r.region);
}

/** "us-west-2 primary · us-east-1 ← us-west-2 · eu-west-1 ← us-west-2 · ap-southeast-1 down" */
export function describeRegions(regions: DemoRegion[]): string {
  return regions
    .map((r) => (r.role === 'standby' ? `${r.region} ← ${r.streamingFrom ?? 'nothing'}` : `${r.region} ${r.role}`))
    .join(' · ');
}
