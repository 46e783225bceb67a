import { join } from 'node:path';
import { REPO_ROOT } from '../src/lib/paths';

export const WORKFLOWS_PATH = join(REPO_ROOT, 'workflows', 'index.ts');
export const WORKFLOW_BUNDLE = join(REPO_ROOT, 'dist', 'workflow-bundle.js');

/**
 * Workflow interceptors, outermost first: tracing (its RunWorkflow span is active while the run
 * metrics interceptor makes the step spans under it), then the run metrics. Baked into the bundle,
 * so every worker that runs the bundle must inject both sinks (workers/region.ts).
 */
export const WORKFLOW_INTERCEPTOR_MODULES = [
  require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors'),
  join(REPO_ROOT, 'workflows', 'interceptors.ts'),
];

/**
 * The same workflows with the run metrics interceptor only, for workers that export no spans: the
 * tracing interceptor would still load OpenTelemetry into every new run's sandbox and build spans
 * in every workflow task, only for a no-op exporter (a replay of a planned run: about a third of
 * its workflow-task time). Interceptors add headers, never commands, so both replay alike.
 */
export const WORKFLOW_BUNDLE_UNTRACED = join(REPO_ROOT, 'dist', 'workflow-bundle-untraced.js');
export const UNTRACED_INTERCEPTOR_MODULES = WORKFLOW_INTERCEPTOR_MODULES.slice(1);
