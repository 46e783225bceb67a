// Which region writes when no database answers as an unfenced primary: it must be one that does
// not answer. Shared by the failover's preflight and the drain's, whose answer decides whether an
// evacuation fails a service over or drains it.
import type { DbNodeState, TrafficState } from '../src/contract/activities';
import { primaryRegionOf } from '../src/contract/traffic/plan';

/**
 * The first candidate that does not answer: `reported` (the region an alarm reported down), the
 * only silent region, the region the records send clients to, then `also` (the region a drain
 * takes out). Never a region that answers: active-active weights need not favour the writer
 * (us-east-1 writes with 30 of 100), so the heaviest record alone is no proof of it.
 */
export function silentWriter(
  topology: DbNodeState[],
  traffic: TrafficState,
  hints: { reported?: string; also?: string } = {},
): string | undefined {
  const silent = topology.filter((n) => !n.reachable).map((n) => n.region);
  const candidates = [
    hints.reported,
    silent.length === 1 ? silent[0] : undefined,
    primaryRegionOf(traffic),
    hints.also,
  ];
  return candidates.find((c) => c !== undefined && silent.includes(c));
}
