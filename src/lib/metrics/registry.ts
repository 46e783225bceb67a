// regionshift's own metrics (docs/observability.md). One registry per process: a region worker
// registers the run and replication metrics, the intake the alarm and guardian metrics.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DbNodeState } from '../../contract/activities';
import { isLsn, lsnToBigInt } from '../../../activities/db/sql';
import type { RunSummary } from '../../contract/run-summary';

/** Seconds, from a fast planned switchover to an unplanned one that waited for a person. */
const RUN_BUCKETS = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800];
const STEP_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];
/** RPO is 0 for every fenced run; the rest is seconds of writes the target had not replayed. */
const RPO_BUCKETS = [0, 0.5, 1, 5, 10, 30, 60, 300, 900];
const APPROVAL_BUCKETS = [5, 15, 30, 60, 120, 300, 600, 1800, 3600];

export function newRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export class WorkerMetrics {
  readonly runs: Counter<'kind' | 'mode' | 'result' | 'service'>;
  readonly runDuration: Histogram<'kind' | 'mode' | 'result'>;
  readonly stepDuration: Histogram<'kind' | 'step' | 'action' | 'status'>;
  readonly rto: Histogram<'kind' | 'mode' | 'service'>;
  readonly rpo: Histogram<'kind' | 'mode' | 'service'>;
  readonly approvalWait: Histogram<'kind' | 'decision'>;
  readonly lagSeconds: Gauge<'service' | 'region'>;
  readonly replayLagBytes: Gauge<'service' | 'region'>;
  readonly lagObservedAt: Gauge<'service' | 'region'>;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    this.runs = new Counter({
      name: 'regionshift_runs_total',
      help: 'Runbook runs that ended, by kind, mode (planned, unplanned, dry-run) and result (succeeded, failed, aborted, refused)',
      labelNames: ['kind', 'mode', 'result', 'service'],
      registers,
    });
    this.runDuration = new Histogram({
      name: 'regionshift_run_duration_seconds',
      help: 'Run start to end',
      labelNames: ['kind', 'mode', 'result'],
      buckets: RUN_BUCKETS,
      registers,
    });
    this.stepDuration = new Histogram({
      name: 'regionshift_step_duration_seconds',
      help: 'Each step of a run, start to end (approval steps include the wait)',
      labelNames: ['kind', 'step', 'action', 'status'],
      buckets: STEP_BUCKETS,
      registers,
    });
    this.rto = new Histogram({
      name: 'regionshift_run_rto_seconds',
      help: 'Trigger (or run start) to writes verified in the target, per run that got that far',
      labelNames: ['kind', 'mode', 'service'],
      buckets: RUN_BUCKETS,
      registers,
    });
    this.rpo = new Histogram({
      name: 'regionshift_run_rpo_seconds',
      help: 'Estimated data loss at promotion, per run that promoted (0: fenced and caught up)',
      labelNames: ['kind', 'mode', 'service'],
      buckets: RPO_BUCKETS,
      registers,
    });
    this.approvalWait = new Histogram({
      name: 'regionshift_approval_wait_seconds',
      help: 'Step start to each approval decision (approve, reject, timeout)',
      labelNames: ['kind', 'decision'],
      buckets: APPROVAL_BUCKETS,
      registers,
    });
    this.lagSeconds = new Gauge({
      name: 'regionshift_replication_lag_seconds',
      help: 'Standby: its last news from the primary minus the commit time it has replayed, as this worker last saw it',
      labelNames: ['service', 'region'],
      registers,
    });
    this.replayLagBytes = new Gauge({
      name: 'regionshift_replication_replay_lag_bytes',
      help: 'Standby: WAL received but not yet replayed, as this worker last saw it',
      labelNames: ['service', 'region'],
      registers,
    });
    this.lagObservedAt = new Gauge({
      name: 'regionshift_replication_lag_observed_timestamp_seconds',
      help: 'When this worker last described the node (the lag gauges are that old)',
      labelNames: ['service', 'region'],
      registers,
    });
  }

  recordRun(s: RunSummary): void {
    this.runs.inc({ kind: s.kind, mode: s.mode, result: s.result, service: s.service });
    this.runDuration.observe(
      { kind: s.kind, mode: s.mode, result: s.result },
      Math.max(0, s.endedMs - s.startedMs) / 1000,
    );
    for (const step of s.steps) {
      this.stepDuration.observe(
        { kind: s.kind, step: step.id, action: step.action, status: step.status },
        Math.max(0, step.endedMs - step.startedMs) / 1000,
      );
    }
    if (s.rtoMs !== undefined) this.rto.observe({ kind: s.kind, mode: s.mode, service: s.service }, s.rtoMs / 1000);
    if (s.rpoSeconds !== undefined) this.rpo.observe({ kind: s.kind, mode: s.mode, service: s.service }, s.rpoSeconds);
    for (const a of s.approvals) this.approvalWait.observe({ kind: s.kind, decision: a.decision }, a.waitMs / 1000);
  }

  /** A node as a dbDescribe saw it; only a standby has a lag. */
  recordNode(service: string, node: DbNodeState, now = Date.now()): void {
    const labels = { service, region: node.region };
    if (!node.reachable || node.role !== 'standby') {
      // A primary (or a node that cannot be asked) has no replication lag to show: drop the stale value.
      this.lagSeconds.remove(labels);
      this.replayLagBytes.remove(labels);
      this.lagObservedAt.remove(labels);
      return;
    }
    this.lagObservedAt.set(labels, now / 1000);
    if (node.lastHeardFromPrimaryAt && node.lastReplayedCommitAt) {
      const gap = (Date.parse(node.lastHeardFromPrimaryAt) - Date.parse(node.lastReplayedCommitAt)) / 1000;
      if (!Number.isNaN(gap)) this.lagSeconds.set(labels, Math.max(0, gap));
    }
    if (node.receivedLsn && node.lsn && isLsn(node.receivedLsn) && isLsn(node.lsn)) {
      const behind = lsnToBigInt(node.receivedLsn) - lsnToBigInt(node.lsn);
      this.replayLagBytes.set(labels, Number(behind > 0n ? behind : 0n));
    }
  }
}

/** The guardian's state, reduced to one label value (a gauge of 1 for it, 0 for the others). */
export const GUARDIAN_STATES = ['idle', 'debouncing', 'running', 'cooldown', 'unknown'] as const;
export type GuardianStateName = (typeof GUARDIAN_STATES)[number];

/** A service's last readiness evaluation (src/readiness/), or unknown when there is none to read. */
export const READINESS_STATES = ['pass', 'warn', 'fail', 'unknown'] as const;
export type ReadinessStateName = (typeof READINESS_STATES)[number];

export class IntakeMetrics {
  readonly alarms: Counter<'endpoint' | 'outcome'>;
  readonly rejected: Counter<'endpoint' | 'status'>;
  readonly pending: Gauge;
  readonly guardianState: Gauge<'service' | 'state'>;
  readonly readiness: Gauge<'service' | 'status'>;

  constructor(
    readonly registry: Registry,
    sources: {
      pending?: () => number | undefined;
      guardians?: () => Promise<Record<string, GuardianStateName>>;
      readiness?: () => Promise<Record<string, ReadinessStateName>>;
    } = {},
  ) {
    const registers = [registry];
    this.alarms = new Counter({
      name: 'regionshift_intake_alarms_total',
      help: 'Alarms the intake received and mapped (accepted: durable and on its way to a guardian) or could not map to a service (ignored)',
      labelNames: ['endpoint', 'outcome'],
      registers,
    });
    this.rejected = new Counter({
      name: 'regionshift_intake_rejected_total',
      help: 'Requests the intake refused (unsigned, bad secret, stale, malformed, journal full), by endpoint and HTTP status',
      labelNames: ['endpoint', 'status'],
      registers,
    });
    this.pending = new Gauge({
      name: 'regionshift_intake_pending_alarms',
      help: 'Alarms accepted into the journal and not yet forwarded to their guardian',
      registers,
      collect() {
        const n = sources.pending?.();
        if (n !== undefined) this.set(n);
      },
    });
    this.guardianState = oneOfGauge({
      name: 'regionshift_guardian_state',
      help: "Each service guardian's state (1 for the one it is in): idle, debouncing (failing signals counted, no run yet), running, cooldown (after a run: automatic runs held back), unknown (could not be asked)",
      label: 'state',
      values: GUARDIAN_STATES,
      read: sources.guardians,
      registers,
    });
    // The alert RegionshiftNotReady (runbooks/alerts/) fires on status="fail".
    this.readiness = oneOfGauge({
      name: 'regionshift_readiness',
      help: "Each service's last failover readiness evaluation (1 for its status): pass, warn, fail, unknown (none made yet, or it could not be read)",
      label: 'status',
      values: READINESS_STATES,
      read: sources.readiness,
      registers,
    });
  }
}

/** A gauge per service and value, 1 for the value `read` gives the service at scrape time and 0 for the others. */
function oneOfGauge<L extends string>(o: {
  name: string;
  help: string;
  label: L;
  values: readonly string[];
  read?: () => Promise<Record<string, string>>;
  registers: Registry[];
}): Gauge<'service' | L> {
  return new Gauge<'service' | L>({
    name: o.name,
    help: o.help,
    labelNames: ['service', o.label],
    registers: o.registers,
    async collect() {
      if (!o.read) return;
      const current = await o.read();
      this.reset();
      for (const [service, now] of Object.entries(current)) {
        for (const v of o.values)
          this.set({ service, [o.label]: v } as Record<'service' | L, string>, v === now ? 1 : 0);
      }
    },
  });
}
