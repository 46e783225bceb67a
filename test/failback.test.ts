// Failback on real parts: after an unplanned failover and its reconciliation, `failback` is
// refused while cases are open; once they are decided it brings the old primary back as a
// standby (pg_rewind), switches over to it with no loss under a write load, and restores the
// traffic records to what they were before the failover.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoute53Activities } from '../activities/traffic/route53';
import { startWriteLoad, type WriteLoad } from '../src/demo/load';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import type { RunRecord } from '../src/contract/runbook/types';
import type { CaseAction } from '../src/contract/reconcile';
import { awaitRecord, RefusedError, startRun } from '../src/lib/runs/client';
import { buildFollowUpInput, listCases, resolveCase } from '../src/lib/runs/reconcile';
import type { TrafficState } from '../src/contract/activities';
import { createFailoverEnv, type FailoverEnv } from './support/failover-env';
import { badBalances, EAST, journalHas, makeDivergence, sql, WEST, type DivergenceRun } from './support/divergence';
import { waitFor } from './support/wait';
import { signerFor } from './support/signing';

let fe: FailoverEnv;
let d: DivergenceRun;
let trafficBefore: TrafficState;
let load: WriteLoad | undefined;

async function run(kind: 'reconcile' | 'failback', overrideReason?: string): Promise<RunRecord> {
  const input = await buildFollowUpInput(fe.client, fe.config, loadRunbook(builtinRunbookPath(kind)), {
    service: 'ledger',
    requestedBy: 'alice',
    trigger: 'test',
    ...(overrideReason ? { overrideReason } : {}),
  });
  const started = await startRun(fe.client, input);
  return awaitRecord(fe.client, started.workflowId, started.runId);
}

const traffic = () => createRoute53Activities(fe.config).trafficDescribe({ service: 'ledger' });
const weights = (t: TrafficState) => Object.fromEntries(t.records.map((r) => [r.region, r.weight]));

beforeAll(async () => {
  fe = await createFailoverEnv({
    approval: { planned: 'none', unplanned: 'none' },
    allowDataLoss: true,
    rpoBudgetSeconds: 600,
  });
  trafficBefore = await traffic();
  d = await makeDivergence(fe, { engineered: true });
  await d.load.stop();
  const rec = await run('reconcile');
  expect(rec.status, rec.error).toBe('succeeded');
}, 240_000);

afterAll(async () => {
  await load?.stop();
  await d?.load.stop();
  await fe?.teardown();
});

describe('failback', () => {
  it('is refused while reconciliation cases are open, and changes nothing', async () => {
    const open = await listCases(fe.client, fe.config, { service: 'ledger' });
    expect(open.length).toBeGreaterThan(0);
    const rec = await run('failback');
    expect(rec.status).toBe('failed');
    const check = rec.steps.find((s) => s.id === 'check-reconciliation')!;
    expect(check.status).toBe('failed');
    expect(check.error).toContain(`${open.length} reconciliation case(s) open`);
    expect(check.error).toContain('--override-reason');
    expect(rec.steps.filter((s) => s.status === 'done')).toEqual([]);
    // The old primary is still the read-only holder of its own timeline; the new one still writes.
    const west = (
      await sql<{ rec: boolean; ro: string }>(
        fe,
        WEST,
        "SELECT pg_is_in_recovery() AS rec, current_setting('default_transaction_read_only') AS ro",
      )
    )[0]!;
    expect(west).toEqual({ rec: false, ro: 'on' });
    expect(await fe.isWritable(EAST)).toBe(true);
    expect(weights(await traffic())).toEqual({ [WEST]: 0, [EAST]: 100 });
  });

  it('cases are decided by a person (recorded), then failback restores topology and weights with zero loss', async () => {
    for (const c of await listCases(fe.client, fe.config, { service: 'ledger' })) {
      const action: CaseAction = c.proposals.compensate ? 'compensate' : c.proposals.accept ? 'accept' : 'reject';
      const res = await resolveCase(
        fe.client,
        fe.config,
        { service: 'ledger', caseId: c.id, by: 'carol', action, note: 'decided in the failback test' },
        signerFor('carol'),
      );
      expect(res.changed).toBe(true);
      expect(res.case).toMatchObject({ status: 'resolved', resolution: action, resolvedBy: 'carol' });
    }
    expect(await listCases(fe.client, fe.config, { service: 'ledger' })).toEqual([]);
    expect(await badBalances(fe, EAST)).toEqual([]);

    // The application keeps writing through the switchover.
    load = startWriteLoad(fe.config, fe.config.services[0]!, { clients: 3, retryPauseMs: 20 });
    const since = Date.now();
    expect(await load.waitForAck(EAST, since, 15_000)).toBeTruthy();
    const rec = await run('failback');
    expect(rec.status, rec.error).toBe('succeeded');
    expect(rec.kind).toBe('failback');
    expect(rec.source).toBe(EAST);
    expect(rec.target).toBe(WEST);
    expect(rec.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual([
      'check-reconciliation',
      'preflight',
      'rejoin-old-primary',
      'fence',
      'confirm-lag',
      'promote',
      'restore-traffic',
      'verify',
      'rejoin',
    ]);
    expect(rec.failback!.oldPrimaryRejoin).toMatchObject({ region: WEST, rejoined: true, rewound: true });
    expect(rec.failback!.override).toBeUndefined();
    expect(rec.rpo).toMatchObject({ zeroLoss: true });
    expect(await load.waitForAck(WEST, Date.now(), 15_000), 'writes are accepted in us-west-2 again').toBeTruthy();
    await load.stop();

    // Zero loss: everything us-east-1 acknowledged during the switchover is in us-west-2.
    const eastAcks = load.ackedBy(EAST, since).map((a) => a.id);
    expect(eastAcks.length).toBeGreaterThan(0);
    const present = await journalHas(fe, WEST, eastAcks);
    expect(eastAcks.filter((id) => !present.has(id))).toEqual([]);

    // Topology and traffic as before the failover.
    expect(weights(await traffic())).toEqual(weights(trafficBefore));
    expect(await traffic()).toEqual(trafficBefore);
    await waitFor(
      'us-east-1 streaming from us-west-2',
      async () => {
        const r = await sql<{ rec: boolean; up: string | null }>(
          fe,
          EAST,
          `SELECT pg_is_in_recovery() AS rec, (SELECT sender_port::text FROM pg_stat_wal_receiver WHERE status = 'streaming') AS up`,
        );
        return r[0]!.rec && r[0]!.up === String(fe.nodes[WEST]!.port);
      },
      30_000,
    );
    expect(await fe.isWritable(WEST)).toBe(true);
    expect(await fe.isWritable(EAST)).toBe(false);
    // The reconciled history came back with it: what us-west-2 lost is there, once.
    const lost = d
      .acked()
      .filter((a) => a.region === WEST)
      .map((a) => a.id);
    const back = await journalHas(fe, WEST, lost);
    expect(lost.filter((id) => !back.has(id))).toEqual([]);
    expect(await badBalances(fe, WEST)).toEqual([]);
  });

  it('a second failback of the same failover is refused', async () => {
    await expect(run('failback')).rejects.toThrow(RefusedError);
    await expect(run('failback')).rejects.toThrow(/already failed back/);
  });
});
