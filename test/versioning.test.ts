// Worker Versioning on a real dev server: two control workers of the regionshift-control
// deployment with the options every control worker uses (workers/versioning.ts), version A (the
// project's workflows) and version B (the same bundle with one more byte: another build id, as any
// code change makes). A runbook run started on A stays on A after B becomes current, to its end;
// the guardian moves to B at its next task; new runs start on B.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import type { Worker } from '@temporalio/worker';
import { Deliverer } from '../src/intake/deliver';
import { guardianWorkflowId } from '../src/contract/guardian/ids';
import type { AlarmSignal } from '../src/contract/guardian/types';
import { CONTROL_TASK_QUEUE, regionTaskQueue, runWorkflowId } from '../src/contract/runbook/ids';
import type { FenceResult } from '../src/contract/activities';
import { approveRun, awaitRecord, buildRunInput, runRecord, startRun } from '../src/lib/runs/client';
import { buildIdOf, CONTROL_DEPLOYMENT, controlDeploymentOptions, makeCurrentVersion } from '../workers/versioning';
import { runbookFromText } from './support/failover-env';
import { approverEntries, decisionActivities, signerFor } from './support/signing';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
import { waitFor } from './support/wait';
import { bundleCode } from './support/workflow-bundle';

const SERVICE = 'ledger';
const [WEST, EAST] = ['us-west-2', 'us-east-1'];
const GATE = runbookFromText('kind: failover\nsteps:\n  - {id: approval, approval: {reason: a person must approve}}\n');

let te: TemporalEnv;
let A: string;
let B: string;

/** A control worker of the deployment running `code`, under the build id its hash gives. */
async function startVersion(code: string): Promise<{ buildId: string; worker: Worker }> {
  const buildId = buildIdOf(code);
  const worker = await te.startWorker({
    taskQueue: CONTROL_TASK_QUEUE,
    workflowBundle: { code },
    workerDeploymentOptions: controlDeploymentOptions(buildId),
    activities: decisionActivities(te.config),
  });
  return { buildId, worker };
}

beforeAll(async () => {
  te = await createTemporalEnv(
    (address) =>
      paperConfig(address, [
        {
          name: SERVICE,
          regions: [WEST, EAST],
          policy: { approvalTimeout: '5m', approvers: approverEntries('carol') },
        },
      ]),
    { controlWorker: false },
  );
  A = (await startVersion(bundleCode(te.workflowBundle))).buildId;
  await makeCurrentVersion(te.connection, 'default', A);
  // B polls from the start (a rolling deploy's new worker), but is made current only in the test.
  B = (await startVersion(`// version B\n${bundleCode(te.workflowBundle)}`)).buildId;
});

afterAll(async () => {
  await te?.teardown();
});

/** Which build id completed each of the run's workflow tasks, and how it ran them. */
async function tasks(h: WorkflowHandle): Promise<string[]> {
  const events: temporal.api.history.v1.IHistoryEvent[] = (await h.fetchHistory()).events ?? [];
  return events.flatMap((e) => {
    const t = e.workflowTaskCompletedEventAttributes;
    return t ? [`${t.deploymentVersion?.buildId ?? '-'} ${String(t.versioningBehavior)}`] : [];
  });
}

async function versioningOf(h: WorkflowHandle): Promise<{ behavior: string; buildId: string }> {
  const info = (await h.describe()).raw.workflowExecutionInfo?.versioningInfo;
  return { behavior: String(info?.behavior), buildId: info?.deploymentVersion?.buildId ?? '-' };
}

/** A run that waits at its approval gate (carol may approve), started by `requestedBy`. */
async function gatedRun(requestedBy: string): Promise<{ run: WorkflowHandle; runId: string }> {
  const input = buildRunInput(te.config, GATE, {
    service: SERVICE,
    target: EAST,
    mode: 'planned',
    dryRun: false,
    requestedBy,
    trigger: 'test',
  });
  input.approval = { required: true, timeout: '5m', onTimeout: 'reject', approvers: ['carol'], quorum: 1 };
  const started = await startRun(te.client, input);
  expect(started.workflowId).toBe(runWorkflowId(SERVICE));
  const run = te.client.workflow.getHandle(started.workflowId, started.runId);
  await waitFor('the run at its gate', async () =>
    (await run.query<{ pendingApproval?: unknown }>('progress')).pendingApproval ? true : undefined,
  );
  return { run, runId: started.runId };
}

const PINNED = '1'; // temporal.api.enums.v1.VersioningBehavior
const AUTO_UPGRADE = '2';

describe("control workers are versions of one deployment, named by their bundle's hash", () => {
  it('a runbook run pinned to A finishes on A while B is current; the guardian moves to B; a new run starts on B', async () => {
    expect(A).toMatch(/^bundle-[0-9a-f]{16}$/);
    expect(B).not.toBe(A);
    const alarm = (): AlarmSignal => ({
      source: 'alertmanager',
      name: 'Warn',
      region: WEST,
      severity: 'warning',
      state: 'ALARM',
      at: Date.now(),
      receivedAt: Date.now(),
    });
    const deliverer = new Deliverer({ client: te.client, config: te.config, runbook: GATE });
    const guardian = te.client.workflow.getHandle(guardianWorkflowId(SERVICE));
    await deliverer.deliver(SERVICE, [alarm()]);
    await waitFor('the guardian on A', async () => ((await versioningOf(guardian)).buildId === A ? true : undefined));

    const { run, runId } = await gatedRun('alice');
    expect(await versioningOf(run)).toEqual({ behavior: PINNED, buildId: A });

    await makeCurrentVersion(te.connection, 'default', B);
    const d = await te.connection.workflowService.describeWorkerDeployment({
      namespace: 'default',
      deploymentName: CONTROL_DEPLOYMENT,
    });
    expect(d.workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId).toBe(B);

    // The run's next task (the approval) and all after it are A's, though B is current and polling.
    await approveRun(te.client, run.workflowId, { by: 'carol', decision: 'approve', reason: 'go' }, signerFor('carol'));
    expect((await awaitRecord(te.client, run.workflowId, runId)).status).toBe('succeeded');
    const firstTasks = await tasks(run);
    expect(firstTasks.length).toBeGreaterThan(1);
    expect(new Set(firstTasks)).toEqual(new Set([`${A} ${PINNED}`]));

    // The guardian follows the current version at its next task.
    await deliverer.deliver(SERVICE, [alarm()]);
    await waitFor('the guardian on B', async () => ((await versioningOf(guardian)).buildId === B ? true : undefined));
    expect(await versioningOf(guardian)).toEqual({ behavior: AUTO_UPGRADE, buildId: B });
    expect((await tasks(guardian)).at(-1)).toBe(`${B} ${AUTO_UPGRADE}`);

    const { run: next } = await gatedRun('bob');
    expect(await versioningOf(next)).toEqual({ behavior: PINNED, buildId: B });
    await next.terminate('test over');
    await guardian.terminate('test over');
  });

  it("a run whose version's workers are gone: its record says which run, its build, and how to end it, instead of a bare query failure", async () => {
    const C = await startVersion(`// version C\n${bundleCode(te.workflowBundle)}`);
    await makeCurrentVersion(te.connection, 'default', C.buildId);
    const { run, runId } = await gatedRun('alice');
    // A deploy removes C while the run is pinned to it.
    await makeCurrentVersion(te.connection, 'default', B);
    await C.worker.shutdown();
    try {
      const refused = await runRecord(te.client, run.workflowId).then(
        () => undefined,
        (err: Error) => err.message,
      );
      expect(refused).toMatch(
        new RegExp(
          `^${run.workflowId} \\(run ${runId}, started .*\\) is running, but no worker answered for it within 10 s`,
        ),
      );
      expect(refused).toContain(
        `It is pinned to build ${C.buildId}: start a control worker of that build, or end the run: temporal workflow terminate -w ${run.workflowId} -r ${runId}`,
      );
    } finally {
      await run.terminate('test over');
    }
  });

  it('the fence watcher, which may wait days for a region, moves to the current version at its next task', async () => {
    await makeCurrentVersion(te.connection, 'default', B);
    const watcher = await te.client.workflow.start('fenceWhenReachable', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: `regionshift-fence-${SERVICE}-${WEST}-${Date.now()}`,
      args: [{ service: SERVICE, region: WEST }],
    });
    // Its fence waits for us-west-2, whose worker is not up yet; meanwhile a deploy makes A current.
    await waitFor('the watcher on B', async () => ((await versioningOf(watcher)).buildId === B ? true : undefined));
    expect(await versioningOf(watcher)).toEqual({ behavior: AUTO_UPGRADE, buildId: B });
    await makeCurrentVersion(te.connection, 'default', A);
    const fence: FenceResult = {
      region: WEST,
      alreadyFenced: false,
      verified: true,
      lsn: '0/3000100',
      terminatedSessions: 0,
    };
    await te.startWorker({ taskQueue: regionTaskQueue(WEST), activities: { dbFenceWrites: async () => fence } });
    expect(await watcher.result()).toBe(`${WEST} fenced at 0/3000100`);
    expect((await tasks(watcher)).at(-1)).toBe(`${A} ${AUTO_UPGRADE}`);
  });
});
