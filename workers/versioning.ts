// Worker Versioning for the control task queue. Every control worker belongs to one Worker
// Deployment; its version's build id is the hash of the workflow bundle it runs, so two workers
// share a version exactly when they would replay a history the same way. A runbook run is PINNED
// to the version it started on (a rolling deploy mid-incident never hands its next step to other
// code); the guardian, which lives for weeks, and the watchers that wait for a region to answer
// move to the current version at their next task (AUTO_UPGRADE, set in workflows/guardian.ts and
// workflows/actions.ts), so their changes need patched().
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { temporal } from '@temporalio/proto';
import type { NativeConnection, WorkerDeploymentOptions } from '@temporalio/worker';
import { bundleWorkflowCode } from '@temporalio/worker';
import { WORKFLOW_BUNDLE, WORKFLOW_BUNDLE_UNTRACED, WORKFLOW_INTERCEPTOR_MODULES, WORKFLOWS_PATH } from './bundle';

/** The Worker Deployment every control worker is a version of. */
export const CONTROL_DEPLOYMENT = 'regionshift-control';

/** A build id from the bundle's bytes: same code, same id, whichever machine built it. */
export function buildIdOf(code: string): string {
  return `bundle-${createHash('sha256').update(code).digest('hex').slice(0, 16)}`;
}

export interface VersionedBundle {
  workflowBundle: { code: string };
  buildId: string;
}

const noop = (): void => undefined;

/**
 * The prebuilt bundle when `npm run build` made one, else the source bundled now; with its build id.
 * A worker without tracing runs the untraced bundle under the traced one's build id: the two differ
 * only by an interceptor, which adds headers, never commands, so they replay alike and are one
 * version (regions with and without tracing must not split a deployment into two).
 */
export async function controlBundle(traced = true): Promise<VersionedBundle> {
  const canonical = existsSync(WORKFLOW_BUNDLE)
    ? readFileSync(WORKFLOW_BUNDLE, 'utf8')
    : (
        await bundleWorkflowCode({
          workflowsPath: WORKFLOWS_PATH,
          workflowInterceptorModules: WORKFLOW_INTERCEPTOR_MODULES,
          logger: { trace: noop, debug: noop, info: noop, warn: console.warn, error: console.error, log: noop },
        })
      ).code;
  const code =
    !traced && existsSync(WORKFLOW_BUNDLE_UNTRACED) ? readFileSync(WORKFLOW_BUNDLE_UNTRACED, 'utf8') : canonical;
  return { workflowBundle: { code }, buildId: buildIdOf(canonical) };
}

export function controlDeploymentOptions(buildId: string): WorkerDeploymentOptions {
  // PINNED by default: every workflow on the control queue but the guardian, its health watcher
  // and the fence and follow watchers, which say AUTO_UPGRADE themselves.
  return {
    version: { deploymentName: CONTROL_DEPLOYMENT, buildId },
    useWorkerVersioning: true,
    defaultVersioningBehavior: 'PINNED',
  };
}

/**
 * Makes the version the deployment's current one, so new runs start on it. The server learns of a
 * version from its first poll, so until then the call is refused: retried until `timeoutMs`.
 */
export async function makeCurrentVersion(
  connection: NativeConnection,
  namespace: string,
  buildId: string,
  timeoutMs = 30_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const d = await connection.workflowService
        .describeWorkerDeployment({ namespace, deploymentName: CONTROL_DEPLOYMENT })
        .catch(() => undefined);
      if (d?.workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId === buildId) return;
      await connection.workflowService.setWorkerDeploymentCurrentVersion({
        namespace,
        deploymentName: CONTROL_DEPLOYMENT,
        buildId,
        identity: `regionshift-worker ${buildId}`,
      });
      return;
    } catch (err) {
      if (Date.now() > until) {
        throw new Error(
          `could not make ${CONTROL_DEPLOYMENT} version ${buildId} current in namespace ${namespace} within ${timeoutMs} ms: ${(err as Error).message}`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * The build id a task queue routes new workflows to, as matching has it (no deployment workflow
 * is asked); undefined while the queue has no current version.
 */
export async function routedBuildId(
  workflowService: temporal.api.workflowservice.v1.WorkflowService,
  namespace: string,
  taskQueue: string,
): Promise<string | undefined> {
  const d = await workflowService.describeTaskQueue({
    namespace,
    taskQueue: { name: taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  return d.versioningInfo?.currentDeploymentVersion?.buildId ?? undefined;
}
