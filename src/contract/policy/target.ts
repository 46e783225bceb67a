// Choosing a failover target by policy: healthy, least lag, allowed by the service's data
// residency; ties go to the config's order of preference. Pure: it judges a topology that
// preflight (or any caller) observed.
import type { DbNodeState } from '../activities';
import { regionAllowed, type ResidencyRule } from './residency';

export interface TargetCandidate {
  region: string;
  eligible: boolean;
  /** Why it was passed over, or its lag. */
  verdict: string;
  lagSeconds?: number;
}

export interface TargetChoice {
  target: string;
  reason: string;
  candidates: TargetCandidate[];
}

export class NoTargetError extends Error {
  override name = 'NoTargetError';
  constructor(
    message: string,
    readonly candidates: TargetCandidate[],
  ) {
    super(message);
  }
}

/**
 * How far the standby's replay trailed what it had last heard from the writer, in ms (unknown:
 * undefined). The one home of the replication-lag estimate: target choice, the RPO a run records
 * and the divergence evidence reconciliation starts from all read it here.
 */
export function lagMsOf(
  node: Pick<DbNodeState, 'lastHeardFromPrimaryAt' | 'lastReplayedCommitAt'> | undefined,
): number | undefined {
  const heard = node?.lastHeardFromPrimaryAt ? Date.parse(node.lastHeardFromPrimaryAt) : NaN;
  const replayed = node?.lastReplayedCommitAt ? Date.parse(node.lastReplayedCommitAt) : NaN;
  return Number.isNaN(heard) || Number.isNaN(replayed) ? undefined : Math.max(0, heard - replayed);
}

/** lagMsOf in seconds. */
export function lagSecondsOf(node: DbNodeState): number | undefined {
  const ms = lagMsOf(node);
  return ms === undefined ? undefined : ms / 1000;
}

/**
 * The best failover target of `service` given `topology`: a reachable standby (not the writer,
 * not the region being left), allowed by the residency rule, with the least replication lag; a
 * standby whose lag is unknown ranks after those whose lag is known.
 */
export function chooseTarget(
  service: { name: string; regions: string[] },
  topology: DbNodeState[],
  options: { residency?: ResidencyRule; source?: string } = {},
): TargetChoice {
  const writer = options.source ?? topology.find((n) => n.reachable && n.role === 'primary' && !n.fenced)?.region;
  const candidates: TargetCandidate[] = service.regions.map((region) => {
    const node = topology.find((n) => n.region === region);
    const no = (verdict: string): TargetCandidate => ({ region, eligible: false, verdict });
    if (region === writer) return no('the current writer');
    if (!node) return no('not observed');
    if (!node.reachable) return no(`unreachable (${node.error ?? 'no answer'})`);
    if (node.role !== 'standby') return no(`a ${node.role ?? 'node of unknown role'}, not a standby`);
    if (options.residency && !options.residency.allowOutside && !regionAllowed(options.residency, region)) {
      return no(`outside residency class ${options.residency.class} (${options.residency.allowedRegions.join(', ')})`);
    }
    const lag = lagSecondsOf(node);
    return {
      region,
      eligible: true,
      verdict: lag === undefined ? 'lag unknown' : `lag ${lag}s`,
      ...(lag !== undefined ? { lagSeconds: lag } : {}),
    };
  });
  const order = (c: TargetCandidate): number => service.regions.indexOf(c.region);
  const ranked = candidates
    .filter((c) => c.eligible)
    .sort(
      (a, b) =>
        (a.lagSeconds ?? Number.POSITIVE_INFINITY) - (b.lagSeconds ?? Number.POSITIVE_INFINITY) || order(a) - order(b),
    );
  const best = ranked[0];
  const summary = candidates.map((c) => `${c.region}: ${c.verdict}`).join('; ');
  if (!best)
    throw new NoTargetError(`no region of ${service.name} qualifies as a failover target (${summary})`, candidates);
  return {
    target: best.region,
    reason: `${best.region} is a healthy standby with the least lag (${summary})`,
    candidates,
  };
}
