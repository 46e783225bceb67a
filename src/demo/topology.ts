// Is the local stack in the shape the demo starts from? The first region the writer and not
// fenced, every other region a standby streaming from it, traffic on the first region, both
// workers up, nothing in flight. Anything else (a previous demo's aftermath, a half-finished
// run) is named, and the demo rebuilds the pair.
import type { Client } from '@temporalio/client';
import { createRoute53Activities } from '../../activities/traffic/route53';
import type { Config, Service } from '../config/schema';
import { fenceOnReturnWorkflowId, runWorkflowId } from '../runbook/ids';
import { pgComponentName } from '../stack/postgres';
import { stackStatus, type StackContext } from '../stack/stack';
import { workerComponentName } from '../stack/workers';
import { primaryRegionOf } from '../traffic/plan';
import { adminClient, nodeOf } from './ledger';

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
export async function pairProblem(ctx: StackContext & { config: Config }, client: Client, service: Service): Promise<string | undefined> {
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
    if (!s.streaming || s.upstream !== `${homeNode.host}:${homeNode.port}`) return `${region} is not streaming from ${home}`;
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
  return undefined;
}
