// A network partition between two regions, as the monitoring sees it: one vantage point's probes
// of one region fail while every other probe goes on. On one machine there is no network to cut,
// so the vantage point's blackbox module for that region binds to an address no interface has
// (config.ts) and the exporter reloads; the PostgreSQL server itself is untouched.
import { writeFileSync } from 'node:fs';
import type { Config } from '../../lib/config/schema';
import { blackboxConfig, cutTargets, exporterUrl, monitoringPlan } from './config';

async function reload(port: number): Promise<void> {
  const res = await fetch(`${exporterUrl(port)}/-/reload`, { method: 'POST', signal: AbortSignal.timeout(5_000) });
  if (!res.ok)
    throw new Error(`the blackbox exporter on port ${port} refused to reload: HTTP ${res.status} ${await res.text()}`);
}

/** Cuts (or heals) the path from the vantage point `from` to the PostgreSQL of `to`. */
export async function setVantageCut(
  ctx: { config: Config; home: string; configFile: string },
  from: string,
  to: string,
  cut: boolean,
): Promise<void> {
  const plan = monitoringPlan(ctx.config, ctx.home, ctx.configFile);
  const vp = plan.vantagePoints.find((v) => v.region === from);
  if (!vp)
    throw new Error(
      `no vantage point in ${from}: the stack's regions are ${plan.vantagePoints.map((v) => v.region).join(', ')}`,
    );
  if (from === to) throw new Error(`${from} does not probe itself`);
  const now = new Set(cutTargets(vp.configFile));
  if (cut) now.add(to);
  else now.delete(to);
  writeFileSync(vp.configFile, blackboxConfig(ctx.config, from, [...now]));
  await reload(vp.port);
}
