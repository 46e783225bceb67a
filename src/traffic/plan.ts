// Pure traffic arithmetic, shared by the Route 53 provider and by workflow code (dry-run plans).
import type { TrafficRecord, TrafficState } from '../../activities/types';

/** The region clients are sent to: the failover PRIMARY, else the highest positive weight. */
export function primaryRegionOf(state: TrafficState): string | undefined {
  const primary = state.records.find((r) => r.failover === 'PRIMARY');
  if (primary) return primary.region;
  const weighted = state.records.filter((r) => (r.weight ?? 0) > 0).sort((a, b) => (b.weight ?? 0) - (a.weight ?? 0));
  return weighted[0]?.region;
}

/** Records after draining `from` into `to`: weighted, `to` takes `from`'s weight; failover, they swap roles. */
export function shiftedRecords(records: TrafficRecord[], from: string, to: string): TrafficRecord[] {
  const fromRec = records.find((r) => r.region === from);
  return records.map((r) => {
    if (r.failover) {
      if (r.region === to) return { ...r, failover: 'PRIMARY' as const };
      if (r.region === from) return { ...r, failover: 'SECONDARY' as const };
      return r;
    }
    if (r.region === from) return { ...r, weight: 0 };
    if (r.region === to) return { ...r, weight: (r.weight ?? 0) + (fromRec?.weight ?? 0) };
    return r;
  });
}
