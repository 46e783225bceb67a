// Operator controls in a run: a step with `onFailure: ask` that fails waits for a person to
// retry it, skip it or compensate the run, instead of compensating at once; and `pause`/`resume`
// hold the run between steps. Each is the `operate` update, signed and verified by a worker like
// an approval (workflows/approvals.ts, docs/approvals.md), and recorded in the run's record
// (RunRecord.operator). Handlers and their state live here, as in temporalio/samples-typescript's
// safe-message-handlers, so the interpreter (workflows/runbook.ts) only calls `asking` and
// `betweenSteps`. Nothing here issues a command unless a person uses it: runs without these
// features replay as before.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/common';
import type { DecisionActivities } from '../activities/approvals';
import { DECISION_REFUSED, type VerifiedDecision } from '../src/contract/approvals';
import type { OperateInput, OperatorAction, RunInput, RunRecord, Step, StepState } from '../src/contract/runbook/types';

export const operateUpdate = wf.defineUpdate<string, [OperateInput]>('operate');

const { verifyDecision } = wf.proxyActivities<DecisionActivities>({
  startToCloseTimeout: '20s',
  scheduleToCloseTimeout: '1m',
  retry: { initialInterval: '200ms', maximumAttempts: 3 },
});

const iso = (): string => new Date(Date.now()).toISOString();

function refusal(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: DECISION_REFUSED, message, nonRetryable: true });
}

function messageOf(err: unknown): string {
  if ((err instanceof wf.ActivityFailure || err instanceof wf.ChildWorkflowFailure) && err.cause)
    return messageOf(err.cause);
  return err instanceof Error ? err.message : String(err);
}

export interface OperatorContext {
  input: RunInput;
  rec: RunRecord;
  stepState(id: string): StepState;
  publish(): void;
}

type StepDecision = Extract<OperatorAction, 'retry' | 'skip' | 'compensate'>;

export class OperatorControls {
  private decision: { action: StepDecision; by: string; reason: string } | undefined;
  private paused = false;
  private readonly nonces = new Set<string>();
  private readonly info = wf.workflowInfo();

  constructor(private readonly ctx: OperatorContext) {}

  install(): void {
    wf.setHandler(operateUpdate, (o) => this.operate(o), { validator: (o) => this.validate(o) });
  }

  /**
   * Runs a step; with `onFailure: ask`, a failure waits for a person: retry runs it again, skip
   * moves on (the interpreter's safety rules still hold: skipping the fence leaves promotion
   * refused), compensate fails the run, which compensates as usual. An abort is never asked about.
   */
  async asking(step: Step, run: () => Promise<void>): Promise<void> {
    if (step.onFailure !== 'ask') return run();
    const { rec } = this.ctx;
    for (;;) {
      try {
        return await run();
      } catch (err) {
        if (wf.isCancellation(err) || rec.abort) throw err;
        const state = this.ctx.stepState(step.id);
        rec.pendingDecision = { stepId: step.id, error: messageOf(err), since: iso() };
        state.status = 'waiting';
        state.detail = `failed: ${messageOf(err)}; waiting for retry, skip or compensate`;
        this.ctx.publish();
        this.decision = undefined;
        await wf.condition(() => this.decision !== undefined);
        const d = this.decision!;
        rec.pendingDecision = undefined;
        if (d.action === 'retry') {
          state.status = 'running';
          state.error = undefined;
          state.detail = `retried by ${d.by}: ${d.reason}`;
          this.ctx.publish();
          continue;
        }
        if (d.action === 'skip') {
          state.status = 'skipped';
          state.detail = `skipped by ${d.by}: ${d.reason} (it failed: ${state.error ?? messageOf(err)})`;
          return;
        }
        throw ApplicationFailure.nonRetryable(
          `step ${step.id} failed (${messageOf(err)}); ${d.by} chose to compensate: ${d.reason}`,
          'OperatorCompensate',
        );
      }
    }
  }

  /** Holds the run here while it is paused. */
  async betweenSteps(): Promise<void> {
    if (!this.paused) return;
    this.ctx.publish();
    await wf.condition(() => !this.paused);
  }

  private validate(o: OperateInput): void {
    const { rec, input } = this.ctx;
    if (rec.status !== 'running') throw new Error(`run ${this.info.workflowId} has already ${rec.status}`);
    if (!o.reason?.trim()) throw new Error(`${o.action} needs a reason: it goes into the run's record`);
    if (!o.signature?.value)
      throw new Error(
        `the ${o.action} by ${o.by} is not signed: sign it with your SSH key (regionshift ${o.action} ${input.service} --by ${o.by} --key ~/.ssh/id_ed25519 --reason …), or decide from Slack`,
      );
    if (this.nonces.has(o.signature.nonce))
      throw new Error(`this signature was already used (nonce ${o.signature.nonce}): sign the ${o.action} again`);
    this.check(o.action);
  }

  /** What the run's state allows; asked again after verification, since the run may have moved on. */
  private check(action: OperatorAction): void {
    const { rec } = this.ctx;
    if (action === 'pause' && this.paused) throw refusal(`run ${this.info.workflowId} is already paused`);
    if (action === 'resume' && !this.paused) throw refusal(`run ${this.info.workflowId} is not paused`);
    if (
      (action === 'retry' || action === 'skip' || action === 'compensate') &&
      (!rec.pendingDecision || this.decision)
    ) {
      throw refusal(
        `run ${this.info.workflowId} has no failed step waiting for a decision${rec.currentStep ? ` (it is at step ${rec.currentStep})` : ''}`,
      );
    }
  }

  private async operate(o: OperateInput): Promise<string> {
    const { rec, input } = this.ctx;
    const stepId = rec.pendingDecision?.stepId ?? rec.currentStep ?? 'run';
    const subject = o.action === 'pause' || o.action === 'resume' ? 'run' : stepId;
    this.nonces.add(o.signature!.nonce);
    let verified: VerifiedDecision;
    try {
      verified = await verifyDecision({
        service: input.service,
        mode: input.mode,
        requester: input.requestedBy,
        signature: o.signature!,
        claim: {
          kind: o.action,
          workflowId: this.info.workflowId,
          runId: this.info.runId,
          subject,
          by: o.by,
          groups: o.groups ?? [],
          reason: o.reason,
        },
      });
    } catch (err) {
      throw refusal(messageOf(err));
    }
    this.check(o.action);
    if (subject !== 'run' && rec.pendingDecision?.stepId !== subject)
      throw refusal(`step ${subject} is no longer waiting; nothing was changed`);
    (rec.operator ??= []).push({
      action: o.action,
      ...(subject !== 'run' ? { stepId: subject } : {}),
      by: o.by,
      reason: o.reason,
      at: iso(),
      signed: verified.signedAs,
    });
    if (o.action === 'pause') {
      this.paused = true;
      rec.paused = { by: o.by, reason: o.reason, at: iso() };
      this.ctx.publish();
      return `paused by ${o.by}: the run stops before its next step`;
    }
    if (o.action === 'resume') {
      this.paused = false;
      rec.paused = undefined;
      return `resumed by ${o.by}`;
    }
    this.decision = { action: o.action, by: o.by, reason: o.reason };
    return `${o.action === 'retry' ? 'retrying' : o.action === 'skip' ? 'skipping' : 'compensating after'} step ${subject} (by ${o.by})`;
  }
}
