// Where a drained region's geolocation answers go. Pure (types and the pure residency helpers
// only), so a dry-run plan in workflow code could use it as the Route 53 provider does.
//
// The rule: a location with a residency rule (its geolocation rule names a residency class, or,
// with none named, it is in the EU: continent:EU or an EU member state) is answered only by a
// region that rule allows: the first allowed region in the service's order of preference that is
// not being drained. When no region qualifies, the drain is refused, unless the class explicitly
// allows data outside (allowOutside), and only then does the location go where the others go.
import type { KeptLocation, TrafficRecord } from '../activities';
import { regionAllowed, type ResidencyRule } from '../policy/residency';

/** EU member states (ISO 3166-1 alpha-2), as Route 53 names countries. */
export const EU_COUNTRIES = [
  'AT',
  'BE',
  'BG',
  'HR',
  'CY',
  'CZ',
  'DK',
  'EE',
  'FI',
  'FR',
  'DE',
  'GR',
  'HU',
  'IE',
  'IT',
  'LV',
  'LT',
  'LU',
  'MT',
  'NL',
  'PL',
  'PT',
  'RO',
  'SK',
  'SI',
  'ES',
  'SE',
] as const;

/** The rule EU locations follow when their geolocation rule names no residency class. */
export const DEFAULT_EU_RULE: ResidencyRule = {
  class: 'eu (default for EU locations)',
  allowedRegions: ['eu-*'],
  allowOutside: false,
};

/** continent:EU, or country:XX[-SUB] of an EU member state. */
export function isEuLocation(label: string): boolean {
  if (label === 'continent:EU') return true;
  const m = /^country:([A-Z]{2})(?:-|$)/.exec(label);
  return m !== null && (EU_COUNTRIES as readonly string[]).includes(m[1]!);
}

/** The residency rule a location's answer must respect, if any. */
export function locationRule(label: string, explicit: ResidencyRule | undefined): ResidencyRule | undefined {
  return explicit ?? (isEuLocation(label) ? DEFAULT_EU_RULE : undefined);
}

export interface GeoDrainPlan {
  /** The records with each moved location's new region (targets are the caller's to set). */
  records: TrafficRecord[];
  moved: string[];
}

/** Where one location answered by a drained region goes, or why it may not go anywhere. */
function nextRegion(
  location: string,
  drained: string,
  regions: string[],
  rule: ResidencyRule | undefined,
  to: string | undefined,
  fallback: string | undefined,
): { region: string } | { refused: string } {
  let next: string | undefined;
  if (rule) {
    const preferred = to !== undefined && to !== drained && regionAllowed(rule, to) ? to : undefined;
    next = preferred ?? regions.find((r) => r !== drained && regionAllowed(rule, r));
    if (next === undefined) {
      if (!rule.allowOutside) {
        return {
          refused:
            `${location} is answered by ${drained}, and its clients may only be served from ${rule.allowedRegions.join(', ')} (residency ${rule.class}); ` +
            `no other region of the service is there (regions: ${regions.join(', ')}). Add one, or, if serving them from elsewhere is permitted, set allowOutside: true on the residency class`,
        };
      }
      next = fallback;
    }
  } else {
    next = fallback;
  }
  if (next === undefined || next === drained)
    return { refused: `${drained} answers the default location, so name the region that takes over its clients` };
  return { region: next };
}

/**
 * The records after draining `drained`. `rules` maps a location label to the residency rule its
 * geolocation rule names (absent: EU locations get DEFAULT_EU_RULE). `to` is where unrestricted
 * locations go; absent, the region that answers the default location now. Returns the reason
 * instead when the drain must be refused.
 */
export function geoDrain(
  records: TrafficRecord[],
  drained: string,
  regions: string[],
  rules: Record<string, ResidencyRule | undefined>,
  to?: string,
): GeoDrainPlan | { refused: string } {
  const currentDefault = records.find((r) => r.location === 'default')?.region;
  const fallback = to ?? (currentDefault !== drained ? currentDefault : undefined);
  const moved: string[] = [];
  const out: TrafficRecord[] = [];
  for (const rec of records) {
    if (rec.region !== drained || rec.location === undefined) {
      out.push(rec);
      continue;
    }
    const next = nextRegion(
      rec.location,
      drained,
      regions,
      locationRule(rec.location, rules[rec.location]),
      to,
      fallback,
    );
    if ('refused' in next) return { refused: next.refused };
    moved.push(`${rec.location} ${drained} → ${next.region}`);
    out.push({ ...rec, region: next.region });
  }
  return { records: out, moved };
}

export interface FrontDrainPlan extends GeoDrainPlan {
  /** Locations left on the drained region because residency allows no other. */
  kept: KeptLocation[];
}

/**
 * Geolocation records in front of weighted ones (traffic.weightedRecordName): the locations
 * `drained` answers move to `to` or, where residency forbids it, to the first region the rule
 * allows among `regions` (those still in service). Unlike geoDrain, a location no region may
 * take stays where it is and is reported in `kept`, rather than refusing the drain: the weights
 * behind it can still move, and its clients could be served from nowhere else anyway.
 */
export function frontDrain(
  records: TrafficRecord[],
  drained: string,
  regions: string[],
  rules: Record<string, ResidencyRule | undefined>,
  to: string,
): FrontDrainPlan {
  const moved: string[] = [];
  const kept: KeptLocation[] = [];
  const out = records.map((rec) => {
    if (rec.region !== drained || rec.location === undefined) return rec;
    const next = nextRegion(rec.location, drained, regions, locationRule(rec.location, rules[rec.location]), to, to);
    if ('refused' in next) {
      kept.push({ location: rec.location, region: drained, why: next.refused });
      return rec;
    }
    moved.push(`${rec.location} ${drained} → ${next.region}`);
    return { ...rec, region: next.region };
  });
  return { records: out, moved, kept };
}
