// Pure traffic arithmetic, shared by the traffic providers and by workflow code (dry-run plans).
// No imports beyond types and other pure helpers: workflow code must stay deterministic and free
// of Node APIs.
import type { TrafficRecord, TrafficState } from '../activities';
import { frontDrain } from './geo-drain';

/**
 * Where a drained region's weight goes. proportional: over the other regions in proportion to
 * their weights (all of it to the target when none of them has any); to-target: all of it to the
 * region named as the target.
 */
export type DrainMode = 'proportional' | 'to-target';

/** Route 53's largest weight. */
export const MAX_WEIGHT = 255;

/**
 * The region clients are sent to (the writer's, for a service that follows its writer): the
 * failover PRIMARY; the region of the geolocation default; the first region whose ARC routing
 * control is On; else the highest positive weight.
 */
export function primaryRegionOf(state: TrafficState): string | undefined {
  const primary = state.records.find((r) => r.failover === 'PRIMARY');
  if (primary) return primary.region;
  const geoDefault = state.records.find((r) => r.location === 'default');
  if (geoDefault) return geoDefault.region;
  if (state.records.some((r) => r.routingControl !== undefined))
    return state.records.find((r) => r.routingControl === 'On')?.region;
  const weighted = state.records.filter((r) => (r.weight ?? 0) > 0).sort((a, b) => (b.weight ?? 0) - (a.weight ?? 0));
  return weighted[0]?.region;
}

export interface WeightChange {
  weights: Map<string, number>;
  /** Nothing could move: `from` had no traffic and, to-target, neither had `to`. */
  nothingToMove: boolean;
}

/**
 * Weights after draining `from`. All-zero weights mean equal shares in Route 53, so they are read
 * as 1 each. Results are whole numbers (largest remainder keeps the total) scaled to fit 255,
 * where a region that had traffic keeps at least 1.
 */
export function drainedWeights(
  current: ReadonlyArray<Pick<TrafficRecord, 'region' | 'weight'>>,
  from: string,
  to: string | undefined,
  mode: DrainMode,
): WeightChange {
  const allZero = current.every((r) => (r.weight ?? 0) === 0);
  const weights = new Map(current.map((r) => [r.region, allZero ? 1 : (r.weight ?? 0)]));
  const fromWeight = weights.get(from) ?? 0;
  if (fromWeight === 0) return { weights, nothingToMove: to !== undefined && (weights.get(to) ?? 0) === 0 };
  const others = [...weights.keys()].filter((r) => r !== from);
  const othersTotal = others.reduce((sum, r) => sum + (weights.get(r) ?? 0), 0);
  weights.set(from, 0);
  if (mode === 'to-target' || othersTotal === 0) {
    const receiver = to ?? others[0];
    if (receiver === undefined) return { weights: new Map(weights).set(from, fromWeight), nothingToMove: true };
    weights.set(receiver, (weights.get(receiver) ?? 0) + fromWeight);
  } else {
    const shares = others.map((r) => ({ region: r, exact: (fromWeight * (weights.get(r) ?? 0)) / othersTotal }));
    let left = fromWeight - shares.reduce((sum, s) => sum + Math.floor(s.exact), 0);
    const byRemainder = [...shares].sort(
      (a, b) =>
        b.exact - Math.floor(b.exact) - (a.exact - Math.floor(a.exact)) ||
        others.indexOf(a.region) - others.indexOf(b.region),
    );
    const extra = new Set<string>();
    for (const s of byRemainder) if (left-- > 0) extra.add(s.region);
    for (const s of shares)
      weights.set(s.region, (weights.get(s.region) ?? 0) + Math.floor(s.exact) + (extra.has(s.region) ? 1 : 0));
  }
  return { weights: capped(weights), nothingToMove: false };
}

/**
 * Weights after bringing `region` back: it and every region still in service return to their
 * configured weights; regions still drained (weight 0) stay at 0.
 */
export function undrainedWeights(
  current: ReadonlyArray<Pick<TrafficRecord, 'region' | 'weight'>>,
  configured: Record<string, number>,
  region: string,
): Map<string, number> {
  const weights = new Map<string, number>();
  for (const r of current) {
    const inService = r.region === region || (r.weight ?? 0) > 0;
    weights.set(r.region, inService ? (configured[r.region] ?? 0) : 0);
  }
  // Nobody left with traffic (every other region drained and the region's configured weight 0):
  // all-zero would mean equal shares, so the region takes it all.
  if ([...weights.values()].every((w) => w === 0)) weights.set(region, 1);
  return weights;
}

function capped(weights: Map<string, number>): Map<string, number> {
  const top = Math.max(...weights.values());
  if (top <= MAX_WEIGHT) return weights;
  // Scale everyone so the ratios survive the cap; a region with traffic keeps at least 1.
  return new Map([...weights].map(([r, w]) => [r, w === 0 ? 0 : Math.max(1, Math.round((w * MAX_WEIGHT) / top))]));
}

/**
 * Records after moving traffic from `from` to `to`: weighted, per the drain mode; failover, the
 * two swap roles; geolocation, every location `from` answered is answered by `to` (the others,
 * such as the EU on eu-west-1, stay); ARC, `to` On and `from` Off. Geolocation records in front
 * of weighted ones (the reference design's EU on eu-west-1) are not weights: the weighted layer
 * drains, and a location `from` answered goes where the Route 53 provider sends it (frontDrain;
 * a plan sees no residency class a config names, so EU locations follow the default EU rule).
 * Targets of geolocation records are left as they were: plans show regions.
 */
export function shiftedRecords(
  records: TrafficRecord[],
  from: string,
  to: string,
  drain: DrainMode = 'to-target',
): TrafficRecord[] {
  if (records.some((r) => r.weight !== undefined)) {
    const weighted = records.filter((r) => r.location === undefined);
    const { weights } = drainedWeights(weighted, from, to, drain);
    const serving = weighted.filter((r) => (weights.get(r.region) ?? 0) > 0).map((r) => r.region);
    // frontDrain moves only the locations `from` answered and passes every other record through.
    return frontDrain(records, from, serving, {}, to).records.map((r) =>
      r.location !== undefined ? r : { ...r, weight: weights.get(r.region) ?? r.weight },
    );
  }
  return records.map((r) => {
    if (r.failover) {
      if (r.region === to) return { ...r, failover: 'PRIMARY' as const };
      if (r.region === from) return { ...r, failover: 'SECONDARY' as const };
      return r;
    }
    if (r.location !== undefined) return r.region === from ? { ...r, region: to } : r;
    if (r.routingControl !== undefined) {
      if (r.region === to) return { ...r, routingControl: 'On' as const };
      if (r.region === from) return { ...r, routingControl: 'Off' as const };
    }
    return r;
  });
}

/** One line per record for reports: "us-west-2 100", "eu-west-1 continent:EU", "us-east-1 On". */
export function describeRecords(records: TrafficRecord[]): string {
  return records
    .map((r) =>
      `${r.location !== undefined ? `${r.location}→` : ''}${r.region} ${r.failover ?? r.weight ?? r.routingControl ?? ''}`.trimEnd(),
    )
    .join(', ');
}

/** A record's identity in a traffic state: its location (geolocation records), else its region. */
export function recordKey(r: TrafficRecord): string {
  return r.location ?? r.region;
}

/** Whether `b` is the same record as `a`, every routing field equal. */
export function sameRecord(a: TrafficRecord, b: TrafficRecord | undefined): boolean {
  return (
    b !== undefined &&
    a.region === b.region &&
    a.target === b.target &&
    a.ttl === b.ttl &&
    a.weight === b.weight &&
    a.failover === b.failover &&
    a.location === b.location &&
    a.routingControl === b.routingControl
  );
}

/** Whether two traffic states hold the same records, each one matched by its key. */
export function sameTraffic(a: TrafficState, b: TrafficState): boolean {
  return (
    a.records.length === b.records.length &&
    a.records.every((r) =>
      sameRecord(
        r,
        b.records.find((x) => recordKey(x) === recordKey(r)),
      ),
    )
  );
}
