// Messages between the alarm intake, the guardian workflow, the runs it starts, and the views of
// the CLI and the Slack bot. Types only (workflow code imports them).
import type { Policy } from '../../lib/config/schema';
import type { AlarmSource, Severity } from '../../lib/config/triggers';
import type { ApprovalOverride, DrainHandoff, RunbookDoc } from '../runbook/types';
import type { HealthObservation, HealthVerdict } from './health-verdict';

export type AlarmState = 'ALARM' | 'OK' | 'INSUFFICIENT_DATA';

/** One alarm, normalized from whichever system raised it and mapped to a service's region. */
export interface AlarmSignal {
  source: AlarmSource;
  /** CloudWatch alarm name, Alertmanager alertname, Route 53 health check id. */
  name: string;
  /** The failing region (from the config's mapping). */
  region: string;
  severity: Severity;
  state: AlarmState;
  /** When the alarm says it changed state (ms since epoch). */
  at: number;
  /** When the intake accepted it (ms since epoch). */
  receivedAt: number;
  reason?: string;
  /** Unique per accepted delivery (the intake's journal): the guardian ignores an id it has seen. */
  id?: string;
  /** The region the alarm was seen from (a probe's vantage point); such alarms need a quorum. */
  vantage?: string;
  /** When the failure began, when the alarm knows (ms since epoch): a run's RTO counts from it. */
  since?: number;
}

/** What the guardian needs to start a run; sent at every start and by `configure` (config reload). */
export interface GuardianSettings {
  regions: string[];
  /** Regions a failover may go to (data residency); absent: all of them. */
  allowedTargets?: string[];
  policy: Policy;
  runbook: RunbookDoc;
  debounce: { failures: number; window: string };
  /** Approval rules of the unplanned runs the guardian starts. */
  approval: ApprovalOverride;
  /** The service has a cache: the runs it starts move it too (RunInput.cache). */
  cache?: boolean;
  /** Continue-as-new past this many history events (the server's suggestion also counts). */
  maxHistoryEvents?: number;
  /** Runbooks for a failing region that is not the writer; absent: such alarms start nothing. */
  drainRunbook?: RunbookDoc;
  undrainRunbook?: RunbookDoc;
  /** How long a region the guardian drained must be healthy before it is undrained (triggers.undrainAfter). */
  undrainAfter?: string;
  /** Vantage points that must agree a region is down (triggers.quorum); absent: a majority of the other regions. */
  quorum?: number;
}

export interface RunSummary {
  workflowId: string;
  /** Unknown when the guardian only learned that some run holds the id. */
  runId?: string;
  kind?: string;
  trigger?: string;
  requestedBy?: string;
  target?: string;
  mode?: string;
  dryRun?: boolean;
  status: 'running' | 'succeeded' | 'failed' | 'aborted';
  startedAt?: string;
  endedAt?: string;
  /** Drain and undrain runs: the region. */
  region?: string;
  /** A succeeded drain: what its undrain restores. */
  drained?: DrainHandoff;
}

/** What the intake knows from Temporal when it (re)starts a guardian: the service's last run. */
export interface GuardianSeed {
  current?: RunSummary;
  lastRun?: RunSummary;
  primary?: string;
}

export interface GuardianInput {
  service: string;
  settings: GuardianSettings;
  seed?: GuardianSeed;
  /** Carried across continue-as-new. */
  state?: GuardianState;
}

export interface AlarmTrack {
  key: string;
  source: AlarmSource;
  name: string;
  region: string;
  severity: Severity;
  state: AlarmState;
  firstAt: string;
  lastAt: string;
  count: number;
  reason?: string;
}

export type DecisionKind =
  | 'started'
  | 'attached'
  | 'debouncing'
  | 'cooldown'
  | 'recovered'
  | 'not-writer'
  | 'no-target'
  | 'warning'
  | 'start-failed'
  | 'already-drained'
  | 'healthy'
  | 'target'
  | 'no-quorum';

export interface Decision {
  at: string;
  kind: DecisionKind;
  region?: string;
  detail: string;
  /** How many alarms in a row led to this same decision. */
  count: number;
}

export interface FailingSignal {
  /** Guardian time it was received (ms). */
  at: number;
  /** When the alarm says it fired (ms). */
  firedAt: number;
  key: string;
  /** The vantage point that saw it (probe alarms). */
  vantage?: string;
  /** When the failure began, if the alarm said. */
  since?: number;
}

export interface GuardianState {
  primary?: string;
  current?: RunSummary;
  lastRun?: RunSummary;
  alarms: AlarmTrack[];
  /** Critical failing signals per region within the debounce window. */
  failing: Record<string, FailingSignal[]>;
  decisions: Decision[];
  /** The latest automatic run the cooldown held back. */
  blocked?: Decision;
  received: number;
  runsStarted: number;
  generation: number;
  /** Alarms already on the current run's record (so a repeat need not be sent at once). */
  attachedKeys?: string[];
  /** Ids of the latest alarms received: a journal replay after an intake crash re-sends some. */
  recentIds?: string[];
  /** Regions the guardian drained, with what their undrain restores. */
  drained?: Record<string, DrainHandoff>;
  /** Since when (ms) each region has had no failing signal after an OK. */
  healthySince?: Record<string, number>;
}

/** The guardian's `state` query: what `regionshift status` and the Slack bot show. */
export interface GuardianView {
  service: string;
  primary?: string;
  current?: RunSummary;
  lastRun?: RunSummary;
  cooldown: string;
  cooldownUntil?: string;
  inCooldown: boolean;
  debounce: { failures: number; window: string };
  failing: { region: string; count: number; since: string }[];
  alarms: AlarmTrack[];
  decisions: Decision[];
  blocked?: Decision;
  received: number;
  runsStarted: number;
  generation: number;
  historyLength: number;
  /** Regions the guardian drained, and when each is undrained if it stays healthy. */
  drained: { region: string; drainRunId: string; undrainAt?: string }[];
}

export interface HealthActivities {
  /** Route 53 GetHealthCheckStatus, reduced to what the verdict needs. */
  route53HealthCheckStatus(input: { healthCheckId: string; endpointUrl?: string }): Promise<HealthObservation[]>;
}

export interface HealthWatcherInput {
  service: string;
  /** Route 53 health check id per region. */
  checks: Record<string, string>;
  interval: string;
  healthyShare: number;
  endpointUrl?: string;
  /** Carried across continue-as-new: regions currently reported failing. */
  failing?: string[];
  /** Polls per run before continue-as-new. */
  pollsPerRun?: number;
}

export interface HealthWatcherView {
  service: string;
  polls: number;
  last: Record<string, HealthVerdict & { at: string; error?: string }>;
  failing: string[];
  /** Why the last alarms could not be handed to the guardian, if they could not. */
  deliveryError?: string;
}
