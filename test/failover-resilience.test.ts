// Durability: a region worker killed in the middle of a step, and the Temporal server restarted
// in the middle of a run. Both runs resume and finish, and no step takes effect twice.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { temporal } from '@temporalio/proto';
import { psql, type PgNode } from '../src/lib/postgres/node';
import { runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { approveRun, awaitRecord, startRun } from '../src/lib/runs/client';
import { createFailoverEnv, runbookFromText, SERVICE, type FailoverEnv } from './support/failover-env';
import { waitFor } from './support/wait';
import { signerFor } from './support/signing';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const CLI = join(__dirname, '..', 'bin', 'regionshift.js');
let fe: FailoverEnv;
let configFile: string;

beforeAll(async () => {
  fe = await createFailoverEnv({ approvers: ['carol'] });
  configFile = join(mkdtempSync(join(tmpdir(), 'regionshift-cfg-')), 'regionshift.yaml');
  writeFileSync(configFile, stringify(fe.config));
});

afterAll(async () => {
  await fe?.teardown();
});

/** A node's postmaster and its processes (stopped, anything the node serves waits). */
function postgresPids(node: PgNode): number[] {
  const postmaster = Number(readFileSync(join(node.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(postmaster)], { encoding: 'utf8' });
  return [
    postmaster,
    ...children
      .split('\n')
      .map(Number)
      .filter((pid) => pid > 0),
  ];
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone already (a backend that ended): nothing to stop or continue.
    }
  }
}

/** A region worker as its own process, as in production, so it can be killed outright. */
function spawnWorker(region: string): Promise<ChildProcess> {
  const child = spawn('node', [CLI, 'worker', '--region', region, '--no-control', '--config', configFile], {
    env: { ...process.env, TEMPORAL_ADDRESS: fe.config.temporal.address },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('regionshift worker ready')) resolve(child);
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`worker for ${region} exited with ${code}:\n${out}`)));
  });
}

async function progress(): Promise<RunRecord> {
  return fe.client.workflow.getHandle(runWorkflowId(SERVICE)).query<RunRecord>('progress');
}

describe('durability', () => {
  it('a region worker killed in the middle of a step: the run resumes and finishes once', async () => {
    await fe.stopRegion(WEST);
    let worker = await spawnWorker(WEST);
    const started = await startRun(fe.client, fe.input({ target: EAST }));
    // The rejoin step runs on the old primary's worker. Its database frozen (SIGSTOP) once the
    // promotion is done, the step cannot finish however fast the machine: the worker is killed
    // with it certainly in flight, then the database continues.
    await waitFor(
      'the promotion',
      async () => (await progress()).steps.find((s) => s.id === 'promote')!.status === 'done',
      30_000,
      20,
    );
    const frozen = postgresPids(fe.nodes[WEST]!);
    signalAll(frozen, 'SIGSTOP');
    try {
      const handle = fe.client.workflow.getHandle(started.workflowId, started.runId);
      await waitFor('the rejoin to be running on the worker', async () =>
        (await handle.describe()).raw.pendingActivities?.some(
          (a) =>
            a.activityType?.name === 'dbRejoinAsStandby' &&
            a.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        ),
      );
      process.kill(-worker.pid!, 'SIGKILL');
    } finally {
      signalAll(frozen, 'SIGCONT');
    }
    worker = await spawnWorker(WEST);
    try {
      const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
      expect(rec.status).toBe('succeeded');
      expect(rec.rejoin?.streamingFrom).toContain(String(fe.nodes[EAST]!.port));
      // One promotion (timeline 1 → 2), one fence: nothing took effect twice.
      expect(rec.promotion).toMatchObject({ promoted: true, timeline: 2 });
      expect(rec.fence).toMatchObject({ alreadyFenced: false, verified: true });
      const history = await fe.client.workflow.getHandle(started.workflowId, started.runId).fetchHistory();
      const scheduled = (type: string) =>
        history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === type).length;
      expect(scheduled('dbPromoteAfterLag')).toBe(1);
      expect(scheduled('dbFenceWrites')).toBe(1);
      // The rejoin was retried after the kill: its completed attempt is not the first.
      const rejoinStarted = history.events!.find(
        (e) =>
          e.activityTaskStartedEventAttributes &&
          history.events!.some(
            (s) =>
              s.eventId?.toString() === e.activityTaskStartedEventAttributes!.scheduledEventId?.toString() &&
              s.activityTaskScheduledEventAttributes?.activityType?.name === 'dbRejoinAsStandby',
          ),
      );
      expect(rejoinStarted!.activityTaskStartedEventAttributes!.attempt).toBeGreaterThanOrEqual(2);
      expect(await psql(fe.pg.bin, fe.nodes[WEST]!, 'SELECT pg_is_in_recovery()')).toContain('t');
    } finally {
      process.kill(-worker.pid!, 'SIGTERM');
      await fe.startRegion(WEST);
    }
  });

  it('the Temporal server restarted mid-run (same SQLite file): the run resumes', async () => {
    const held = runbookFromText(
      [
        'kind: failover',
        'steps:',
        '  - {id: preflight, action: preflight}',
        '  - {id: hold, approval: {reason: held across a server restart}}',
        '  - {id: fence, action: db.fenceWrites}',
        '  - {id: confirm-lag, action: db.waitForLag}',
        '  - {id: promote, action: db.promote}',
        '  - {id: shift-traffic, action: traffic.shift}',
        '  - {id: verify, action: app.verifyWrites}',
      ].join('\n'),
    );
    const started = await startRun(fe.client, fe.input({ target: WEST }, held));
    await waitFor('the hold', async () => (await progress()).pendingApproval !== undefined);
    await fe.restartTemporal();
    await waitFor(
      'the run to answer after the restart',
      async () => (await progress()).pendingApproval?.stepId === 'hold',
    );
    await approveRun(fe.client, started.workflowId, { by: 'carol', decision: 'approve' }, signerFor('carol'));
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('succeeded');
    expect(rec.runId).toBe(started.runId);
    expect(rec.promotion?.promoted).toBe(true);
  });
});
