// Unplanned failover: the primary region is gone (its PostgreSQL and its worker). Promotion
// without a verified fence needs an acknowledgement, and the old primary is fenced as soon as
// it answers again.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoute53Activities } from '../activities/traffic/route53';
import { psql, start, stop } from '../src/lib/postgres/node';
import { fenceOnReturnWorkflowId, runWorkflowId } from '../src/contract/runbook/ids';
import type { RunRecord } from '../src/contract/runbook/types';
import { approveRun, awaitRecord, startRun } from '../src/lib/runs/client';
import { primaryRegionOf } from '../src/contract/traffic/plan';
import { createFailoverEnv, SERVICE, type FailoverEnv } from './support/failover-env';
import { waitFor } from './support/wait';
import { describePickUpSeconds } from './support/describe-bounds';
import { signerFor } from './support/signing';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
let fe: FailoverEnv;

beforeAll(async () => {
  fe = await createFailoverEnv({
    approval: { planned: 'none', unplanned: 'none' },
    approvers: ['carol'],
    approvalTimeout: '3s',
    onApprovalTimeout: 'reject',
    allowDataLoss: false,
  });
  await psql(fe.pg.bin, fe.nodes[WEST]!, 'CREATE TABLE transfers(id uuid PRIMARY KEY); GRANT ALL ON transfers TO app;');
  for (let i = 0; i < 50; i++) await fe.appPool(WEST).query('INSERT INTO transfers VALUES ($1)', [randomUUID()]);
  // The region dies: its database without a clean shutdown, and its worker.
  await fe.stopRegion(WEST);
  await stop(fe.pg.bin, fe.nodes[WEST]!, 'immediate');
});

afterAll(async () => {
  await fe?.teardown();
});

const traffic = () => createRoute53Activities(fe.config).trafficDescribe({ service: SERVICE });

describe('unplanned failover', () => {
  it('refuses to promote without an acknowledgement when policy does not allow data loss', async () => {
    const started = await startRun(fe.client, fe.input({ target: EAST, mode: 'unplanned' }));
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('failed');
    expect(rec.source).toBe(WEST);
    expect(rec.fence).toMatchObject({ verified: false });
    expect(rec.steps.find((s) => s.id === 'fence')!.detail).toContain('source unreachable');
    expect(rec.steps.find((s) => s.id === 'promote')!.error).toMatch(/no approval within 3s .*could not be fenced/);
    expect(rec.approvals).toEqual([expect.objectContaining({ decision: 'timeout' })]);
    // The fence cannot be undone in a region that is down; the run says so instead of waiting.
    expect(rec.compensation!.notUndone.some((n) => n.startsWith(`unfence ${WEST}`))).toBe(true);
    // Nothing changed: the target is still a standby and traffic still points at the dead region.
    expect(await fe.isWritable(EAST)).toBe(false);
    expect(primaryRegionOf(await traffic())).toBe(WEST);
  });

  it('gives the source a person names (--from) a second to answer preflight, as a region found down', async () => {
    const input = fe.input({ target: EAST, mode: 'unplanned', source: WEST });
    expect(input.reportedDown).toBe(WEST);
    expect(fe.input({ target: EAST, mode: 'planned', source: WEST }).reportedDown).toBeUndefined();
    const started = await startRun(fe.client, input);
    const bounds = await waitFor('preflight to describe both regions', async () => {
      const b = await describePickUpSeconds(fe.client, started.workflowId, started.runId);
      return Object.keys(b).length === 2 ? b : undefined;
    });
    expect(bounds).toEqual({ [WEST]: 1, [EAST]: 3 });
    // Only the preflight was wanted here; the rest of such a run is the test above.
    await fe.client.workflow.getHandle(started.workflowId, started.runId).terminate('test: preflight seen');
  });

  it("promotes with a person's acknowledgement, records the RPO, and fences the old primary when it returns", async () => {
    const started = await startRun(fe.client, fe.input({ target: EAST, mode: 'unplanned', requestedBy: 'alice' }));
    const handle = fe.client.workflow.getHandle(runWorkflowId(SERVICE));
    await waitFor(
      'the data-loss approval',
      async () => (await handle.query<RunRecord>('progress')).pendingApproval?.stepId === 'promote',
    );
    const pending = (await handle.query<RunRecord>('progress')).pendingApproval!;
    expect(pending.reason).toContain(`${WEST} could not be fenced`);
    await expect(
      approveRun(
        fe.client,
        started.workflowId,
        { by: 'carol', decision: 'approve', reason: 'us-west-2 is down' },
        signerFor('carol'),
      ),
    ).resolves.toBe('approved by carol');

    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('succeeded');
    expect(rec.dataLossAck).toEqual({ by: 'carol', reason: 'us-west-2 is down' });
    expect(rec.rpo?.zeroLoss).toBe(false);
    expect(rec.reconcile).toMatchObject({ required: true, oldPrimary: WEST });
    expect(rec.steps.find((s) => s.id === 'rejoin')!.status).toBe('skipped');
    expect(rec.fenceOnReturn?.workflowId).toBe(fenceOnReturnWorkflowId(SERVICE, WEST));
    expect(await fe.isWritable(EAST)).toBe(true);
    expect(primaryRegionOf(await traffic())).toBe(EAST);
    // Every write the old primary acknowledged before it died had streamed: none is lost here.
    const count = await fe.appPool(EAST).query<{ n: string }>('SELECT count(*) AS n FROM transfers');
    expect(Number(count.rows[0]!.n)).toBeGreaterThanOrEqual(50);

    // The old primary comes back as it was: a writable primary. Its worker comes back too, and
    // the fence-on-return watcher makes it read-only.
    await start(fe.pg.bin, fe.nodes[WEST]!);
    await fe.startRegion(WEST);
    await waitFor('the returning old primary to be fenced', async () => !(await fe.isWritable(WEST)), 60_000);
    const watcher = await fe.client.workflow.getHandle(fenceOnReturnWorkflowId(SERVICE, WEST)).result();
    expect(watcher).toMatch(/^us-west-2 fenced at /);
  });
});
