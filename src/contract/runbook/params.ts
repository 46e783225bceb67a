// The parameters a step may take (`params:` in the runbook YAML), one zod schema per catalog
// action that takes any. Kept apart from catalog.ts because workflow code imports the catalog and
// must stay free of the validation library; load.ts validates and fills in defaults, so a run only
// ever sees parameters that passed these schemas.
import { z } from 'zod';
import type { ActionName } from './catalog';

const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like 500ms, 30s, 5m or 1h');
const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'the name of an environment variable on the worker, like HOOK_TOKEN');

/** The run's values a template may use, written {{name}} (http.call's url, headers and body). */
export const TEMPLATE_VARS = [
  'service',
  'source',
  'target',
  'mode',
  'kind',
  'runId',
  'workflowId',
  'stepId',
  'region',
] as const;
export type TemplateVar = (typeof TEMPLATE_VARS)[number];

const template = z.string().superRefine((text, ctx) => {
  for (const m of text.matchAll(/\{\{\s*([^}]*?)\s*\}\}/g)) {
    if (!(TEMPLATE_VARS as readonly string[]).includes(m[1]!)) {
      ctx.addIssue({
        code: 'custom',
        message: `unknown template value {{${m[1]}}}; known: ${TEMPLATE_VARS.map((v) => `{{${v}}}`).join(', ')}`,
      });
    }
  }
});

/** A JSON body whose strings may be templates. */
type Body = string | number | boolean | null | Body[] | { [k: string]: Body };
const body: z.ZodType<Body> = z.lazy(() =>
  z.union([template, z.number(), z.boolean(), z.null(), z.array(body), z.record(z.string(), body)]),
);

export const HttpCallParams = z.strictObject({
  url: template.pipe(z.string().regex(/^https?:\/\//, 'an http:// or https:// URL')),
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).default('POST'),
  /** Plain headers; a secret never goes here (it would be in the runbook and the run's history). */
  headers: z
    .record(z.string(), template)
    .default({})
    .superRefine((h, ctx) => {
      for (const name of Object.keys(h)) {
        if (name.toLowerCase() === 'authorization')
          ctx.addIssue({
            code: 'custom',
            path: [name],
            message:
              'a credential does not belong in the runbook: name the environment variable that holds it with bearerTokenEnv (or headersFromEnv)',
          });
      }
    }),
  /** Headers whose values the worker reads from its own environment (secrets), by variable name. */
  headersFromEnv: z.record(z.string(), envName).default({}),
  /** Sent as `Authorization: Bearer <value of this variable on the worker>`. */
  bearerTokenEnv: envName.optional(),
  /** A string (sent as is) or JSON (sent as application/json); strings in either are templates. */
  body: body.optional(),
  /** Statuses that count as success; default any 2xx. */
  expectStatus: z
    .union([z.number().int().min(100).max(599), z.array(z.number().int().min(100).max(599)).min(1)])
    .optional(),
  /** Per attempt. */
  timeout: duration.default('10s'),
  /** Attempts after the first, on a 5xx, 429 or a connection error; a 4xx is never retried. */
  retries: z.number().int().min(0).max(10).default(2),
});
export type HttpCallParams = z.infer<typeof HttpCallParams>;

/** Actions that take parameters; every other catalog action takes none. */
export const ACTION_PARAMS: Partial<Record<ActionName, z.ZodType>> = {
  'http.call': HttpCallParams,
};

/** Actions whose `placement` a step may set: their effect is the same wherever they run. */
export const PLACEABLE: readonly string[] = ['http.call'];
