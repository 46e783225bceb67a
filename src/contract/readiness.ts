// Failover readiness (what AWS ARC calls plan evaluation): could the service fail over right now,
// and to where? Judged from what each region's worker reports of its own database and from the
// traffic records, never from a run. Pure (no imports with I/O, no Node APIs): the readiness
// workflow calls it with what its activities observed.
import type { DbNodeState, TrafficState } from './activities';
import { lagSecondsOf } from './policy/target';
import { regionAllowed, type ResidencyRule } from './policy/residency';
import type { Mode, PlannedStep, RunInput } from './runbook/types';

/** Who must approve a failover of a mode before it proceeds, whoever starts it (CLI policy, or the guardian and Slack). */
export interface ApprovalNeed {
  required: boolean;
  /** Distinct approvers needed. */
  quorum: number;
  /** Why, for people: "policy.approval.unplanned: required". */
  why: string;
}

/** The failover run each target's dry run is made from: the service's runbook and policy, without target, mode or source. */
export type FailoverTemplate = Omit<
  RunInput,
  'target' | 'mode' | 'source' | 'dryRun' | 'requestedBy' | 'trigger' | 'triggeredAt'
>;

export interface ReadinessInput {
  service: string;
  /** Preference order, as configured. */
  regions: string[];
  rpoBudgetSeconds: number;
  residency?: ResidencyRule;
  /** The configured traffic endpoint of each region (Route 53 record targets). */
  endpoints?: Record<string, string>;
  /**
   * The failover a target's dry run runs (its preflight and plan, as `regionshift plan` does). Absent
   * in evaluations scheduled before per-target readiness: those judge the topology only.
   */
  failover?: FailoverTemplate;
  /** Per mode: whether a failover needs approvers, and how many. */
  approval?: Record<Mode, ApprovalNeed>;
}

/** What a control worker found of the people who may approve (activities/approvals.ts, checkApprovers). */
export interface ApproversReport {
  /** policy.approvers: how many SSH keys this worker could load for each, or why none. */
  ssh: { name: string; keys: number; error?: string }[];
  /** triggers.approvers per mode (Slack user and user-group ids); they count only when the worker has the bot's key. */
  slack: Record<Mode, string[]>;
  slackKey: boolean;
}

/** One target's dry run: the run's preflight said what it found, or refused with why. */
export interface TargetDryRun {
  mode: Mode;
  workflowId: string;
  runId?: string;
  /** The preflight step's detail when it passed. */
  preflight?: string;
  /** Why the dry run refused or failed. */
  refused?: string;
  plan?: PlannedStep[];
}

/** What the readiness workflow observed besides topology and traffic. */
export interface ReadinessObservations {
  /** Regions whose worker did not answer, with why. */
  workersDown?: Record<string, string>;
  dryRuns?: Record<string, TargetDryRun>;
  approvers?: ApproversReport | { error: string };
}

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface ReadinessCheck {
  check: 'region' | 'writer' | 'standby' | 'lag' | 'traffic' | 'targets' | 'preflight' | 'worker' | 'approvers';
  region?: string;
  status: CheckStatus;
  detail: string;
}

/** Could a failover go to this region now: its dry run's preflight and plan, and what else that target needs. */
export interface TargetReadiness {
  region: string;
  status: CheckStatus;
  /** The mode its dry run ran in: planned while a writer answers, unplanned when none does. */
  mode?: Mode;
  /** The dry run (workflow id and run id), to open in the Temporal UI. */
  dryRun?: { workflowId: string; runId?: string };
  /** The steps the failover would run there: which region's worker runs each, which are skipped. */
  plan?: { id: string; region?: string; skip?: string }[];
  checks: ReadinessCheck[];
}

export interface ReadinessEvaluation {
  service: string;
  at: string;
  status: CheckStatus;
  /** The regions a failover from the writer could go to now, best first (healthy, allowed, lag known). */
  targets: string[];
  checks: ReadinessCheck[];
  /** Each region a failover could go to (the writer's and residency-excluded ones are not), in preference order. */
  perTarget?: TargetReadiness[];
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
  seen: ReadinessObservations = {},
): ReadinessEvaluation {
  const checks: ReadinessCheck[] = [];
  const node = (r: string) => topology.find((n) => n.region === r);
  for (const region of input.regions) {
    const n = node(region);
    if (!n?.reachable)
      checks.push({
        check: 'region',
        region,
        status: 'fail',
        detail: `${region}'s database is unreachable: ${n?.error ?? 'not asked'}`,
      });
  }
  const writers = topology.filter((n) => n.reachable && n.role === 'primary');
  const writer = writers.find((n) => !n.fenced);
  if (writers.length !== 1 || !writer) {
    const what =
      writers.length === 0
        ? 'no reachable primary'
        : writers.length > 1
          ? `${writers.length} primaries (${writers.map((w) => w.region).join(', ')})`
          : `the primary ${writers[0]!.region} is fenced`;
    checks.push({ check: 'writer', status: 'fail', detail: `${what}: there is no one writer to fail over from` });
  } else {
    checks.push({ check: 'writer', region: writer.region, status: 'pass', detail: `${writer.region} is the writer` });
  }
  const targets: { region: string; lag: number }[] = [];
  for (const region of input.regions) {
    const n = node(region);
    if (!n?.reachable || n.region === writer?.region) continue;
    if (n.role !== 'standby') {
      checks.push({
        check: 'standby',
        region,
        status: 'fail',
        detail: `${region} is a ${n.role ?? 'node of unknown role'}, not a standby of ${writer?.region ?? 'the writer'}`,
      });
      continue;
    }
    if (!n.streamingFrom) {
      checks.push({
        check: 'standby',
        region,
        status: 'fail',
        detail: `${region}'s standby is not streaming (its WAL receiver is down): a failover to it would lose everything since it stopped`,
      });
      continue;
    }
    // Replayed all the writer had written, or all it received from its stream: caught up, however
    // long ago the last commit was (an idle writer's last commit is old, its keepalives new).
    const replayed = lsn(n.lsn);
    const caughtUp =
      replayed !== undefined &&
      (replayed >= (lsn(writer?.lsn) ?? Infinity) || replayed >= (lsn(n.receivedLsn) ?? Infinity));
    const lag = caughtUp ? 0 : lagSecondsOf(n);
    if (lag === undefined) {
      checks.push({
        check: 'lag',
        region,
        status: 'warn',
        detail: `${region} streams from ${n.streamingFrom}; its lag is unknown (nothing replayed yet)`,
      });
    } else if (lag > input.rpoBudgetSeconds) {
      checks.push({
        check: 'lag',
        region,
        status: 'fail',
        detail: `${region} replays ${lag.toFixed(1)} s behind, over the RPO budget of ${input.rpoBudgetSeconds} s`,
      });
    } else {
      checks.push({
        check: 'standby',
        region,
        status: 'pass',
        detail: `${region} streams from ${n.streamingFrom}, ${lag.toFixed(3)} s behind (budget ${input.rpoBudgetSeconds} s)`,
      });
    }
    const allowed = !input.residency || input.residency.allowOutside || regionAllowed(input.residency, region);
    if (allowed && (lag === undefined || lag <= input.rpoBudgetSeconds))
      targets.push({ region, lag: lag ?? Number.POSITIVE_INFINITY });
  }
  const order = (r: string) => input.regions.indexOf(r);
  targets.sort((a, b) => a.lag - b.lag || order(a.region) - order(b.region));
  const traffics = trafficChecks(input, traffic, writer?.region);
  const perTarget =
    seen.dryRuns || seen.approvers || seen.workersDown
      ? candidateTargets(input, writer?.region).map((region) => targetReadiness(input, region, checks, traffics, seen))
      : undefined;
  // A region whose own failover would fail is no target, however well it replicates.
  const failing = new Set(perTarget?.filter((t) => t.status === 'fail').map((t) => t.region));
  targets.splice(0, targets.length, ...targets.filter((t) => !failing.has(t.region)));
  if (writer) {
    const outside =
      input.residency && !input.residency.allowOutside
        ? input.regions.filter((r) => r !== writer.region && !regionAllowed(input.residency!, r))
        : [];
    const why = outside.length ? ` (residency class ${input.residency!.class} rules out ${outside.join(', ')})` : '';
    checks.push(
      targets.length
        ? {
            check: 'targets',
            status: 'pass',
            detail: `a failover from ${writer.region} could go to ${targets.map((t) => t.region).join(', ')}${why}`,
          }
        : { check: 'targets', status: 'fail', detail: `no region a failover from ${writer.region} could go to${why}` },
    );
  }
  checks.push(...traffics);
  const all = [...checks, ...(perTarget ?? []).flatMap((t) => t.checks)];
  return {
    service: input.service,
    at: new Date(now).toISOString(),
    status: worst(all),
    targets: targets.map((t) => t.region),
    checks,
    ...(perTarget ? { perTarget } : {}),
  };
}

/** Every region a failover could be asked to go to: not the writer, allowed by residency. */
export function candidateTargets(
  input: Pick<ReadinessInput, 'regions' | 'residency'>,
  writer: string | undefined,
): string[] {
  return input.regions.filter(
    (r) => r !== writer && (!input.residency || input.residency.allowOutside || regionAllowed(input.residency, r)),
  );
}

function targetReadiness(
  input: ReadinessInput,
  region: string,
  serviceChecks: ReadinessCheck[],
  traffics: ReadinessCheck[],
  seen: ReadinessObservations,
): TargetReadiness {
  const checks: ReadinessCheck[] = [];
  const run = seen.dryRuns?.[region];
  if (run) {
    checks.push(
      run.refused
        ? {
            check: 'preflight',
            region,
            status: 'fail',
            detail: `a ${run.mode} failover to ${region} would be refused: ${run.refused}`,
          }
        : {
            check: 'preflight',
            region,
            status: 'pass',
            detail: `a ${run.mode} failover's preflight passes: ${run.preflight ?? 'no detail'}`,
          },
    );
  }
  // Every region a step of the plan runs in needs its worker up, or the step waits for it.
  const steps = run?.plan?.filter((s) => !s.skip) ?? [];
  const regions = steps.length ? [...new Set(steps.flatMap((s) => (s.region ? [s.region] : [])))] : [region];
  for (const r of regions) {
    const down = seen.workersDown?.[r];
    const ids = steps.filter((s) => s.region === r).map((s) => s.id);
    if (down)
      checks.push({
        check: 'worker',
        region: r,
        status: 'fail',
        detail: `${r}'s worker did not answer (${down})${ids.length ? `: ${ids.join(', ')} would wait for it` : ''}`,
      });
  }
  if (seen.workersDown && !regions.some((r) => seen.workersDown![r])) {
    checks.push({ check: 'worker', status: 'pass', detail: `the workers of ${regions.join(', ')} answer` });
  }
  // Its own replication and record, as the service-wide checks found them.
  checks.push(...serviceChecks.filter((c) => c.region === region && ['region', 'standby', 'lag'].includes(c.check)));
  const record = traffics.filter((c) => c.status !== 'pass' && (c.region === region || c.region === undefined));
  checks.push(
    ...(record.length
      ? record
      : [{ check: 'traffic' as const, region, status: 'pass' as const, detail: `${region} has its record` }]),
  );
  const mode = run?.mode ?? 'planned';
  const need = input.approval?.[mode];
  if (need && seen.approvers) checks.push(approversCheck(region, mode, need, seen.approvers));
  const plan = run?.plan?.map((s) => ({
    id: s.id,
    ...(s.region ? { region: s.region } : {}),
    ...(s.skip ? { skip: s.skip } : {}),
  }));
  return {
    region,
    status: worst(checks),
    ...(run
      ? { mode: run.mode, dryRun: { workflowId: run.workflowId, ...(run.runId ? { runId: run.runId } : {}) } }
      : {}),
    ...(plan ? { plan } : {}),
    checks,
  };
}

/** Could the approvals a failover of this mode needs be given now: enough people whose signatures the workers can check. */
export function approversCheck(
  region: string | undefined,
  mode: Mode,
  need: ApprovalNeed,
  report: ApproversReport | { error: string },
): ReadinessCheck {
  const at = region ? { region } : {};
  if (!need.required)
    return { check: 'approvers', ...at, status: 'pass', detail: `${mode} failovers need no approval` };
  if ('error' in report)
    return {
      check: 'approvers',
      ...at,
      status: 'fail',
      detail: `${mode} failovers need approval (${need.why}), and no control worker said who could give it: ${report.error}`,
    };
  const ssh = report.ssh.filter((a) => a.keys > 0 && !a.error).map((a) => a.name);
  const broken = report.ssh.filter((a) => a.keys === 0 || a.error).map((a) => `${a.name} (${a.error ?? 'no SSH key'})`);
  const slack = report.slackKey ? report.slack[mode] : [];
  const ignored =
    !report.slackKey && report.slack[mode].length
      ? `; Slack approvers ${report.slack[mode].join(', ')} cannot count: the control workers have no REGIONSHIFT_SLACK_DECISION_KEY`
      : '';
  const who = [...ssh.map((n) => `${n} (ssh)`), ...slack.map((id) => `${id} (Slack)`)];
  const brokenText = broken.length ? `; keys this worker cannot load: ${broken.join(', ')}` : '';
  if (who.length < need.quorum) {
    return {
      check: 'approvers',
      ...at,
      status: 'fail',
      detail: `${mode} failovers need ${need.quorum} approver${need.quorum > 1 ? 's' : ''} (${need.why}) but ${who.length ? `only ${who.join(', ')} can approve` : 'nobody can approve'}${brokenText}${ignored}`,
    };
  }
  const status = broken.length || ignored ? 'warn' : 'pass';
  return {
    check: 'approvers',
    ...at,
    status,
    detail: `${mode} failovers need ${need.quorum} approver${need.quorum > 1 ? 's' : ''} (${need.why}): ${who.join(', ')} can approve${brokenText}${ignored}`,
  };
}

function trafficChecks(
  input: ReadinessInput,
  traffic: { state: TrafficState } | { error: string },
  writer: string | undefined,
): ReadinessCheck[] {
  if ('error' in traffic)
    return [{ check: 'traffic', status: 'fail', detail: `the traffic records could not be read: ${traffic.error}` }];
  const checks: ReadinessCheck[] = [];
  const { records, recordName } = traffic.state;
  for (const region of input.regions) {
    const rec = records.find((r) => r.region === region);
    const want = input.endpoints?.[region];
    if (!rec)
      checks.push({
        check: 'traffic',
        region,
        status: 'fail',
        detail: `${recordName} has no record for ${region}: a failover to it could not send it traffic`,
      });
    else if (want && rec.target.replace(/\.$/, '') !== want.replace(/\.$/, ''))
      checks.push({
        check: 'traffic',
        region,
        status: 'fail',
        detail: `${recordName}'s record for ${region} points at ${rec.target}, not the configured ${want}`,
      });
    else if (rec.weight === 0 && region === writer)
      checks.push({ check: 'traffic', region, status: 'warn', detail: `the writer ${region}'s record has weight 0` });
  }
  if (!checks.length)
    checks.push({ check: 'traffic', status: 'pass', detail: `${recordName}: a record per region, as configured` });
  return checks;
}
