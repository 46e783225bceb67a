// A runbook run's state in one place: its record (what the progress query, the run's details and
// its result show), the step conditions it evaluates, and the undo list. The interpreter
// (workflows/runbook.ts) and the actions (workflows/actions.ts) read and change it.
import * as wf from '@temporalio/workflow';
import type { ActivityOptions, RetryPolicy } from '@temporalio/common';
import type { DbNodeState, RegionActivities } from '../src/contract/activities';
import {
  ACTIONS,
  isCustomAction,
  type ActionName,
  type ActionSpec,
  type Condition,
} from '../src/contract/runbook/catalog';
import { runDetails } from '../src/contract/runbook/details';
import { regionTaskQueue } from '../src/contract/runbook/ids';
import type { RunInput, RunRecord, StepState } from '../src/contract/runbook/types';
import { Compensations } from './compensation';
import { refuse } from './failures';
import { SA } from './search-attributes';

export const DEFAULT_RETRY: RetryPolicy = {
  initialInterval: '200ms',
  backoffCoefficient: 2,
  maximumInterval: '5s',
  maximumAttempts: 20,
};

/** How long one attempt of a region's activity may take, unless its step says otherwise. */
export const STEP_TIMEOUT_MS = 60_000;

/** The database and traffic activities of one region's worker. */
export function regionIn(region: string, options: Partial<ActivityOptions> = {}): RegionActivities {
  return wf.proxyActivities<RegionActivities>({
    taskQueue: regionTaskQueue(region),
    startToCloseTimeout: STEP_TIMEOUT_MS,
    retry: DEFAULT_RETRY,
    // On abort, wait for a running step to finish or acknowledge, so compensation never races it.
    cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    heartbeatTimeout: '15s',
    ...options,
  });
}

export const iso = (ms: number = Date.now()): string => new Date(ms).toISOString();

/** A catalog action's spec; plugin steps (custom.<name>) have none here (RunbookDoc.plugins). */
export function specOf(action: string): ActionSpec | undefined {
  return isCustomAction(action) ? undefined : ACTIONS[action as ActionName];
}

export class RunState {
  readonly rec: RunRecord;
  readonly startedMs = Date.now();
  /**
   * Fewer workflow-task round trips (steps that may run alongside the one before do, search
   * attributes set once per change). Patched, asked once before the first command: a run that
   * started before this shipped replays the way it ran.
   */
  readonly lean = wf.patched('lean-round-trips');
  /**
   * Fewer still: the regions are described for the record while the old primary rejoins (which
   * reports its own state), and the step attribute of an ended run names where it ended instead
   * of reading "-". Same rule: asked once, before the first command.
   */
  readonly leaner = this.lean && wf.patched('leaner-round-trips');
  /**
   * And one more: the lag confirmation and the promotion right after it as one activity
   * (workflows/actions.ts, promoteAfterLag). Same rule.
   */
  readonly leanest = this.leaner && wf.patched('promote-after-lag');
  readonly compensations: Compensations;
  private published: { step?: string; source?: string } = {};
  /** The step a failed run failed at: what its step attribute shows once it has ended. */
  failedAt: string | undefined;
  /** The old primary as its rejoin left it (workers older than that report leave it out). */
  sourceAfter: DbNodeState | undefined;
  /** The other regions, described for the record while the old primary rejoins (leaner runs). */
  othersAfter: Promise<DbNodeState[]> | undefined;

  constructor(readonly input: RunInput) {
    const info = wf.workflowInfo();
    this.compensations = new Compensations(input.runbook.plugins);
    this.rec = {
      workflowId: info.workflowId,
      runId: info.runId,
      kind: input.runbook.kind,
      runbookHash: input.runbook.hash,
      service: input.service,
      mode: input.mode,
      dryRun: input.dryRun,
      source: input.source,
      target: input.target,
      requestedBy: input.requestedBy,
      trigger: input.trigger,
      status: 'running',
      startedAt: iso(this.startedMs),
      steps: input.runbook.steps.map((s) => ({
        id: s.id,
        title:
          s.title ??
          (s.action
            ? (specOf(s.action)?.summary ?? input.runbook.plugins?.[s.action]?.summary ?? s.action)
            : (s.approval?.reason ?? s.id)),
        action: s.action ?? 'approval',
        status: 'pending',
      })),
      approvals: [],
    };
  }

  stepState(id: string): StepState {
    return this.rec.steps.find((s) => s.id === id)!;
  }

  /** The writer the run moves away from, known once preflight has run. */
  source(): string {
    return this.rec.source ?? refuse('the source region is not known yet: the runbook must start with preflight');
  }

  /** When the outage began for the RTO: the alarm's time if an alarm started the run. */
  get triggeredMs(): number {
    return this.input.triggeredAt ?? this.startedMs;
  }

  /** The step the run is at; once it has ended, the one it ended at (the list in the Temporal UI shows it). */
  private stepShown(): string {
    if (this.rec.currentStep) return this.rec.currentStep;
    if (!this.leaner || this.rec.status === 'running') return '-';
    return this.failedAt ?? this.published.step ?? '-';
  }

  /** The step table in the run's details, and the search attributes when asked (the default). */
  publish(attributes = true): void {
    const rec = this.rec;
    const now = { step: this.stepShown(), source: rec.source };
    // Each upsert is an event and a visibility write; an unchanged value is not worth either.
    if (attributes && (!this.lean || now.step !== this.published.step || now.source !== this.published.source)) {
      wf.upsertSearchAttributes([
        { key: SA.step, value: now.step },
        ...(now.source ? [{ key: SA.source, value: now.source }] : []),
      ]);
      this.published = now;
    }
    wf.setCurrentDetails(runDetails(rec));
  }

  /** Whether a step's condition holds now. */
  holds(cond: Condition): boolean {
    const input = this.input;
    switch (cond) {
      case 'planned':
        return input.mode === 'planned';
      case 'unplanned':
        return input.mode === 'unplanned';
      case 'fenced':
        return this.rec.fence?.verified === true;
      case 'not-fenced':
        return this.rec.fence?.verified !== true;
      case 'approval-required':
        return input.approval ? input.approval.required : input.policy.approval[input.mode] === 'required';
      case 'other-standbys':
        return input.regions.length > 2;
      case 'cache':
        return input.cache === true;
    }
  }
}
