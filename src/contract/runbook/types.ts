// Types shared by the runbook workflow, the CLI and the workers. Type-only imports keep
// workflow code free of the validation library.
import type { DecisionSignature } from '../approvals';
import type { Runbook, Step } from './schema';
import type { PluginStepSpec } from './catalog';
import type { Policy } from '../../lib/config/schema';
import type { DrainMode } from '../traffic/plan';
import type {
  CacheFenceResult,
  CachePromoteResult,
  CacheRepointResult,
  DbNodeState,
  FenceResult,
  KeptLocation,
  LagResult,
  PromoteResult,
  RejoinResult,
  ShiftResult,
  TrafficState,
  VerifyWritesResult,
} from '../activities';
import type {
  ApplyResult,
  ClassifyResult,
  FailbackRecord,
  PreserveOldResult,
  ReconcileHandoff,
  ReconcileReport,
  VerifyResult,
} from '../reconcile';

export type { Runbook, Step };

/**
 * A validated runbook as passed to a run: the run never reads the file again. `plugins`: what each
 * plugin step it uses declared at load time (placement, compensation).
 */
export type RunbookDoc = Runbook & { hash: string; file: string; plugins?: Record<string, PluginStepSpec> };

export type Mode = 'planned' | 'unplanned';

export interface RunInput {
  runbook: RunbookDoc;
  service: string;
  /** All regions of the service, in preference order. */
  regions: string[];
  mode: Mode;
  /** When absent, preflight finds the current writer. */
  source?: string;
  target: string;
  dryRun: boolean;
  policy: Policy;
  requestedBy: string;
  trigger: string;
  /** When the trigger fired (ms since epoch), for the run's RTO; defaults to the run's start. */
  triggeredAt?: number;
  /**
   * The region the trigger reports down (the guardian's alarm, which a quorum of probes agreed
   * on). Until preflight has described it, it is treated as a region a describe found down: its
   * worker gets a second to pick a task up, not the three a live region gets, so a dead writer
   * holds the run back one second.
   */
  reportedDown?: string;
  /** Approval rules set by who starts the run (guardian, Slack); absent: the service policy's. */
  approval?: ApprovalOverride;
  /** How the service's traffic provider drains a weighted region, for dry-run plans. */
  trafficDrain?: DrainMode;
  /** The service has a `cache`: the cache.* steps run (condition `cache`). Absent: they are skipped. */
  cache?: boolean;
  /** Reconcile and failback runs: the unplanned failover they follow (from its run record). */
  handoff?: ReconcileHandoff;
  /** Failback: run despite open cases or an unread old primary, for this recorded reason. */
  override?: { by: string; reason: string };
  /**
   * Drain and undrain runs: the region taken out of (or put back into) service. `target` names the
   * same region, so search attributes and summaries read the same for every kind.
   */
  region?: string;
  /** Undrain runs: the drain they undo, from its run record (see src/lib/runs/drain.ts). */
  drained?: DrainHandoff;
}

/** What a succeeded drain hands to the undrain that follows it: the records before and after. */
export interface DrainHandoff {
  workflowId: string;
  runId: string;
  region: string;
  before: TrafficState;
  after: TrafficState;
  endedAt?: string;
}

/** A drain or undrain run's own record (RunRecord.drain). */
export interface DrainRecord {
  region: string;
  /** The writer preflight found; a drain never takes it out of service. */
  writer?: string;
  /** The region whose worker made the Route 53 calls (the drained one may be down). */
  via: string;
  before?: TrafficState;
  after?: TrafficState;
  /** What moved where, one entry per record that changed. */
  moved?: string[];
  /** Geolocation answers residency keeps on the drained region (no allowed region could take them). */
  kept?: KeptLocation[];
  /** Undrain: the drain run whose before-state it restored. */
  undoes?: { workflowId: string; runId: string };
  verified?: boolean;
}

export interface ApprovalOverride {
  /** Whether the runbook's approval gate applies (its `approval-required` condition). */
  required: boolean;
  /** How long the gate waits, and what happens then (a data-loss acknowledgement keeps the policy's). */
  timeout: string;
  onTimeout: 'reject' | 'proceed';
  /** Who may approve: approver names, Slack user or group ids; empty: nobody (the gate can only time out). */
  approvers: string[];
  /** Distinct approvals needed; default 1. */
  quorum?: number;
}

/** An alarm that fired while this run was in progress (sent by the service's guardian). */
export interface AttachedAlarm {
  trigger: string;
  region: string;
  severity: string;
  state: string;
  /** Last time it fired, and how often it did during the run. */
  at: string;
  count: number;
}

export type StepStatus = 'pending' | 'running' | 'waiting' | 'done' | 'skipped' | 'failed' | 'compensated';

export interface StepState {
  id: string;
  title: string;
  action?: string;
  region?: string;
  status: StepStatus;
  startedAt?: string;
  endedAt?: string;
  /** Time spent inside provider operations (activities), for the orchestration-overhead figure. */
  activityMs?: number;
  detail?: string;
  error?: string;
}

export interface Approval {
  stepId: string;
  by: string;
  decision: 'approve' | 'reject' | 'timeout';
  at: string;
  reason?: string;
  /** How the decision was signed: "ssh key SHA256:…" or "via Slack, signed by the bot". */
  signed?: string;
}

export interface PendingApproval {
  stepId: string;
  reason: string;
  requestedAt: string;
  timeoutAt: string;
  /** Approvals given so far when more than one is needed. */
  approvedBy?: string[];
  quorum?: number;
}

export interface ApproveInput {
  by: string;
  decision: 'approve' | 'reject';
  reason?: string;
  /** Groups (Slack user groups) the bot found `by` in; part of what the bot signs. */
  groups?: string[];
  /** Over the canonical message (src/contract/approvals.ts); a worker verifies it before the run accepts the decision. */
  signature?: DecisionSignature;
}

export interface AbortInput {
  by: string;
  reason: string;
  groups?: string[];
  signature?: DecisionSignature;
  /** Set by the run once verified: how the abort was signed. */
  signed?: string;
}

/** What a person may do to a running run (workflows/operator-controls.ts). */
export type OperatorAction = 'retry' | 'skip' | 'compensate' | 'pause' | 'resume';

export interface OperateInput {
  action: OperatorAction;
  by: string;
  reason: string;
  groups?: string[];
  signature?: DecisionSignature;
}

/** One operator decision, as the run's record keeps it. */
export interface OperatorDecision {
  action: OperatorAction;
  /** The failed step it was about (retry, skip, compensate). */
  stepId?: string;
  by: string;
  reason: string;
  at: string;
  signed: string;
}

export interface PlannedStep {
  id: string;
  title: string;
  action?: string;
  region?: string;
  taskQueue?: string;
  /** Why the step would be skipped, when it would. */
  skip?: string;
  values?: Record<string, unknown>;
}

export interface StandbyFollow {
  region: string;
  followed: boolean;
  how?: RejoinResult['how'];
  /** When not followed: why, and the watcher that will re-point it once it answers. */
  error?: string;
  watcher?: string;
}

/** The run's audit record (docs/safety.md, invariant 7): returned on success, attached to the failure otherwise. */
export interface RunRecord {
  workflowId: string;
  runId: string;
  kind: string;
  runbookHash: string;
  service: string;
  mode: Mode;
  dryRun: boolean;
  source?: string;
  target: string;
  requestedBy: string;
  trigger: string;
  status: 'running' | 'succeeded' | 'failed' | 'aborted';
  startedAt: string;
  endedAt?: string;
  currentStep?: string;
  steps: StepState[];
  pendingApproval?: PendingApproval;
  approvals: Approval[];
  /** A step with `onFailure: ask` that failed and waits for retry, skip or compensate. */
  pendingDecision?: { stepId: string; error: string; since: string };
  /** Retry, skip, compensate, pause and resume decisions, in order. */
  operator?: OperatorDecision[];
  /** Set while the run is paused between steps. */
  paused?: { by: string; reason: string; at: string };
  topology?: DbNodeState[];
  trafficBefore?: TrafficState;
  fence?: FenceResult & { error?: string };
  lag?: LagResult;
  promotion?: PromoteResult;
  traffic?: ShiftResult;
  verify?: VerifyWritesResult;
  rejoin?: RejoinResult;
  /** db.repointStandbys: each other region's standby, followed or not (and then watched). */
  standbys?: StandbyFollow[];
  /** The cache moved with the database: its fence, promotion and who follows it. */
  cache?: {
    rejoin?: CacheRepointResult;
    fence?: CacheFenceResult & { error?: string };
    promotion?: CachePromoteResult;
    repoint?: CacheRepointResult;
  };
  /** Every region's role, upstream and position when the run ended (runs that promoted). */
  topologyAfter?: DbNodeState[];
  /** How the run justified promoting without a verified fence, when it did. */
  dataLossAck?: { by: string; reason: string };
  /** Trigger (or start) to writes accepted in the target. */
  rtoMs?: number;
  /** When rtoMs counts from: the trigger (an alarm's first failing probe), else the run's start. */
  rtoFrom?: string;
  /** Replication state at promotion in an unplanned run: the evidence for its RPO. */
  rpo?: { lastReplayedCommitAt?: string; lastHeardFromPrimaryAt?: string; estimateSeconds?: number; zeroLoss: boolean };
  plan?: PlannedStep[];
  reconcile?: {
    required: boolean;
    oldPrimary?: string;
    /** Where the old primary diverged, as the failover knew it (see ReconcileHandoff.divergence). */
    divergence?: { timeline?: number; lsn?: string; failedAt?: string; lagMs?: number; lagObservedAt?: string };
  };
  /** Reconcile runs: each step's result and the reconciliation's audit record. */
  reconciliation?: {
    id: string;
    preserve?: PreserveOldResult;
    classify?: ClassifyResult;
    apply?: ApplyResult;
    verify?: VerifyResult;
    report?: ReconcileReport;
  };
  /** Failback runs: the reconciliation it checked, any override, and the traffic it restored. */
  failback?: FailbackRecord;
  fenceOnReturn?: { workflowId: string };
  compensation?: { undone: string[]; notUndone: string[] };
  abort?: AbortInput;
  /** Alarms for the service while the run was in progress: attached here, never a second run. */
  alarms?: AttachedAlarm[];
  /** Drain and undrain runs: the region, the records before and after, and the check. */
  drain?: DrainRecord;
  error?: string;
}
