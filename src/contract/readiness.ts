// Failover readiness (what AWS ARC calls plan evaluation): could the service fail over right now,
// and to where? Judged from what each region's worker reports of its own database and from the
// traffic records, never from a run. Pure (no imports with I/O, no Node APIs): the readiness
// workflow calls it with what its activities observed.
import type { DbNodeState, TrafficState } from './activities';
import { lagSecondsOf } from './policy/target';
import { regionAllowed, type ResidencyRule } from './policy/residency';

export interface ReadinessInput {
  service: string;
  /** Preference order, as configured. */
  regions: string[];
  rpoBudgetSeconds: number;
  residency?: ResidencyRule;
  /** The configured traffic endpoint of each region (Route 53 record targets). */
  endpoints?: Record<string, string>;
}

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface ReadinessCheck {
  check: 'region' | 'writer' | 'standby' | 'lag' | 'traffic' | 'targets';
  region?: string;
  status: CheckStatus;
  detail: string;
}

export interface ReadinessEvaluation {
  service: string;
  at: string;
  status: CheckStatus;
  /** The regions a failover from the writer could go to now, best first (healthy, allowed, lag known). */
  targets: string[];
  checks: ReadinessCheck[];
}

/** A PostgreSQL LSN (16/B374D848) as a number; exact enough to compare positions. */
function lsn(text: string | undefined): number | undefined {
  const m = text ? /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(text) : null;
  return m ? parseInt(m[1]!, 16) * 2 ** 32 + parseInt(m[2]!, 16) : undefined;
}

const worst = (checks: ReadinessCheck[]): CheckStatus =>
  checks.some((c) => c.status === 'fail') ? 'fail' : checks.some((c) => c.status === 'warn') ? 'warn' : 'pass';

export function evaluateReadiness(
  input: ReadinessInput,
  topology: DbNodeState[],
  traffic: { state: TrafficState } | { error: string },
  now: number,
): ReadinessEvaluation {
  const checks: ReadinessCheck[] = [];
  const node = (r: string) => topology.find((n) => n.region === r);
  for (const region of input.regions) {
    const n = node(region);
    if (!n?.reachable) checks.push({ check: 'region', region, status: 'fail', detail: `${region}'s database is unreachable: ${n?.error ?? 'not asked'}` });
  }
  const writers = topology.filter((n) => n.reachable && n.role === 'primary');
  const writer = writers.find((n) => !n.fenced);
  if (writers.length !== 1 || !writer) {
    const what = writers.length === 0 ? 'no reachable primary' : writers.length > 1 ? `${writers.length} primaries (${writers.map((w) => w.region).join(', ')})` : `the primary ${writers[0]!.region} is fenced`;
    checks.push({ check: 'writer', status: 'fail', detail: `${what}: there is no one writer to fail over from` });
  } else {
    checks.push({ check: 'writer', region: writer.region, status: 'pass', detail: `${writer.region} is the writer` });
  }
  const targets: { region: string; lag: number }[] = [];
  for (const region of input.regions) {
    const n = node(region);
    if (!n?.reachable || n.region === writer?.region) continue;
    if (n.role !== 'standby') {
      checks.push({ check: 'standby', region, status: 'fail', detail: `${region} is a ${n.role ?? 'node of unknown role'}, not a standby of ${writer?.region ?? 'the writer'}` });
      continue;
    }
    if (!n.streamingFrom) {
      checks.push({ check: 'standby', region, status: 'fail', detail: `${region}'s standby is not streaming (its WAL receiver is down): a failover to it would lose everything since it stopped` });
      continue;
    }
    // Replayed all the writer had written, or all it received from its stream: caught up, however
    // long ago the last commit was (an idle writer's last commit is old, its keepalives new).
    const replayed = lsn(n.lsn);
    const caughtUp = replayed !== undefined && (replayed >= (lsn(writer?.lsn) ?? Infinity) || replayed >= (lsn(n.receivedLsn) ?? Infinity));
    const lag = caughtUp ? 0 : lagSecondsOf(n);
    if (lag === undefined) {
      checks.push({ check: 'lag', region, status: 'warn', detail: `${region} streams from ${n.streamingFrom}; its lag is unknown (nothing replayed yet)` });
    } else if (lag > input.rpoBudgetSeconds) {
      checks.push({ check: 'lag', region, status: 'fail', detail: `${region} replays ${lag.toFixed(1)} s behind, over the RPO budget of ${input.rpoBudgetSeconds} s` });
    } else {
      checks.push({ check: 'standby', region, status: 'pass', detail: `${region} streams from ${n.streamingFrom}, ${lag.toFixed(3)} s behind (budget ${input.rpoBudgetSeconds} s)` });
    }
    const allowed = !input.residency || input.residency.allowOutside || regionAllowed(input.residency, region);
    if (allowed && (lag === undefined || lag <= input.rpoBudgetSeconds)) targets.push({ region, lag: lag ?? Number.POSITIVE_INFINITY });
  }
  const order = (r: string) => input.regions.indexOf(r);
  targets.sort((a, b) => a.lag - b.lag || order(a.region) - order(b.region));
  if (writer) {
    const outside = input.residency && !input.residency.allowOutside ? input.regions.filter((r) => r !== writer.region && !regionAllowed(input.residency!, r)) : [];
    const why = outside.length ? ` (residency class ${input.residency!.class} rules out ${outside.join(', ')})` : '';
    checks.push(targets.length
      ? { check: 'targets', status: 'pass', detail: `a failover from ${writer.region} could go to ${targets.map((t) => t.region).join(', ')}${why}` }
      : { check: 'targets', status: 'fail', detail: `no region a failover from ${writer.region} could go to${why}` });
  }
  checks.push(...trafficChecks(input, traffic, writer?.region));
  return { service: input.service, at: new Date(now).toISOString(), status: worst(checks), targets: targets.map((t) => t.region), checks };
}

function trafficChecks(input: ReadinessInput, traffic: { state: TrafficState } | { error: string }, writer: string | undefined): ReadinessCheck[] {
  if ('error' in traffic) return [{ check: 'traffic', status: 'fail', detail: `the traffic records could not be read: ${traffic.error}` }];
  const checks: ReadinessCheck[] = [];
  const { records, recordName } = traffic.state;
  for (const region of input.regions) {
    const rec = records.find((r) => r.region === region);
    const want = input.endpoints?.[region];
    if (!rec) checks.push({ check: 'traffic', region, status: 'fail', detail: `${recordName} has no record for ${region}: a failover to it could not send it traffic` });
    else if (want && rec.target.replace(/\.$/, '') !== want.replace(/\.$/, '')) checks.push({ check: 'traffic', region, status: 'fail', detail: `${recordName}'s record for ${region} points at ${rec.target}, not the configured ${want}` });
    else if (rec.weight === 0 && region === writer) checks.push({ check: 'traffic', region, status: 'warn', detail: `the writer ${region}'s record has weight 0` });
  }
  if (!checks.length) checks.push({ check: 'traffic', status: 'pass', detail: `${recordName}: a record per region, as configured` });
  return checks;
}
