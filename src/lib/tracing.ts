// Traces (docs/observability.md): Temporal's OpenTelemetry interceptors on clients and workers,
// exported by OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set. One trace per run: the client's
// StartWorkflow span (or the run's RunWorkflow span when the client does not trace), under it
// a span per step (workflows/interceptors.ts) and per activity, scheduled and run.
import { context, propagation, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  NoopSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import {
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
  makeWorkflowExporter,
} from '@temporalio/interceptors-opentelemetry';
import type { ActivityInterceptorsFactory, InjectedSinks } from '@temporalio/worker';
import type { OpenTelemetryWorkflowExporter } from '@temporalio/interceptors-opentelemetry';

export interface Tracing {
  tracer: Tracer;
  spanProcessor: SpanProcessor;
  resource: Resource;
  /** Flushes what is buffered; a short-lived CLI calls it before it exits. */
  shutdown(): Promise<void>;
}

let globalsSet = false;

/**
 * The interceptors read the active context (to parent a span, to inject it into headers), which
 * needs a context manager that follows async calls, and W3C propagation; both are process-wide.
 */
function ensureGlobals(): void {
  if (globalsSet) return;
  globalsSet = true;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );
}

/**
 * Tracing for a process named `serviceName`: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, and/or the given processor (tests: an in-memory
 * exporter). Undefined when there is nowhere to send spans: then nothing is traced.
 */
export function startTracing(
  serviceName: string,
  extra?: SpanProcessor,
  env: NodeJS.ProcessEnv = process.env,
): Tracing | undefined {
  const processors: SpanProcessor[] = [];
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter()));
  if (extra) processors.push(extra);
  if (processors.length === 0) return undefined;
  ensureGlobals();
  const resource = new Resource({ 'service.name': serviceName });
  const provider = new BasicTracerProvider({ resource, spanProcessors: processors });
  // The workflow exporter sink hands workflow spans to this processor directly (not through the provider).
  const spanProcessor: SpanProcessor = processors.length === 1 ? processors[0]! : fanOut(processors);
  return { tracer: provider.getTracer('regionshift'), spanProcessor, resource, shutdown: () => provider.shutdown() };
}

function fanOut(ps: SpanProcessor[]): SpanProcessor {
  return {
    onStart: (span, ctx) => ps.forEach((p) => p.onStart(span, ctx)),
    onEnd: (span) => ps.forEach((p) => p.onEnd(span)),
    forceFlush: async () => void (await Promise.all(ps.map((p) => p.forceFlush()))),
    shutdown: async () => void (await Promise.all(ps.map((p) => p.shutdown()))),
  };
}

/** Client interceptors for a Connection's Client: the StartWorkflow span, and context in the headers. */
export function clientInterceptors(
  tracing: Tracing | undefined,
): { workflow: OpenTelemetryWorkflowClientInterceptor[] } | undefined {
  return tracing ? { workflow: [new OpenTelemetryWorkflowClientInterceptor({ tracer: tracing.tracer })] } : undefined;
}

export function activityInterceptors(tracing: Tracing | undefined): ActivityInterceptorsFactory[] {
  if (!tracing) return [];
  return [
    (ctx) => ({
      inbound: new OpenTelemetryActivityInboundInterceptor(ctx, { tracer: tracing.tracer }),
      outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
    }),
  ];
}

/**
 * The sink workflow spans leave the sandbox through. The workflow bundle always carries the
 * tracing interceptors (it is built once), so a worker that does not trace still needs the sink:
 * it drops the spans.
 */
export function workflowExporterSink(
  tracing: Tracing | undefined,
): InjectedSinks<{ exporter: OpenTelemetryWorkflowExporter }> {
  return {
    exporter: makeWorkflowExporter(
      tracing?.spanProcessor ?? new NoopSpanProcessor(),
      tracing?.resource ?? new Resource({}),
    ),
  };
}
