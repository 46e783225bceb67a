import { z } from 'zod';
import { ACTIONS, CONDITIONS, type ActionName } from './catalog';

const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like 500ms, 30s, 5m or 1h');
const actionName = z.enum(Object.keys(ACTIONS) as [ActionName, ...ActionName[]], {
  error: (issue) => `unknown action ${JSON.stringify(issue.input)}; known: ${Object.keys(ACTIONS).join(', ')}`,
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
  })
  .superRefine((step, ctx) => {
    if (!step.action === !step.approval) {
      ctx.addIssue({ code: 'custom', path: [], message: 'a step has exactly one of `action` or `approval`' });
    }
  });

export const Runbook = z
  .strictObject({
    kind: z.enum(['failover', 'failback', 'reconcile', 'drain', 'undrain']),
    description: z.string().optional(),
    steps: z.array(Step).min(1),
  })
  .superRefine((rb, ctx) => {
    // A drain moves traffic only: a database step in it would act on the drained region.
    const drainOnly: Record<string, readonly string[]> = { drain: ['preflight', 'traffic.drain', 'traffic.verify'], undrain: ['preflight', 'traffic.undrain', 'traffic.verify'] };
    const allowed = drainOnly[rb.kind];
    rb.steps.forEach((step, i) => {
      if (!step.action) return;
      if (allowed && !allowed.includes(step.action)) {
        ctx.addIssue({ code: 'custom', path: ['steps', i, 'action'], message: `a ${rb.kind} runbook moves traffic only; ${step.action} is not allowed in it (allowed: ${allowed.join(', ')}, and approvals)` });
      }
      if (!allowed && ['traffic.drain', 'traffic.undrain', 'traffic.verify'].includes(step.action)) {
        ctx.addIssue({ code: 'custom', path: ['steps', i, 'action'], message: `${step.action} belongs in a drain or undrain runbook, not a ${rb.kind} one` });
      }
    });
    const seen = new Set<string>();
    rb.steps.forEach((step, i) => {
      if (seen.has(step.id)) ctx.addIssue({ code: 'custom', path: ['steps', i, 'id'], message: `duplicate step id "${step.id}"` });
      seen.add(step.id);
    });
  });

export type Step = z.infer<typeof Step>;
export type Runbook = z.infer<typeof Runbook>;
