// The readiness evaluation a Temporal Schedule runs per service (regionshift-readiness-<service>):
// each region's worker describes its own database, one of them reads the traffic records, and
// src/contract/readiness.ts judges. It changes nothing; its result is the evaluation.
import * as wf from '@temporalio/workflow';
import type { DbNodeState, RegionActivities, TrafficState } from '../src/contract/activities';
import { evaluateReadiness, type ReadinessEvaluation, type ReadinessInput } from '../src/contract/readiness';
import { regionTaskQueue } from '../src/contract/runbook/ids';

const inRegion = (region: string) =>
  // A region whose worker is down is a finding, not something to wait for: no retries, a short queue wait.
  wf.proxyActivities<RegionActivities>({ taskQueue: regionTaskQueue(region), scheduleToStartTimeout: '5s', startToCloseTimeout: '10s', retry: { maximumAttempts: 1 } });

function why(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } };
  return e.cause?.message ? `${e.message}: ${e.cause.message}` : (e.message ?? String(err));
}

export async function readiness(input: ReadinessInput): Promise<ReadinessEvaluation> {
  const topology = await Promise.all(
    input.regions.map((region) =>
      inRegion(region).dbDescribe({ service: input.service }).catch((err: unknown): DbNodeState => ({ region, reachable: false, error: `its worker did not describe its database (${why(err)})` })),
    ),
  );
  // The records are global; any region's worker reads them: the writer's first, then the rest.
  const writer = topology.find((n) => n.reachable && n.role === 'primary')?.region;
  const readers = [...(writer ? [writer] : []), ...input.regions.filter((r) => r !== writer && topology.find((n) => n.region === r)?.reachable)];
  let traffic: { state: TrafficState } | { error: string } = { error: 'no region worker answered' };
  for (const region of readers) {
    try {
      traffic = { state: await inRegion(region).trafficDescribe({ service: input.service }) };
      break;
    } catch (err) {
      traffic = { error: `${region}: ${why(err)}` };
    }
  }
  return evaluateReadiness(input, topology, traffic, Date.now());
}
