// The runbook interpreter: runs the steps of a runbook (runbooks/<kind>.yaml, passed whole as
// input) in order, each as activities on the worker of the region it acts on (workflows/actions.ts),
// and undoes what it did when a step fails or the run is aborted (workflows/compensation.ts).
// The safety invariants (docs/safety.md) are enforced in code, whatever order the runbook puts
// its steps in. The run's state lives in one place (workflows/run-state.ts); approvals and operator
// controls are messages handled beside it (workflows/approvals.ts, workflows/operator-controls.ts).
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/common';
import { isCustomAction, type ActionName, type ActionSpec } from '../src/contract/runbook/catalog';
import { durationMs } from '../src/contract/runbook/duration';
import type { DbNodeState } from '../src/contract/activities';
import type { AttachedAlarm, RunInput, RunRecord, Step } from '../src/contract/runbook/types';
import { notifyGuardian, notifyGuardianNow } from './guardian';
import { RunDecisions } from './approvals';
import { runAppStep } from './app-steps';
import { OperatorControls } from './operator-controls';
import { describeRegions, promoteAfterLag, runAction } from './actions';
import { FAILURE, errorMessage, refuse } from './failures';
import { planOf } from './plan';
import { iso, RunState, specOf } from './run-state';

export const progressQuery = wf.defineQuery<RunRecord>('progress');
export { abortUpdate, approveUpdate } from './approvals';
export { operateUpdate } from './operator-controls';
export { followWhenReachable, fenceWhenReachable } from './actions';
export { FAILURE } from './failures';
/** The service's guardian attaches alarms that fire during the run (single flight: never a second run). */
export const attachAlarmSignal = wf.defineSignal<[AttachedAlarm]>('attachAlarm');

export async function runbook(input: RunInput): Promise<RunRecord> {
  const run = new RunState(input);
  const { rec } = run;
  const stepState = run.stepState.bind(run);
  const publish = run.publish.bind(run);

  // --- messages -------------------------------------------------------------------------------
  wf.setHandler(progressQuery, () => rec);
  wf.setHandler(attachAlarmSignal, (a) => {
    const prev = rec.alarms?.find((x) => x.trigger === a.trigger && x.region === a.region);
    rec.alarms = [...(rec.alarms ?? []).filter((x) => x !== prev), { ...a, count: (prev?.count ?? 0) + a.count }].slice(
      -20,
    );
  });
  const work = new wf.CancellationScope();
  // Approvals and abort, each verified by a worker before it counts (workflows/approvals.ts).
  const decisions = new RunDecisions({ input, rec, stepState, publish, refuse, onAbort: () => work.cancel() });
  decisions.install();
  const awaitApproval = (stepId: string, reason: string, gate = false) => decisions.awaitApproval(stepId, reason, gate);
  // Retry, skip or compensate a failed step, pause and resume (workflows/operator-controls.ts).
  const controls = new OperatorControls({ input, rec, stepState, publish });
  controls.install();

  // --- the run --------------------------------------------------------------------------------
  async function runStep(step: Step): Promise<void> {
    const state = stepState(step.id);
    try {
      if (step.approval) {
        const ok = await awaitApproval(step.id, step.approval.reason, true);
        state.detail = `approved by ${ok.by}`;
      } else if (isCustomAction(step.action!)) {
        // Plugin steps (workflows/app-steps.ts).
        await runAppStep({
          input,
          rec,
          step,
          state,
          opts: { summary: state.title, ...(step.timeout ? { startToCloseTimeout: durationMs(step.timeout) } : {}) },
          source: () => run.source(),
          compensations: run.compensations,
        });
      } else {
        await runAction(run, step as Step & { action: ActionName }, state, awaitApproval);
      }
      state.status = 'done';
    } catch (err) {
      state.status = 'failed';
      state.error = errorMessage(err);
      run.failedAt ??= step.id;
      throw err;
    } finally {
      state.endedAt = iso();
    }
  }

  /** Whether a step runs now, saying why not on its state when it does not. */
  function runnable(step: Step): boolean {
    const state = stepState(step.id);
    if (input.dryRun && step.action !== 'preflight') {
      state.status = 'skipped';
      state.detail = 'dry run';
      return false;
    }
    if (!step.when.every((c) => run.holds(c))) {
      state.status = 'skipped';
      state.detail = `condition not met: ${step.when.filter((c) => !run.holds(c)).join(', ')}`;
      return false;
    }
    return true;
  }

  /**
   * The steps right after `steps[i]` that may run alongside it (ACTIONS[…].alongside): each one
   * that waited for the one before would cost the run a workflow-task round trip and buy nothing.
   */
  function companions(i: number): Step[] {
    const first = input.runbook.steps[i]!;
    const group: Step[] = [];
    if (!run.lean || !first.action || input.dryRun) return group;
    for (const next of input.runbook.steps.slice(i + 1)) {
      const spec: ActionSpec | undefined = next.action ? specOf(next.action) : undefined;
      if (!spec?.alongside || ![first, ...group].every((s) => s.action && spec.alongside!.includes(s.action))) break;
      if (!next.when.every((c) => run.holds(c))) break;
      group.push(next);
    }
    return group;
  }

  /**
   * The promote step right after steps[i] when that one confirms the lag: the two run as one
   * activity (workflows/actions.ts, promoteAfterLag). Plain steps only: an approval, a person's
   * choice on failure or bounds of their own keep them apart.
   */
  function promotionAfter(i: number): Step | undefined {
    const [lag, next] = [input.runbook.steps[i]!, input.runbook.steps[i + 1]];
    const plain = (s: Step): boolean => !s.approval && s.onFailure !== 'ask' && !s.timeout && !s.unplanned;
    if (!run.leanest || input.dryRun || lag.action !== 'db.waitForLag' || next?.action !== 'db.promote') return;
    return plain(lag) && plain(next) && wouldRun(next) ? next : undefined;
  }

  async function runSteps(): Promise<void> {
    const steps = input.runbook.steps;
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      if (!runnable(step)) continue;
      await controls.betweenSteps();
      const promotion = promotionAfter(i);
      const group = promotion ? [step, promotion] : [step, ...companions(i)];
      i += group.length - 1;
      rec.currentStep = step.id;
      for (const s of group) {
        const state = stepState(s.id);
        state.status = 'running';
        state.startedAt = iso();
      }
      publish();
      // The old primary's rejoin, as the run's last step, acts on it alone: the record's view of
      // every other region is read meanwhile instead of in a round of its own after it.
      if (
        run.leaner &&
        rec.promotion &&
        group.length === 1 &&
        step.action === 'db.rejoinAsStandby' &&
        steps.slice(i + 1).every((s) => !wouldRun(s))
      ) {
        run.othersAfter = describeRegions(
          run,
          input.regions.filter((r) => r !== run.source()),
        );
      }
      if (promotion) {
        await promoteAfterLag(run, stepState(step.id), stepState(promotion.id));
        continue;
      }
      // Every step of a group settles before the run moves on or compensates: an undo must never
      // race the step it undoes.
      const outcomes = await Promise.allSettled(group.map((s) => controls.asking(s, () => runStep(s))));
      const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failed) throw failed.reason;
      // Traffic and writes both count in the RTO: with the verification alongside the shift, the
      // service is back when the later of the two is done.
      if (group.length > 1 && rec.rtoMs !== undefined) rec.rtoMs = Date.now() - run.triggeredMs;
    }
    if (input.dryRun) rec.plan = planOf(run);
    // The audit record ends with where every region stands (docs/safety.md, invariant 7). Patched: a run that
    // was already past its last step when this shipped must replay without these activities.
    else if (run.othersAfter) rec.topologyAfter = await topologyAfterRejoin(run.othersAfter);
    else if (rec.promotion && (run.leaner || wf.patched('topology-after')))
      rec.topologyAfter = await describeRegions(run);
  }

  /** The regions described during the rejoin, and the old primary as the rejoin reported it (or described now). */
  async function topologyAfterRejoin(others: Promise<DbNodeState[]>): Promise<DbNodeState[]> {
    const [described, [src]] = await Promise.all([
      others,
      run.sourceAfter ? Promise.resolve([run.sourceAfter]) : describeRegions(run, [run.source()]),
    ]);
    return input.regions.map((r) => (r === run.source() ? src! : described.find((n) => n.region === r)!));
  }

  /** Whether a step would run if the run reached it now (runnable, without recording why not). */
  function wouldRun(step: Step): boolean {
    return !input.dryRun && step.when.every((c) => run.holds(c));
  }

  // The first step sets the attributes in this same workflow task; a run with no step to run sets
  // them at its end.
  publish(!run.lean);
  // A signal, not notifyGuardianNow: a local activity would hold the preflight's activities back
  // until the guardian answered, and the outcome that comes back usually lands while they run.
  // (Measured: its workflow task is one fewer, but the first task, on the critical path, grew.)
  void notifyGuardian(rec);
  try {
    await work.run(runSteps);
    rec.status = 'succeeded';
    rec.currentStep = undefined;
    rec.endedAt = iso();
    publish();
    await (run.lean ? notifyGuardianNow(rec) : notifyGuardian(rec));
    await decisions.drain();
    return rec;
  } catch (err) {
    const aborted = rec.abort !== undefined && (wf.isCancellation(err) || err instanceof wf.ActivityFailure);
    rec.status = aborted ? 'aborted' : 'failed';
    rec.error = aborted ? `aborted by ${rec.abort!.by}: ${rec.abort!.reason}` : errorMessage(err);
    for (const s of rec.steps) if (s.status === 'running' || s.status === 'waiting') s.status = 'failed';
    // Compensation must finish even though the run is being cancelled (docs/safety.md, invariant 5).
    rec.compensation = await wf.CancellationScope.nonCancellable(() => run.compensations.unwind(stepState));
    rec.endedAt = iso();
    rec.currentStep = undefined;
    publish();
    await (run.lean ? notifyGuardianNow(rec) : notifyGuardian(rec));
    await decisions.drain();
    const refused = err instanceof ApplicationFailure && err.type === FAILURE.refused;
    throw ApplicationFailure.create({
      type: aborted ? FAILURE.aborted : refused ? FAILURE.refused : FAILURE.failed,
      message: rec.error,
      details: [rec],
      nonRetryable: true,
    });
  }
}
