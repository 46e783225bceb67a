// The failover runbook end to end on real parts: Temporal dev server, a PostgreSQL primary and
// streaming standby, Route 53 in moto, one worker per region. The test that proves one writer
// is "planned failover under continuous writes".
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRoute53Activities } from '../activities/traffic/route53';
import { postgresDatabase } from '../src/lib/config/schema';
import { startDemoApp } from '../src/demo/app';
import { ensureLedger, presentIds } from '../src/demo/ledger';
import { psql } from '../src/lib/postgres/node';
import { loadRunbook } from '../src/lib/runbooks';
import { runWorkflowId } from '../src/contract/runbook/ids';
import type { RunInput, RunRecord } from '../src/contract/runbook/types';
import { abortRun, approveRun, awaitRecord, InputError, RefusedError, startRun } from '../src/lib/runs/client';
import { primaryRegionOf } from '../src/contract/traffic/plan';
import { signerFor, sshKey } from './support/signing';
import { waitFor } from './support/wait';
import { createFailoverEnv, runbookFromText, SERVICE, type FailoverEnv } from './support/failover-env';

const WEST = 'us-west-2';
const EAST = 'us-east-1';

let fe: FailoverEnv;

beforeAll(async () => {
  fe = await createFailoverEnv({ approvers: ['carol', 'dave'] });
  await psql(
    fe.pg.bin,
    fe.nodes[WEST]!,
    `CREATE TABLE transfers(id uuid PRIMARY KEY, amount int NOT NULL, at timestamptz DEFAULT now());
    GRANT ALL ON transfers TO app;`,
  );
});

afterEach((ctx) => {
  // The servers' own words are the fastest way to a cause when a run fails here.
  if (ctx.task.result?.state !== 'fail') return;
  for (const node of Object.values(fe.nodes)) {
    const log = readFileSync(fe.pg.logOf(node), 'utf8').split('\n').slice(-15).join('\n');
    console.error(`--- ${node.region} postgres log (last lines) ---\n${log}`);
  }
});

afterAll(async () => {
  await fe?.teardown();
});

async function run(input: RunInput): Promise<RunRecord> {
  const started = await startRun(fe.client, input);
  return awaitRecord(fe.client, started.workflowId, started.runId);
}

async function traffic() {
  return createRoute53Activities(fe.config).trafficDescribe({ service: SERVICE });
}

async function progress(): Promise<RunRecord> {
  return fe.client.workflow.getHandle(runWorkflowId(SERVICE)).query<RunRecord>('progress');
}

describe('failover runbook', () => {
  it('refuses bad input before starting anything', () => {
    expect(() => fe.input({ target: 'eu-west-1' })).toThrow(InputError);
    expect(() => fe.input({ target: 'eu-west-1' })).toThrow(/unknown region "eu-west-1" for ledger/);
    expect(() => fe.input({ target: WEST, source: WEST })).toThrow(/source and target are both us-west-2/);
    expect(() => fe.input({ target: EAST, service: 'payments' })).toThrow(/unknown service "payments"/);
  });

  it('dry run: preflight and a plan with real values, and nothing changes', async () => {
    const before = await traffic();
    const rec = await run(fe.input({ target: EAST, dryRun: true }));
    expect(rec.status).toBe('succeeded');
    expect(rec.source).toBe(WEST);
    const fence = rec.plan!.find((p) => p.id === 'fence')!;
    expect(fence.taskQueue).toBe(`region.${WEST}`);
    expect(fence.values?.writerLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(rec.plan!.find((p) => p.id === 'shift-traffic')!.values).toEqual({
      before: `${WEST} 100, ${EAST} 0`,
      after: `${WEST} 0, ${EAST} 100`,
    });
    expect(rec.plan!.find((p) => p.id === 'fence-on-return')!.skip).toContain('unplanned');
    expect(await traffic()).toEqual(before);
    expect(await fe.isWritable(WEST)).toBe(true);
  });

  it('refuses a target that is already the writer, changing nothing', async () => {
    const rec = await run(fe.input({ target: WEST }));
    expect(rec.status).toBe('failed');
    expect(rec.error).toBe('us-west-2 is already the writer of ledger');
    expect(rec.steps.map((s) => s.status)).toEqual(['failed', ...Array(rec.steps.length - 1).fill('pending')]);
  });

  it('planned failover under continuous writes: one writer at every instant, no acknowledged write lost', async () => {
    const acked: string[] = [];
    const bothWritable: number[] = [];
    let stop = false;
    // The application: writes go wherever the traffic record points, as a client would resolve it.
    const load = (async () => {
      while (!stop) {
        const region = primaryRegionOf(await traffic())!;
        const id = randomUUID();
        try {
          await fe.appPool(region).query('INSERT INTO transfers(id, amount) VALUES ($1, 1)', [id]);
          acked.push(id);
        } catch {
          // refused by the fence or sent to a standby: not acknowledged, the client retries
        }
      }
    })();
    // The witness: tries a write on both regions over and over; both succeeding is two writers.
    const witness = (async () => {
      let tick = 0;
      while (!stop) {
        const [w, e] = await Promise.all([fe.isWritable(WEST), fe.isWritable(EAST)]);
        if (w && e) bothWritable.push(tick);
        tick++;
      }
      return tick;
    })();

    await waitFor('some writes before the failover', async () => (acked.length >= 20 ? true : undefined));
    const rec = await run(fe.input({ target: EAST }));
    const ackedAtEnd = acked.length;
    await waitFor('writes after the failover', async () => (acked.length >= ackedAtEnd + 20 ? true : undefined));
    stop = true;
    await load;
    const ticks = await witness;

    expect(rec.status).toBe('succeeded');
    expect(rec.steps.filter((s) => s.status === 'done').map((s) => s.id)).toEqual([
      'preflight',
      'fence',
      'confirm-lag',
      'promote',
      'shift-traffic',
      'verify',
      'rejoin',
    ]);
    expect(rec.fence).toMatchObject({ verified: true, alreadyFenced: false });
    expect(rec.rpo).toEqual({ zeroLoss: true, estimateSeconds: 0 });
    expect(rec.rtoMs).toBeGreaterThan(0);
    expect(ticks).toBeGreaterThan(10);
    expect(bothWritable).toEqual([]);
    // Every acknowledged write, before and after, is on the new primary.
    const present = await fe
      .appPool(EAST)
      .query<{ id: string }>('SELECT id FROM transfers WHERE id = ANY($1::uuid[])', [acked]);
    expect(present.rowCount).toBe(acked.length);
    // The old primary is a standby of the new one and refuses writes.
    expect(await fe.isWritable(WEST)).toBe(false);
    expect(rec.rejoin?.streamingFrom).toContain(String(fe.nodes[EAST]!.port));
    expect(primaryRegionOf(await traffic())).toBe(EAST);
  });

  it('two concurrent starts for one service: exactly one run, the other refused naming it', async () => {
    const hold = runbookFromText(
      'kind: failover\nsteps:\n  - {id: preflight, action: preflight}\n  - {id: hold, approval: {reason: held by the test}}\n',
    );
    const results = await Promise.allSettled([
      startRun(fe.client, fe.input({ target: WEST }, hold)),
      startRun(fe.client, fe.input({ target: WEST }, hold)),
    ]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(ok).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.reason).toBeInstanceOf(RefusedError);
    expect(String(refused[0]!.reason.message)).toContain(
      `ledger already has a run in progress: ${runWorkflowId(SERVICE)}`,
    );
    await waitFor('the approval gate', async () => ((await progress()).pendingApproval ? true : undefined));
    await abortRun(fe.client, runWorkflowId(SERVICE), { by: 'carol', reason: 'test over' }, signerFor('carol'));
    await expect(awaitRecord(fe.client, runWorkflowId(SERVICE))).resolves.toMatchObject({ status: 'aborted' });
  });

  it('approvals: the requester and strangers are refused, an approver is not', async () => {
    const gated = runbookFromText(
      [
        'kind: failover',
        'steps:',
        '  - {id: preflight, action: preflight}',
        '  - {id: approval, approval: {reason: change window}}',
      ].join('\n'),
    );
    const started = await startRun(fe.client, fe.input({ target: WEST, requestedBy: 'carol' }, gated));
    await waitFor('the approval gate', async () => ((await progress()).pendingApproval ? true : undefined));
    await expect(
      approveRun(fe.client, started.workflowId, { by: 'carol', decision: 'approve' }, signerFor('carol')),
    ).rejects.toThrow(/carol requested this run and cannot approve it/);
    await expect(
      approveRun(fe.client, started.workflowId, { by: 'mallory', decision: 'approve' }, signerFor('mallory')),
    ).rejects.toThrow(/mallory may not approve runs of ledger/);
    await expect(
      approveRun(fe.client, started.workflowId, { by: 'dave', decision: 'approve' }, signerFor('dave')),
    ).resolves.toBe('approved by dave');
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('succeeded');
    expect(rec.approvals).toEqual([expect.objectContaining({ by: 'dave', decision: 'approve' })]);
  });

  it('abort mid-run: compensation unfences and restores the DNS records as they were', async () => {
    const before = await traffic();
    const stopsAfterShift = runbookFromText(
      [
        'kind: failover',
        'steps:',
        '  - {id: preflight, action: preflight}',
        '  - {id: fence, action: db.fenceWrites}',
        '  - {id: shift-traffic, action: traffic.shift}',
        '  - {id: hold, approval: {reason: held by the test}}',
        '  - {id: confirm-lag, action: db.waitForLag}',
        '  - {id: promote, action: db.promote}',
      ].join('\n'),
    );
    const started = await startRun(fe.client, fe.input({ target: WEST }, stopsAfterShift));
    await waitFor('the hold after the shift', async () => ((await progress()).pendingApproval ? true : undefined));
    expect(await fe.isWritable(EAST)).toBe(false);
    expect(primaryRegionOf(await traffic())).toBe(WEST);

    await expect(
      abortRun(fe.client, started.workflowId, { by: 'carol', reason: 'wrong region' }, signerFor('carol')),
    ).resolves.toContain('abort requested by carol');
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('aborted');
    expect(rec.error).toBe('aborted by carol: wrong region');
    expect(rec.compensation!.undone).toHaveLength(2);
    expect(rec.compensation!.undone[0]).toContain('restore traffic');
    expect(rec.compensation!.undone[1]).toContain(`unfence ${EAST}`);
    expect(rec.compensation!.notUndone).toEqual([]);
    expect(await traffic()).toEqual(before);
    expect(await fe.isWritable(EAST)).toBe(true);
    expect(rec.steps.find((s) => s.id === 'promote')!.status).toBe('pending');
  });
});

describe('regionshift CLI against the same server', () => {
  const cli = join(__dirname, '..', 'bin', 'regionshift.js');
  let configFile: string;

  beforeAll(() => {
    configFile = join(mkdtempSync(join(tmpdir(), 'regionshift-cli-')), 'regionshift.yaml');
    writeFileSync(configFile, stringify(fe.config));
  });

  function cliRun(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn('node', [cli, ...args, '--config', configFile], {
      env: { ...process.env, TEMPORAL_ADDRESS: fe.config.temporal.address },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  }

  it('exits 2 with a JSON error naming the bad region, and starts nothing', async () => {
    const r = await cliRun('failover', '--service', 'ledger', '--to', 'eu-west-1', '--json');
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      error: { kind: 'bad input', message: 'unknown region "eu-west-1" for ledger; its regions: us-west-2, us-east-1' },
    });
  });

  it('exits 2 for an unknown service and a missing flag', async () => {
    expect((await cliRun('failover', '--service', 'payments', '--to', WEST)).stderr).toContain(
      'bad input: unknown service "payments"',
    );
    const missing = await cliRun('failover', '--service', 'ledger');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--service and --to are required');
  });

  it('plan --json renders the plan and changes nothing; status shows the latest run', async () => {
    const before = await traffic();
    const r = await cliRun('plan', '--service', 'ledger', '--to', WEST, '--json');
    expect(r.code).toBe(0);
    const rec = JSON.parse(r.stdout) as RunRecord & { uiUrl: string };
    expect(rec.dryRun).toBe(true);
    expect(rec.plan!.map((p) => p.id)).toContain('promote');
    expect(rec.uiUrl).toContain(`/workflows/${runWorkflowId(SERVICE)}/${rec.runId}`);
    expect(await traffic()).toEqual(before);
    const status = await cliRun('status', 'ledger', '--json');
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).runs[0]).toMatchObject({ runId: rec.runId, dryRun: true, status: 'succeeded' });
    // The run id the CLI printed finds the run; one no service has is bad input, and so is a run id
    // where a command acts on a service's current run.
    const byRun = await cliRun('status', rec.runId, '--json');
    expect(byRun.code, byRun.stderr).toBe(0);
    expect(JSON.parse(byRun.stdout).runs[0]).toMatchObject({ runId: rec.runId, service: SERVICE });
    const unknown = await cliRun('status', '01a24605-fc32-7cc7-90bd-c4de0381ee30');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(
      'bad input: no run 01a24605-fc32-7cc7-90bd-c4de0381ee30 among the runs of ledger (the server may have deleted it',
    );
    const approveRun = await cliRun('approve', rec.runId, '--by', 'carol', '--key', sshKey('carol').privateKey);
    expect(approveRun.code).toBe(2);
    expect(approveRun.stderr).toContain(
      `bad input: "${rec.runId}" is the id of one run; name its service (ledger): this acts on the service's current run`,
    );
  });

  it('exits 3 when there is nothing to approve', async () => {
    const r = await cliRun('approve', 'ledger', '--by', 'carol', '--key', sshKey('carol').privateKey);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^refused: /);
  });
});

// The application step on real parts: the shipped runbooks/ledger-failover.yaml (its tell-app
// step pointed at this test's application), the real region workers and PostgreSQL, and the
// demo's banking application (src/demo/app.ts), which writes only where it is told. Last in the
// file: it moves the writer back to us-west-2, which the CLI tests above take as the target.
describe("http.call in a real failover: the ledger's own runbook tells the banking application", () => {
  it("after promotion the application is told the new writer, with the run's Idempotency-Key, and its writes land in the new writer's database", async () => {
    const service = fe.config.services[0]!;
    expect(primaryRegionOf(await traffic()), 'the tests above left us-east-1 the writer').toBe(EAST);
    await ensureLedger(fe.nodes[EAST]!, postgresDatabase(service).regions[EAST]!.appUser);
    const app = await startDemoApp(service, { port: 0, primary: EAST, intervalMs: 20 });
    try {
      const shipped = readFileSync(join(__dirname, '..', 'runbooks', 'ledger-failover.yaml'), 'utf8');
      const file = join(mkdtempSync(join(tmpdir(), 'regionshift-ledger-runbook-')), 'ledger-failover.yaml');
      writeFileSync(file, shipped.replaceAll('http://127.0.0.1:8235/', `${app.url}/`));
      await waitFor('the application to write in us-east-1', async () => app.status().last?.region === EAST);

      const rec = await run(fe.input({ target: WEST }, loadRunbook(file)));
      expect(rec.status, rec.error).toBe('succeeded');
      const told = rec.steps.find((s) => s.id === 'tell-app')!;
      expect(told).toMatchObject({
        status: 'done',
        region: 'control',
        detail: `POST → 200: now writing to ${WEST} (was ${EAST})`,
      });
      const promoted = rec.steps.find((s) => s.id === 'promote')!;
      expect(Date.parse(told.startedAt!), 'told once the target took writes').toBeGreaterThanOrEqual(
        Date.parse(promoted.endedAt!),
      );

      const st = app.status();
      expect(st.primary).toBe(WEST);
      expect(st.told).toEqual([
        {
          key: `regionshift:${rec.runId}:tell-app`,
          primary: WEST,
          previous: EAST,
          run: rec.runId,
          at: expect.any(String),
        },
      ]);
      const after = await waitFor('a write of the application committed in us-west-2', async () => {
        const last = app.status().last;
        return last && last.region === WEST && Date.parse(last.at) > Date.parse(st.told[0]!.at) ? last : undefined;
      });
      expect([...(await presentIds(fe.nodes[WEST]!, [after.id]))]).toEqual([after.id]);
      expect(app.status().writes[EAST], 'it wrote in us-east-1 before').toBeGreaterThan(0);
    } finally {
      await app.close();
    }
  });
});
