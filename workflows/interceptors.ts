// Workflow interceptors (bundled into the workflow code, so no Node imports): when a runbook run
// ends, its summary goes out through the `regionshiftMetrics` sink to the worker that ran it,
// and each step becomes a span under the run's RunWorkflow span.
//
// Why a sink, not an activity: a sink call is not a command, so it adds nothing to the run's
// history (no patched() marker, in-flight runs replay unchanged), costs the run no round trip,
// and is not repeated when a worker replays a history: each run is counted once, by the worker
// that completed it. The interpreter (workflows/runbook.ts) is untouched: its record already
// holds every timing the metrics need.
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  ApplicationFailure,
  proxySinks,
  workflowInfo,
  type Sinks,
  type WorkflowInterceptorsFactory,
  type WorkflowInboundCallsInterceptor,
} from '@temporalio/workflow';
import type { RunRecord } from '../src/contract/runbook/types';
import { summarizeRun, type RunSummary } from '../src/contract/run-summary';

export interface RegionshiftSinks extends Sinks {
  regionshiftMetrics: { runEnded(summary: RunSummary): void };
}

const { regionshiftMetrics } = proxySinks<RegionshiftSinks>();

function isRunRecord(x: unknown): x is RunRecord {
  return (
    typeof x === 'object' &&
    x !== null &&
    Array.isArray((x as RunRecord).steps) &&
    typeof (x as RunRecord).kind === 'string'
  );
}

/** Step spans carry the times the record has; with no tracer provider in the sandbox they cost nothing. */
function stepSpans(summary: RunSummary, parent: ReturnType<typeof context.active>): void {
  const tracer = trace.getTracer('regionshift');
  for (const s of summary.steps) {
    const span = tracer.startSpan(
      `Step:${s.id}`,
      {
        startTime: s.startedMs,
        attributes: {
          'regionshift.step': s.id,
          'regionshift.action': s.action,
          'regionshift.status': s.status,
          'regionshift.service': summary.service,
          ...(s.region ? { 'regionshift.region': s.region } : {}),
        },
      },
      parent,
    );
    span.setStatus({ code: s.status === 'failed' ? SpanStatusCode.ERROR : SpanStatusCode.OK });
    span.end(s.endedMs);
  }
}

function report(result: unknown, failureType: string | undefined, parent: ReturnType<typeof context.active>): void {
  if (!isRunRecord(result)) return;
  // Metrics must never be why a run fails: whatever goes wrong here stays here.
  try {
    const summary = summarizeRun(result, failureType);
    stepSpans(summary, parent);
    regionshiftMetrics.runEnded(summary);
  } catch {
    // nothing to do: the run's own record is the audit trail, the metrics are a view of it
  }
}

class RunMetricsInbound implements WorkflowInboundCallsInterceptor {
  async execute(
    input: Parameters<NonNullable<WorkflowInboundCallsInterceptor['execute']>>[0],
    next: Parameters<NonNullable<WorkflowInboundCallsInterceptor['execute']>>[1],
  ): Promise<unknown> {
    if (workflowInfo().workflowType !== 'runbook') return next(input);
    const parent = context.active();
    try {
      const result = await next(input);
      report(result, undefined, parent);
      return result;
    } catch (err) {
      // A run that fails, aborts or is refused carries its record in the failure's details.
      if (err instanceof ApplicationFailure) report(err.details?.[0], err.type ?? undefined, parent);
      throw err;
    }
  }
}

export const interceptors: WorkflowInterceptorsFactory = () => ({ inbound: [new RunMetricsInbound()] });
