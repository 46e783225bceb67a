// Starting an evacuation (workflows/evacuate.ts) from outside Temporal: which services it moves
// and with which runbooks, checked before anything starts.
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { Config } from '../config/schema';
import { residencyRuleOf, residencyViolation } from '../../contract/policy/residency';
import { CONTROL_TASK_QUEUE, evacuationWorkflowId } from '../../contract/runbook/ids';
import type { Mode, RunbookDoc } from '../../contract/runbook/types';
import type { EvacuateInput, EvacuationReport } from '../../../workflows/evacuate';
import { buildRunInput, InputError, RefusedError } from './client';
import { buildDrainInput } from './drain';

export interface EvacuateRequest {
  region: string;
  /** Only these services (default: every service with the region). */
  services?: string[];
  mode: Mode;
  requestedBy: string;
  trigger: string;
  runbooks: { failover: RunbookDoc; drain: RunbookDoc };
}

export function buildEvacuateInput(config: Config, req: EvacuateRequest): EvacuateInput {
  const unknown = (req.services ?? []).filter((name) => !config.services.some((s) => s.name === name));
  if (unknown.length > 0)
    throw new InputError(
      `unknown service ${unknown.map((u) => `"${u}"`).join(', ')}; known: ${config.services.map((s) => s.name).join(', ')}`,
    );
  const chosen = config.services.filter((s) => !req.services?.length || req.services.includes(s.name));
  const using = chosen.filter((s) => s.regions.includes(req.region));
  if (using.length === 0) {
    const all = [...new Set(chosen.flatMap((s) => s.regions))].sort();
    throw new InputError(
      `no ${req.services?.length ? 'given ' : ''}service uses region "${req.region}", so there is nothing to evacuate; regions in use: ${all.join(', ')}`,
    );
  }
  const skipped = chosen.filter((s) => !s.regions.includes(req.region)).map((s) => s.name);
  if (req.services?.length && skipped.length > 0)
    throw new InputError(`${skipped.join(', ')} ${skipped.length === 1 ? 'does' : 'do'} not use region ${req.region}`);
  return {
    region: req.region,
    mode: req.mode,
    maxConcurrent: config.evacuation.maxConcurrent,
    requestedBy: req.requestedBy,
    trigger: req.trigger,
    services: using.map((s) => {
      // The target is chosen by the workflow; another region its residency allows stands in for the checks here.
      const rule = residencyRuleOf(config, s);
      const other =
        s.regions.find((r) => r !== req.region && !residencyViolation(rule, s.name, r)) ??
        s.regions.find((r) => r !== req.region)!;
      const { target: _t, ...failover } = buildRunInput(config, req.runbooks.failover, {
        service: s.name,
        source: req.region,
        target: other,
        mode: req.mode,
        dryRun: false,
        requestedBy: req.requestedBy,
        trigger: req.trigger,
      });
      return {
        service: s.name,
        priority: s.priority,
        drain: buildDrainInput(config, req.runbooks.drain, {
          service: s.name,
          region: req.region,
          mode: req.mode,
          requestedBy: req.requestedBy,
          trigger: req.trigger,
        }),
        failover,
      };
    }),
  };
}

/** Starts the evacuation; one per region at a time. */
export async function startEvacuation(
  client: Client,
  input: EvacuateInput,
): Promise<{ workflowId: string; runId: string }> {
  const workflowId = evacuationWorkflowId(input.region);
  try {
    const handle = await client.workflow.start('evacuate', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: `evacuate ${input.region} (${input.services.map((s) => s.service).join(', ')}), by ${input.requestedBy}`,
    });
    return { workflowId, runId: handle.firstExecutionRunId };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      throw new RefusedError(`an evacuation of ${input.region} is already in progress: ${workflowId}`);
    throw err;
  }
}

export async function awaitEvacuation(client: Client, workflowId: string, runId: string): Promise<EvacuationReport> {
  return client.workflow.getHandle(workflowId, runId).result();
}
