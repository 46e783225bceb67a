// Application steps of a runbook: `http.call` (a webhook, activities/http.ts) and plugin steps
// `custom.<name>` (src/plugins/, docs/plugins.md). Both run where the step's placement says
// (source, target, every region at once, or a control worker), with an idempotency key derived
// from the run and the step, so a retried step is safe. Kept beside the interpreter
// (workflows/runbook.ts) so that it only dispatches to them.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure, type ActivityOptions } from '@temporalio/common';
import type { HttpActivities, HttpCallInput, HttpCallResult } from '../activities/http';
import { isCustomAction, type StepPlacement } from '../src/contract/runbook/catalog';
import { durationMs } from '../src/contract/runbook/duration';
import { regionTaskQueue } from '../src/contract/runbook/ids';
import type { HttpCallParams } from '../src/contract/runbook/params';
import { renderJson, renderTemplate, type TemplateValues } from '../src/contract/runbook/template';
import type { RunInput, RunRecord, Step, StepState } from '../src/contract/runbook/types';
import type { PluginStepInput, StepContext } from '../src/contract/plugin';
import { COMPENSATION, type Compensations } from './compensation';

export interface AppStepContext {
  input: RunInput;
  rec: RunRecord;
  step: Step;
  state: StepState;
  /** The run's activity options for this step (summary, timeouts from the runbook). */
  opts: Partial<ActivityOptions>;
  source(): string;
  compensations: Compensations;
}

export function isAppStep(action: string): boolean {
  return action === 'http.call' || isCustomAction(action);
}

/** The regions a placement names; `undefined` stands for a control worker (the run's own task queue). */
function regionsOf(c: AppStepContext, placement: StepPlacement): (string | undefined)[] {
  switch (placement) {
    case 'source':
      return [c.source()];
    case 'target':
      return [c.input.target];
    case 'every':
      return c.input.regions;
    case 'control':
      return [undefined];
  }
}

function queueOf(region: string | undefined): Partial<ActivityOptions> {
  return region ? { taskQueue: regionTaskQueue(region) } : {};
}

function stepContext(c: AppStepContext, region: string | undefined): StepContext {
  const info = wf.workflowInfo();
  const where = region ?? 'control';
  return {
    service: c.input.service,
    region: where,
    source: c.source(),
    target: c.input.target,
    mode: c.input.mode,
    kind: c.input.runbook.kind,
    workflowId: info.workflowId,
    runId: info.runId,
    stepId: c.step.id,
    // The same on every attempt and every replay of this step in this run; another run gets another.
    idempotencyKey: `regionshift:${info.runId}:${c.step.id}${c.step.placement === 'every' ? `:${where}` : ''}`,
  };
}

export async function runAppStep(c: AppStepContext): Promise<void> {
  const action = c.step.action!;
  if (action === 'http.call') return httpCall(c);
  return pluginStep(c, action);
}

async function httpCall(c: AppStepContext): Promise<void> {
  const p = c.step.params as HttpCallParams;
  const placement = c.step.placement ?? 'target';
  const timeoutMs = durationMs(p.timeout);
  const results = await Promise.all(
    regionsOf(c, placement).map((region) => {
      const sc = stepContext(c, region);
      const values: TemplateValues = { ...sc, region: sc.region };
      const call: HttpCallInput = {
        url: renderTemplate(p.url, values),
        method: p.method,
        headers: Object.fromEntries(Object.entries(p.headers).map(([k, v]) => [k, renderTemplate(v, values)])),
        headersFromEnv: p.headersFromEnv,
        bearerTokenEnv: p.bearerTokenEnv,
        body:
          p.body === undefined
            ? undefined
            : typeof p.body === 'string'
              ? renderTemplate(p.body, values)
              : JSON.stringify(renderJson(p.body, values)),
        json: p.body !== undefined && typeof p.body !== 'string',
        expectStatus:
          p.expectStatus === undefined ? [] : Array.isArray(p.expectStatus) ? p.expectStatus : [p.expectStatus],
        timeoutMs,
        idempotencyKey: sc.idempotencyKey,
      };
      const acts = wf.proxyActivities<HttpActivities>({
        startToCloseTimeout: timeoutMs + 5000,
        ...c.opts,
        ...queueOf(region),
        // The step's own retries, not the run's default: the application's owner chose how often it may be called.
        retry: {
          initialInterval: '200ms',
          backoffCoefficient: 2,
          maximumInterval: '5s',
          maximumAttempts: p.retries + 1,
          nonRetryableErrorTypes: ['HttpRefused', 'HttpConfig'],
        },
      });
      return acts.appHttpCall(call);
    }),
  );
  c.state.region = placement === 'every' ? undefined : results[0]!.region;
  c.state.detail = results
    .map(
      (r: HttpCallResult) =>
        `${placement === 'every' ? `${r.region}: ` : ''}${p.method} → ${r.status}${r.attempt > 1 ? ` (attempt ${r.attempt})` : ''}${r.firstLine ? `: ${r.firstLine}` : ''}`,
    )
    .join('; ');
}

async function pluginStep(c: AppStepContext, action: string): Promise<void> {
  const spec = c.input.runbook.plugins?.[action];
  // Load time writes every plugin step's declaration into the run's input; without it the run
  // cannot know where the step runs or how it is undone.
  if (!spec)
    throw ApplicationFailure.nonRetryable(
      `step ${c.step.id}: ${action} is not declared in the run's input; load the runbook with the config's plugins (regionshift validate --config …)`,
    );
  const placement = c.step.placement ?? spec.placement;
  const regions = regionsOf(c, placement);
  const params = c.step.params ?? {};
  for (const region of regions) {
    const input: PluginStepInput = { ctx: stepContext(c, region), params };
    const where = region ?? 'control';
    if (spec.compensates) {
      // Registered before the step runs: a step that fails half-way is undone too (compensations are idempotent).
      c.compensations.register(
        c.step.id,
        action,
        `undo ${action} in ${where}`,
        async () => (await proxy({ ...COMPENSATION, ...queueOf(region) })[`${action}.compensate`]!(input)).detail,
      );
    } else if (spec.irreversible) {
      c.compensations.irreversible.push(`${action} in ${where}: ${spec.irreversible}`);
    }
  }
  const results = await Promise.all(
    regions.map(async (region) => {
      const input: PluginStepInput = { ctx: stepContext(c, region), params };
      const r = await proxy({
        startToCloseTimeout: '60s',
        ...c.opts,
        ...queueOf(region),
        retry: { initialInterval: '200ms', maximumAttempts: 5, nonRetryableErrorTypes: ['BadParams'] },
      })[action]!(input);
      return `${regions.length > 1 ? `${region ?? 'control'}: ` : ''}${r.detail}`;
    }),
  );
  c.state.region = regions.length === 1 ? regions[0] : undefined;
  c.state.detail = results.join('; ');
}

function proxy(
  opts: ActivityOptions | Partial<ActivityOptions>,
): Record<string, (input: PluginStepInput) => Promise<{ detail: string }>> {
  return wf.proxyActivities<Record<string, (input: PluginStepInput) => Promise<{ detail: string }>>>({
    startToCloseTimeout: '60s',
    ...opts,
  });
}
