// Where a drained region's geolocation answers go. Pure (types and the pure residency helpers
// only), so a dry-run plan in workflow code could use it as the Route 53 provider does.
//
// The rule: a location with a residency rule (its geolocation rule names a residency class, or,
// with none named, it is in the EU: continent:EU or an EU member state) is answered only by a
// region that rule allows: the first allowed region in the service's order of preference that is
// not being drained. When no region qualifies, the drain is refused, unless the class explicitly
// allows data outside (allowOutside), and only then does the location go where the others go.
import type { TrafficRecord } from '../../activities/types';
import { regionAllowed, type ResidencyRule } from '../policy/residency';

/** EU member states (ISO 3166-1 alpha-2), as Route 53 names countries. */
export const EU_COUNTRIES = [
  'AT', 'BE', 'BG', 'HR', 'CY', 'CZ', 'DK', 'EE', 'FI', 'FR', 'DE', 'GR', 'HU', 'IE',
  'IT', 'LV', 'LT', 'LU', 'MT', 'NL', 'PL', 'PT', 'RO', 'SK', 'SI', 'ES', 'SE',
] as const;

/** The rule EU locations follow when their geolocation rule names no residency class. */
export const DEFAULT_EU_RULE: ResidencyRule = { class: 'eu (default for EU locations)', allowedRegions: ['eu-*'], allowOutside: false };

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

/**
 * The records after draining `drained`. `rules` maps a location label to the residency rule its
 * geolocation rule names (absent: EU locations get DEFAULT_EU_RULE). `to` is where unrestricted
 * locations go; absent, the region that answers the default location now. Returns the reason
 * instead when the drain must be refused.
 */
export function geoDrain(
  records: TrafficRecord[], drained: string, regions: string[], rules: Record<string, ResidencyRule | undefined>, to?: string,
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
    const rule = locationRule(rec.location, rules[rec.location]);
    let next: string | undefined;
    if (rule) {
      const preferred = to !== undefined && to !== drained && regionAllowed(rule, to) ? to : undefined;
      next = preferred ?? regions.find((r) => r !== drained && regionAllowed(rule, r));
      if (next === undefined) {
        if (!rule.allowOutside) {
          return {
            refused:
              `${rec.location} is answered by ${drained}, and its clients may only be served from ${rule.allowedRegions.join(', ')} (residency ${rule.class}); ` +
              `no other region of the service is there (regions: ${regions.join(', ')}). Add one, or, if serving them from elsewhere is permitted, set allowOutside: true on the residency class`,
          };
        }
        next = fallback;
      }
    } else {
      next = fallback;
    }
    if (next === undefined || next === drained) {
      return { refused: `${drained} answers the default location, so name the region that takes over its clients` };
    }
    moved.push(`${rec.location} ${drained} → ${next}`);
    out.push({ ...rec, region: next });
  }
  return { records: out, moved };
}
