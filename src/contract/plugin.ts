// The plugin interface (docs/plugins.md): a module named in the config's `plugins` exports
// `steps`, each a runbook step `custom.<name>` with a zod schema for its parameters, where it
// runs, and how it is undone. Every region's worker registers each step as the activity
// `custom.<name>` (and `custom.<name>.compensate`); load time checks a runbook's parameters
// against the schema, and the activity checks them again before it acts.
import type { z } from 'zod';
import type { Mode } from './runbook/types';
import type { StepPlacement } from './runbook/catalog';

/** What a plugin step knows of the run it is part of. Never a credential: those come from the worker's environment. */
export interface StepContext {
  service: string;
  /** The region whose worker runs this call. */
  region: string;
  source: string;
  target: string;
  mode: Mode;
  kind: string;
  workflowId: string;
  runId: string;
  stepId: string;
  /** Stable across retries of this step in this run, so a step can make its effect idempotent. */
  idempotencyKey: string;
}

export interface StepOutcome {
  /** One line for the run's step table and record. */
  detail: string;
}

export interface StepPlugin<S extends z.ZodType = z.ZodType> {
  /** The step's name after `custom.`: lowercase letters, digits and dashes. */
  name: string;
  summary: string;
  placement: StepPlacement;
  params: S;
  run(ctx: StepContext, params: z.output<S>): Promise<StepOutcome>;
  /** Undoes `run` when the run fails or is aborted after it (in reverse order, like every step). */
  compensate?(ctx: StepContext, params: z.output<S>): Promise<StepOutcome>;
  /** Why it cannot be undone (no compensate), for the run's report. */
  irreversible?: string;
}

/** Typed helper: `params` in run and compensate is the schema's output. */
export function defineStep<S extends z.ZodType>(step: StepPlugin<S>): StepPlugin<S> {
  return step;
}

/** What a plugin module exports. */
export interface PluginModule {
  steps: StepPlugin[];
}

/** The input of a plugin step's activities. */
export interface PluginStepInput {
  ctx: StepContext;
  params: Record<string, unknown>;
}
