// One webpack bundle of the workflow code per test run. test/global-setup.ts makes it before any
// file runs and names it in the environment; every rig's workers load it instead of bundling
// again, which cost seconds of CPU per test file on a 2-core machine.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  bundleWorkflowCode,
  Worker,
  type NativeConnection,
  type WorkerDeploymentOptions,
  type WorkerOptions,
} from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../../workers/bundle';
import { buildIdOf, controlDeploymentOptions, makeCurrentVersion, routedBuildId } from '../../workers/versioning';
import { waitFor } from './wait';

const BUNDLE_ENV = 'REGIONSHIFT_TEST_WORKFLOW_BUNDLE';

export type TestBundle = { codePath: string } | { code: string };

const noop = (): void => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: console.warn, error: console.error, log: noop };

/** The workflow code as the tests run it: the source, without the production interceptors (their sinks are the workers' concern). */
async function bundle(): Promise<string> {
  return (await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger })).code;
}

/** For vitest's global setup: bundles once, and returns what removes the file. */
export async function provideTestBundle(): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-bundle-'));
  const codePath = join(dir, 'workflows.js');
  writeFileSync(codePath, await bundle());
  process.env[BUNDLE_ENV] = codePath;
  return () => rmSync(dir, { recursive: true, force: true });
}

/** The run's bundle; a file run outside the global setup bundles its own. */
export async function testWorkflowBundle(): Promise<TestBundle> {
  const codePath = process.env[BUNDLE_ENV];
  return codePath ? { codePath } : { code: await bundle() };
}

/** The bundle's code, for a test that makes a variant of it. */
export function bundleCode(bundle: TestBundle): string {
  return 'code' in bundle ? bundle.code : readFileSync(bundle.codePath, 'utf8');
}

/**
 * A control worker of the test rigs runs as a version of the deployment and makes it current, as
 * `regionshift worker` does (workers/versioning.ts): the guardian declares AUTO_UPGRADE, which an
 * unversioned worker cannot run, and runs started while a version is current go to it.
 */
export async function startControlVersion(
  connection: NativeConnection,
  bundle: TestBundle,
  start: (options: { workerDeploymentOptions: WorkerDeploymentOptions }) => Promise<unknown>,
): Promise<string> {
  const buildId = buildIdOf(bundleCode(bundle));
  await start({ workerDeploymentOptions: controlDeploymentOptions(buildId) });
  await makeCurrentVersion(connection, 'default', buildId);
  return buildId;
}

/**
 * A control worker on a test's own task queue, in the version startControlVersion made current:
 * workflows that declare a versioning behaviour (the guardian, the fence and follow watchers) do
 * not run on an unversioned worker. Returns once the queue routes new workflows to that version;
 * a run started before would be queued unversioned, where no versioned worker takes it.
 */
export async function runInControlVersion(
  connection: NativeConnection,
  bundle: TestBundle,
  options: Omit<WorkerOptions, 'connection' | 'workflowBundle' | 'workerDeploymentOptions'>,
): Promise<{ worker: Worker; done: Promise<void> }> {
  const buildId = buildIdOf(bundleCode(bundle));
  const worker = await Worker.create({
    ...options,
    connection,
    workflowBundle: bundle,
    workerDeploymentOptions: controlDeploymentOptions(buildId),
  });
  const done = worker.run();
  try {
    await waitFor(
      `task queue ${options.taskQueue} to route to control version ${buildId}`,
      async () =>
        (await routedBuildId(connection.workflowService, options.namespace ?? 'default', options.taskQueue)) ===
        buildId,
    );
  } catch (err) {
    worker.shutdown();
    await done.catch(() => undefined);
    throw err;
  }
  return { worker, done };
}
