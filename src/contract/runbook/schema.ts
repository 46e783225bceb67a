import { z } from 'zod';
import {
  ACTIONS,
  CONDITIONS,
  CUSTOM_PREFIX,
  STEP_PLACEMENTS,
  isCustomAction,
  type ActionName,
  type CustomAction,
} from './catalog';
import { ACTION_PARAMS, PLACEABLE } from './params';
import { nearest } from '../nearest';

const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like 500ms, 30s, 5m or 1h');
const catalogAction = z.enum(Object.keys(ACTIONS) as [ActionName, ...ActionName[]]);
// A plugin's step: which plugins exist is known only with the config (runbookSchema below).
const customAction = z.custom<CustomAction>((v) => typeof v === 'string' && /^custom\.[a-z][a-z0-9-]*$/.test(v));
const actionName = z.union([catalogAction, customAction], {
  error: (issue) => {
    const near = typeof issue.input === 'string' ? nearest(issue.input, Object.keys(ACTIONS)) : undefined;
    return `unknown action ${JSON.stringify(issue.input)}${near ? `; did you mean ${near}?` : ''}; known: ${Object.keys(ACTIONS).join(', ')}, or ${CUSTOM_PREFIX}<name> from a plugin (lowercase letters, digits and dashes)`;
  },
});

/** Bounds for a step when the source region may be gone (unplanned mode). */
const UnplannedBounds = z.strictObject({
  scheduleToStart: duration.optional(),
  startToClose: duration.optional(),
  maximumAttempts: z.number().int().min(1).optional(),
  /**
   * What a failure means: stop the run; carry on and require a data-loss acknowledgement; or
   * carry on and record it (continue: for a store whose loss the run accepts, the cache).
   */
  onFailure: z.enum(['fail', 'require-data-loss-ack', 'continue']).default('fail'),
});

/**
 * One step: an action from the catalog or an approval gate. A single object type (rather than a
 * union) so that a typo in any field is reported on that field, not as "matches no variant".
 */
export const Step = z
  .strictObject({
    id: z.string().regex(/^[a-z][a-z0-9-]*$/, 'lowercase letters, digits and dashes'),
    title: z.string().optional(),
    action: actionName.optional(),
    approval: z.strictObject({ reason: z.string().min(1) }).optional(),
    when: z.array(z.enum(CONDITIONS)).default([]),
    timeout: duration.optional(),
    unplanned: UnplannedBounds.optional(),
    /** The action's parameters, checked against its schema (src/contract/runbook/params.ts, or the plugin's). */
    params: z.record(z.string(), z.unknown()).optional(),
    /** Where an http.call or plugin step runs, instead of its default. */
    placement: z.enum(STEP_PLACEMENTS).optional(),
    /** `ask`: a failure waits for a person (retry, skip or compensate) instead of compensating at once. */
    onFailure: z.enum(['fail', 'ask']).optional(),
  })
  .superRefine((step, ctx) => {
    if (!step.action === !step.approval) {
      ctx.addIssue({ code: 'custom', path: [], message: 'a step has exactly one of `action` or `approval`' });
    }
    if (step.placement && !(step.action && (PLACEABLE.includes(step.action) || isCustomAction(step.action)))) {
      ctx.addIssue({
        code: 'custom',
        path: ['placement'],
        message: `only ${PLACEABLE.join(', ')} and plugin steps take a placement; ${step.action ?? 'an approval'} runs where the catalog says`,
      });
    }
    if (step.action && !isCustomAction(step.action))
      checkParams(ctx, ACTION_PARAMS[step.action], step.action, step.params, []);
  });

/** Adds a problem for each wrong parameter, at its path under the step (so load.ts reports its line). */
function checkParams(
  ctx: z.RefinementCtx,
  schema: z.ZodType | undefined,
  action: string,
  params: Record<string, unknown> | undefined,
  at: (string | number)[],
): void {
  if (!schema) {
    if (params && Object.keys(params).length > 0)
      ctx.addIssue({ code: 'custom', path: [...at, 'params'], message: `${action} takes no parameters` });
    return;
  }
  const r = schema.safeParse(params ?? {});
  if (r.success) return;
  for (const issue of r.error.issues) {
    ctx.addIssue({
      code: 'custom',
      path: [...at, 'params', ...issue.path.filter((p): p is string | number => typeof p !== 'symbol')],
      message: issue.message,
    });
  }
}

export const Runbook = z
  .strictObject({
    kind: z.enum(['failover', 'failback', 'reconcile', 'drain', 'undrain']),
    description: z.string().optional(),
    steps: z.array(Step).min(1),
  })
  .superRefine((rb, ctx) => {
    // A drain moves traffic only: a database step in it would act on the drained region.
    const drainOnly: Record<string, readonly string[]> = {
      drain: ['preflight', 'traffic.drain', 'traffic.verify'],
      undrain: ['preflight', 'traffic.undrain', 'traffic.verify'],
    };
    const allowed = drainOnly[rb.kind];
    rb.steps.forEach((step, i) => {
      if (!step.action) return;
      if (allowed && !allowed.includes(step.action)) {
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'action'],
          message: `a ${rb.kind} runbook moves traffic only; ${step.action} is not allowed in it (allowed: ${allowed.join(', ')}, and approvals)`,
        });
      }
      if (!allowed && ['traffic.drain', 'traffic.undrain', 'traffic.verify'].includes(step.action)) {
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'action'],
          message: `${step.action} belongs in a drain or undrain runbook, not a ${rb.kind} one`,
        });
      }
    });
    const seen = new Set<string>();
    rb.steps.forEach((step, i) => {
      if (seen.has(step.id))
        ctx.addIssue({ code: 'custom', path: ['steps', i, 'id'], message: `duplicate step id "${step.id}"` });
      seen.add(step.id);
    });
    if (!allowed) promotionOrder(rb.steps, ctx);
  });

/**
 * The workflow promotes only after a verified fence and the lag confirmed after it (guardPromotion
 * in workflows/actions.ts); a runbook that orders them otherwise would fail every planned run at
 * its promotion, after fencing the writer. Said here so it is refused before any run starts.
 */
function promotionOrder(steps: Step[], ctx: z.RefinementCtx): void {
  const at = (action: ActionName, from = 0) => steps.findIndex((s, i) => i >= from && s.action === action);
  steps.forEach((step, i) => {
    if (step.action !== 'db.promote') return;
    const fence = at('db.fenceWrites');
    const lag = fence < 0 ? -1 : at('db.waitForLag', fence);
    const problem =
      fence < 0 || fence > i
        ? 'comes before any db.fenceWrites step'
        : lag < 0 || lag > i
          ? 'has no db.waitForLag step between the fence and it'
          : undefined;
    if (problem)
      ctx.addIssue({
        code: 'custom',
        path: ['steps', i, 'action'],
        message: `db.promote ${problem}: a planned run promotes only after a verified fence and the lag confirmed after it, so it would stop here (order: db.fenceWrites, db.waitForLag, db.promote)`,
      });
  });
}

export type Step = z.infer<typeof Step>;
export type Runbook = z.infer<typeof Runbook>;

/** What load time knows of a plugin step: its parameters' schema (the rest travels in RunbookDoc.plugins). */
export interface PluginParams {
  params: z.ZodType;
}

/**
 * The runbook schema with the config's plugins: a `custom.<name>` step must name one of them and
 * its parameters must pass that plugin's schema.
 */
export function runbookSchema(plugins: ReadonlyMap<string, PluginParams>) {
  return Runbook.superRefine((rb, ctx) => {
    rb.steps.forEach((step, i) => {
      if (!step.action || !isCustomAction(step.action)) return;
      const plugin = plugins.get(step.action);
      if (!plugin) {
        const known = [...plugins.keys()];
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'action'],
          message: `no plugin provides ${step.action}; ${known.length ? `plugin steps known: ${known.join(', ')}` : 'the config names no plugins (plugins: [{ module: … }], docs/plugins.md)'}`,
        });
        return;
      }
      checkParams(ctx, plugin.params, step.action, step.params, ['steps', i]);
    });
  });
}
