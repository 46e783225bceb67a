import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../src/paths';

export const WORKFLOWS_PATH = join(REPO_ROOT, 'workflows', 'index.ts');
export const WORKFLOW_BUNDLE = join(REPO_ROOT, 'dist', 'workflow-bundle.js');

/**
 * Workflow interceptors, outermost first: tracing (its RunWorkflow span is active while the run
 * metrics interceptor makes the step spans under it), then the run metrics. Baked into the bundle,
 * so every worker that runs the bundle must inject both sinks (workers/region.ts).
 */
export const WORKFLOW_INTERCEPTOR_MODULES = [
  require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors'),
  join(REPO_ROOT, 'src', 'metrics', 'workflow-interceptors.ts'),
];

/** The same workflows with the run metrics interceptor only, for workers that export no spans. */
export const WORKFLOW_BUNDLE_UNTRACED = join(REPO_ROOT, 'dist', 'workflow-bundle-untraced.js');
export const UNTRACED_INTERCEPTOR_MODULES = WORKFLOW_INTERCEPTOR_MODULES.slice(1);

/**
 * Prebuilt bundle when `npm run build` made one, else the source (bundled at start, slower).
 * A worker without tracing takes the untraced bundle: the tracing interceptor would still load
 * OpenTelemetry into every new run's sandbox and build spans in every workflow task, only for a
 * no-op exporter (a replay of a planned run: about a third of its workflow-task time). Interceptors
 * add headers, never commands, so a run moves between the two kinds of worker and replays alike.
 */
export function workflowSource(traced = true): { workflowBundle: { codePath: string } } | { workflowsPath: string; workflowInterceptorModules: string[] } {
  const bundle = traced ? WORKFLOW_BUNDLE : WORKFLOW_BUNDLE_UNTRACED;
  return existsSync(bundle)
    ? { workflowBundle: { codePath: bundle } }
    : { workflowsPath: WORKFLOWS_PATH, workflowInterceptorModules: traced ? WORKFLOW_INTERCEPTOR_MODULES : UNTRACED_INTERCEPTOR_MODULES };
}
