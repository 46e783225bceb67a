// Losing a region on the local stack, and getting a clean pair back. Killing = what a region
// outage does to the parts of regionshift that live there: its PostgreSQL stops without a
// shutdown checkpoint and its worker vanishes mid-task.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Client } from '@temporalio/client';
import { route53Traffic, type Config, type Service } from '../lib/config/schema';
import { findPgBin, logFile, psql, startReadOnly, stop, type PgNode } from '../lib/postgres/node';
import { fenceOnReturnWorkflowId } from '../contract/runbook/ids';
import { guardianWorkflowId } from '../contract/guardian/ids';
import { pgComponentName } from '../stack/postgres';
import { isAlive, isOurs } from '../stack/process';
import { readState } from '../stack/state';
import { stackUp, type UpResult } from '../stack/stack';
import type { StackContext } from '../stack/status';
import { workerComponentName } from '../stack/workers';
import { clusterComponentName } from '../stack/replicated';
import { nodeOf } from './ledger';

export interface Killed {
  region: string;
  /** When the kill started (ms since epoch): the trigger time of the unplanned run. */
  at: number;
  postgres: string;
  worker: string;
  /** The region's Temporal cluster, with a replicated control plane. */
  temporal?: string;
}

function pgBinFor(home: string, service: string, node: PgNode): string {
  const bin = readState(home).postgres[pgComponentName(service, node.region)]?.bin ?? findPgBin();
  if (!bin) throw new Error('PostgreSQL binaries not found (set PG_BIN)');
  return bin;
}

async function killWorker(home: string, region: string, component = workerComponentName(region)): Promise<string> {
  const rec = readState(home).processes[component];
  if (!rec || !isAlive(rec.pid)) return 'was not running';
  // Only a pid that is still the one we started is signalled (a reused pid is someone else).
  if (!isOurs(rec)) return `pid ${rec.pid} is no longer our ${component}; left alone`;
  try {
    process.kill(-rec.pid, 'SIGKILL'); // the worker was spawned as the leader of its own group
  } catch {
    process.kill(rec.pid, 'SIGKILL');
  }
  const deadline = Date.now() + 5_000;
  while (isAlive(rec.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return `process group ${rec.pid} SIGKILLed`;
}

/** Stops the region's PostgreSQL (immediate: no checkpoint, like a crash) and SIGKILLs its worker (and its Temporal cluster, when replicated). */
export async function killRegion(
  ctx: StackContext & { home: string },
  service: Service,
  region: string,
): Promise<Killed> {
  const node = nodeOf(service, region);
  const bin = pgBinFor(ctx.home, service.name, node);
  const at = Date.now();
  const replicated = readState(ctx.home).processes[clusterComponentName(region)] !== undefined;
  const [postgres, worker, temporal] = await Promise.all([
    stop(bin, node, 'immediate').then(() => `${node.host}:${node.port} stopped (immediate)`),
    killWorker(ctx.home, region),
    // A replicated control plane loses the region's cluster with it.
    replicated ? killWorker(ctx.home, region, clusterComponentName(region)) : undefined,
  ]);
  return { region, at, postgres, worker, ...(temporal ? { temporal } : {}) };
}

async function terminateIfRunning(client: Client, workflowId: string, reason: string): Promise<boolean> {
  const handle = client.workflow.getHandle(workflowId);
  try {
    const desc = await handle.describe();
    if (desc.status.name !== 'RUNNING') return false;
    await handle.terminate(reason);
    return true;
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') return false;
    throw err;
  }
}

async function resetMoto(endpointUrl: string): Promise<void> {
  const res = await fetch(`${endpointUrl.replace(/\/$/, '')}/moto-api/reset`, { method: 'POST' });
  if (!res.ok) throw new Error(`moto reset at ${endpointUrl} answered HTTP ${res.status}`);
}

/** The data directory, its log, and copies rejoin kept aside: everything of this node on disk. */
function removeNodeFiles(node: PgNode): void {
  rmSync(node.dataDir, { recursive: true, force: true });
  rmSync(logFile(node), { force: true });
  const parent = dirname(node.dataDir);
  const aside = `${basename(node.dataDir)}.before-reclone-`;
  if (!existsSync(parent)) return;
  for (const entry of readdirSync(parent))
    if (entry.startsWith(aside)) rmSync(join(parent, entry), { recursive: true, force: true });
}

/**
 * Rebuilds a service's database pair from nothing: its first region primary, the others
 * streaming standbys, traffic on the first region. Temporal keeps running (its history is the
 * audit trail); the service's nodes, its Route 53 records, any fence-on-return watcher and its guardian go.
 * A watcher left running would fence the rebuilt node whenever it next answered, even after a
 * later failover had made it the primary.
 */
export async function rebuildPair(
  ctx: StackContext & { home: string; onProgress?: (line: string) => void },
  client: Client,
  service: Service,
): Promise<UpResult> {
  const say = ctx.onProgress ?? (() => undefined);
  for (const region of service.regions) {
    const id = fenceOnReturnWorkflowId(service.name, region);
    if (await terminateIfRunning(client, id, 'the demo ledger is being rebuilt from scratch'))
      say(`terminated ${id} (its region is being rebuilt)`);
  }
  // The guardian's memory (the writer, its drains, the cooldown) is of the ledger being thrown
  // away; the intake starts a fresh one, from the config, with the next alert.
  const guardian = guardianWorkflowId(service.name);
  if (await terminateIfRunning(client, guardian, 'the demo ledger is being rebuilt from scratch'))
    say(`terminated ${guardian} (it remembered the ledger being rebuilt)`);
  await Promise.all(
    service.regions.map(async (region) => {
      const node = nodeOf(service, region);
      if (existsSync(node.dataDir)) {
        const bin = pgBinFor(ctx.home, service.name, node);
        await stop(bin, node, 'fast').catch(() => stop(bin, node, 'immediate'));
      }
      removeNodeFiles(node);
    }),
  );
  const motoUrl = route53Traffic(service).endpointUrl;
  if (motoUrl) await resetMoto(motoUrl);
  return stackUp(ctx);
}

/**
 * The demo's cast: home (the first region, the writer), away (the second, where failovers go) and,
 * when the service has more regions, spare: the last one, lost and drained as a region that is
 * not the writer.
 */
export function configRegions(
  config: Config,
  serviceName: string,
): { service: Service; home: string; away: string; spare?: string } {
  const service = config.services.find((s) => s.name === serviceName);
  if (!service) throw new Error(`the config has no service "${serviceName}"; the demo runs on service ${serviceName}`);
  const [home, away, ...rest] = service.regions as [string, string, ...string[]];
  const spare = rest.at(-1);
  return { service, home, away, ...(spare ? { spare } : {}) };
}

/**
 * The failed region comes back: its database is started read-only on its own timeline (the old
 * primary's writes after the divergence exist nowhere else; reconciliation reads them before
 * anything rewinds them), then the stack brings up what is still down (its worker).
 */
export async function reviveRegion(
  ctx: StackContext & { home: string; onProgress?: (line: string) => void },
  service: Service,
  region: string,
): Promise<{ postgres: string; up: UpResult }> {
  const node = nodeOf(service, region);
  const bin = pgBinFor(ctx.home, service.name, node);
  await startReadOnly(bin, node);
  const up = await stackUp(ctx);
  return { postgres: `${node.host}:${node.port} started read-only on its own timeline`, up };
}

/**
 * A region's failure often starts with its network: the standby in another region stops
 * receiving WAL (replication falls behind) while the primary keeps acknowledging its clients.
 * Everything it acknowledges from now on exists only in that region.
 */
export async function cutReplication(
  ctx: StackContext & { home: string },
  service: Service,
  standbyRegion: string,
): Promise<string> {
  const node = nodeOf(service, standbyRegion);
  const bin = pgBinFor(ctx.home, service.name, node);
  await psql(bin, node, "ALTER SYSTEM SET primary_conninfo = ''");
  await psql(bin, node, 'SELECT pg_reload_conf()');
  const deadline = Date.now() + 15_000;
  while ((await psql(bin, node, 'SELECT count(*) FROM pg_stat_wal_receiver')).trim() !== '0') {
    if (Date.now() > deadline) throw new Error(`the WAL receiver of ${standbyRegion} did not stop`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return `${standbyRegion} stopped receiving WAL`;
}
