// Undoing a run that failed or was aborted. A step that changes something registers how to undo it
// before it acts (so a step that fails half-way is undone too; every undo is idempotent), under
// the compensation the catalog names for its action (ACTIONS[…].compensate, a plugin's
// `compensates`): an action the catalog gives none cannot register one. The run undoes them in
// reverse order and reports what it could not undo (docs/safety.md, invariant 5).
import { ApplicationFailure, type ActivityOptions } from '@temporalio/common';
import { ACTIONS, isCustomAction, type ActionName, type PluginStepSpec } from '../src/contract/runbook/catalog';
import type { StepState } from '../src/contract/runbook/types';
import { errorMessage } from './failures';

/**
 * Compensation must end: a region that is down (its worker never picks the task up) is reported
 * as not undone rather than waited on forever.
 */
export const COMPENSATION: Partial<ActivityOptions> = {
  scheduleToStartTimeout: '15s',
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 5 },
};

interface Undo {
  stepId: string;
  /** The catalog's name for it (db.unfenceWrites, traffic.restore, …). */
  compensation: string;
  /** What it undoes, for the report. */
  what: string;
  undo(): Promise<string>;
}

export class Compensations {
  private readonly undos: Undo[] = [];
  /** What the run did that nothing undoes (the catalog's `irreversible`), for the report. */
  readonly irreversible: string[] = [];

  constructor(private readonly plugins: Record<string, PluginStepSpec> = {}) {}

  /** The compensation the catalog names for an action, if any. */
  compensationOf(action: string): string | undefined {
    if (isCustomAction(action)) return this.plugins[action]?.compensates ? `${action}.compensate` : undefined;
    const spec = (ACTIONS as Record<string, { compensate?: string }>)[action as ActionName];
    return spec?.compensate;
  }

  /**
   * Registers how to undo a step of `action`. Returns a function that withdraws it, for a provider
   * that refused before changing anything.
   */
  register(stepId: string, action: string, what: string, undo: () => Promise<string>): () => void {
    const compensation = this.compensationOf(action);
    if (!compensation)
      throw ApplicationFailure.nonRetryable(
        `step ${stepId}: the catalog gives ${action} no compensation, so it cannot register an undo`,
      );
    const u: Undo = { stepId, compensation, what, undo };
    this.undos.push(u);
    return () => {
      const i = this.undos.indexOf(u);
      if (i >= 0) this.undos.splice(i, 1);
    };
  }

  /** Undoes in reverse order, each once, and marks the steps it undid as compensated. */
  async unwind(stepState: (id: string) => StepState): Promise<{ undone: string[]; notUndone: string[] }> {
    const undone: string[] = [];
    const notUndone: string[] = [...this.irreversible];
    // A step retried by a person (onFailure: ask) registered its undo once per attempt: undo it once.
    const seen = new Set<string>();
    for (const c of [...this.undos].reverse()) {
      const key = `${c.stepId}\n${c.compensation}\n${c.what}`;
      if (seen.has(key)) continue;
      seen.add(key);
      try {
        const detail = await c.undo();
        undone.push(`${c.what}: ${detail}`);
        const s = stepState(c.stepId);
        if (s.status === 'done' || s.status === 'failed') s.status = 'compensated';
      } catch (err) {
        notUndone.push(`${c.what}: ${errorMessage(err)}`);
      }
    }
    return { undone, notUndone };
  }
}
