// Application steps in a run (workflows/app-steps.ts): http.call against a real HTTP server
// (node:http, in this test) and the example plugin (activities/plugins/example.ts) writing a real
// file, through the real interpreter on a real Temporal dev server. The database and traffic
// activities are the rules rig's stubs (test/support/stub-activities.ts): their providers are
// tested on real parts elsewhere; the subject here is what the run does with the new steps: the
// order of calls (nothing fenced after a failed pre-step, compensation in reverse), which the stubs'
// call log shows directly and real parts only through their end state. The same step in a real
// failover (real region workers, PostgreSQL, the demo's banking application) is the last test of
// test/failover.test.ts; its Slack buttons are tested in test/slack.test.ts.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { createHttpActivities } from '../activities/http';
import { dataConverterFromEnv } from '../src/lib/codec/env';
import { loadPlugins, pluginActivities, type PluginRegistry } from '../src/lib/plugins';
import { runWorkflowId } from '../src/contract/runbook/ids';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import type { RunbookDoc, RunRecord } from '../src/contract/runbook/types';
import { abortRun, buildRunInput, operateRun, RefusedError } from '../src/lib/runs/client';
import { runMessage, STEP_ACTION } from '../src/slack/blocks';
import { FAILURE, type runbook as runbookWorkflow } from '../workflows/runbook';
import { approverEntries, decisionActivities, signerFor } from './support/signing';
import { outcome, runStubRegions, StubFleet } from './support/stub-activities';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
import { freePort } from './support/ports';
import { waitFor } from './support/wait';

const EXAMPLE = join(__dirname, '..', 'activities', 'plugins', 'example.ts');
const dir = mkdtempSync(join(tmpdir(), 'rs-app-steps-'));
const TOKEN_ENV = 'RS_TEST_APP_HOOK_TOKEN';
const TOKEN = `tok-${Math.random().toString(36).slice(2)}`;

let te: TemporalEnv;
let plugins: PluginRegistry;

// --- a small application: answers what each test scripts, and keeps every request ---------------

interface Seen {
  path: string;
  method: string;
  headers: IncomingMessage['headers'];
  body: string;
}
const seen: Seen[] = [];
/** Per path: the statuses (and bodies) to answer, in order; the last one repeats. */
const script = new Map<string, { status: number; body: string }[]>();
let server: Server;
let appUrl: string;

beforeAll(async () => {
  process.env[TOKEN_ENV] = TOKEN;
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const path = req.url ?? '/';
      seen.push({ path, method: req.method ?? '', headers: req.headers, body });
      const answers = script.get(path) ?? [{ status: 200, body: 'ok' }];
      const a = answers.length > 1 ? answers.shift()! : answers[0]!;
      res.writeHead(a.status, { 'content-type': 'text/plain' }).end(a.body);
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  appUrl = `http://127.0.0.1:${port}`;
  [te, plugins] = await Promise.all([
    createTemporalEnv((address) => paperConfig(address, [{ name: 'unused', regions: ['us-west-1', 'us-east-1'] }])),
    loadPlugins([{ module: EXAMPLE }]),
  ]);
});

afterAll(async () => {
  delete process.env[TOKEN_ENV];
  await te?.teardown();
  await new Promise((r) => server?.close(r));
});

// --- a rig per test (the rules rig's shape: own service, regions and task queues) ---------------

let serial = 0;

async function rig(ctx: TestContext, name: string) {
  const n = ++serial;
  const service = `${name}-${n}`;
  const [source, target] = [`us-west-${n}`, `us-east-${n}`];
  const fleet = new StubFleet(service, source, target);
  const config = paperConfig(te.address, [
    {
      name: service,
      regions: [source, target],
      policy: { approvers: approverEntries('carol'), approvalTimeout: '1m' },
    },
  ]);
  const taskQueue = `app-steps.${service}`;
  const workflowId = runWorkflowId(service);
  // As workers/region.ts registers them: http.call and every plugin step, on each region and on control.
  const appSteps = pluginActivities(plugins);
  const stopRegions = await runStubRegions(te.connection, fleet, (region) => ({
    ...createHttpActivities(region),
    ...appSteps,
  }));
  const worker = await Worker.create({
    connection: te.connection,
    taskQueue,
    workflowBundle: te.workflowBundle,
    workflowThreadPoolSize: 1,
    dataConverter: dataConverterFromEnv(),
    activities: { ...decisionActivities(config), ...createHttpActivities('control'), ...appSteps },
  });
  const done = worker.run();
  ctx.onTestFinished(async () => {
    await te.client.workflow
      .getHandle(workflowId)
      .terminate('test over')
      .catch(() => undefined);
    worker.shutdown();
    await Promise.allSettled([done, stopRegions()]);
  });
  return {
    service,
    source,
    target,
    fleet,
    workflowId,
    start: (runbook: RunbookDoc) =>
      te.client.workflow.start<typeof runbookWorkflow>('runbook', {
        taskQueue,
        workflowId,
        args: [
          buildRunInput(config, runbook, {
            service,
            target,
            mode: 'planned',
            dryRun: false,
            requestedBy: 'alice',
            trigger: 'test',
          }),
        ],
      }),
    progress: () => te.client.workflow.getHandle(workflowId).query<RunRecord>('progress'),
  };
}

/** The shipped failover runbook with steps inserted before the fence and after verify, loaded as the CLI would. */
function runbookWith(name: string, pre: string, post = ''): RunbookDoc {
  const file = join(dir, `${name}.yaml`);
  let text = readFileSync(builtinRunbookPath('failover'), 'utf8').replace('  - id: fence\n', `${pre}\n  - id: fence\n`);
  if (post) text = text.replace('  - id: repoint-standbys\n', `${post}\n  - id: repoint-standbys\n`);
  writeFileSync(file, text);
  return loadRunbook(file, { plugins });
}

const hook = (id: string, path: string, extra = '') => `  - id: ${id}
    action: http.call
    params:
      url: "${appUrl}${path}"
      body: { service: "{{service}}", from: "{{source}}", to: "{{target}}", mode: "{{mode}}", run: "{{runId}}" }
      bearerTokenEnv: ${TOKEN_ENV}
      retries: 1${extra}`;

describe.concurrent('http.call', () => {
  it('a 503 is retried once with the same Idempotency-Key; the token comes from the worker, never the history', async (ctx) => {
    const r = await rig(ctx, 'hook-retry');
    const path = `/drain-writes/${r.service}`;
    script.set(path, [
      { status: 503, body: 'warming up' },
      { status: 202, body: 'draining\nsecond line' },
    ]);
    const handle = await r.start(runbookWith(`retry-${r.service}`, hook('tell-app', path)));
    const { rec, result } = await outcome(handle);
    expect(result).toBe('succeeded');
    const calls = seen.filter((s) => s.path === path);
    expect(calls).toHaveLength(2);
    expect(calls[0]!.headers['idempotency-key']).toBe(`regionshift:${rec.runId}:tell-app`);
    expect(calls[1]!.headers['idempotency-key']).toBe(calls[0]!.headers['idempotency-key']);
    expect(calls[1]!.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(JSON.parse(calls[1]!.body)).toEqual({
      service: r.service,
      from: r.source,
      to: r.target,
      mode: 'planned',
      run: rec.runId,
    });
    expect(rec.steps.find((s) => s.id === 'tell-app')).toMatchObject({
      status: 'done',
      region: r.target,
      detail: 'POST → 202 (attempt 2): draining',
    });
    // Before the fence, as the runbook put it.
    expect(r.fleet.log('dbFenceWrites')).toEqual([`${r.source}.dbFenceWrites`]);
    const history = JSON.stringify((await handle.fetchHistory()).events);
    expect(history).not.toContain(TOKEN);
  });

  it("a 4xx fails the step with the response's first line, is not retried, and a failed pre-step stops the run before the fence", async (ctx) => {
    const r = await rig(ctx, 'hook-refused');
    const path = `/drain-writes/${r.service}`;
    script.set(path, [{ status: 409, body: 'primary is pinned by change CHG-42\nsee the runbook' }]);
    const { rec, result } = await outcome(await r.start(runbookWith(`refused-${r.service}`, hook('tell-app', path))));
    expect(result).toBe(FAILURE.failed);
    expect(seen.filter((s) => s.path === path)).toHaveLength(1);
    expect(rec.steps.find((s) => s.id === 'tell-app')).toMatchObject({
      status: 'failed',
      error: `POST ${appUrl}${path} answered 409: primary is pinned by change CHG-42`,
    });
    expect(rec.steps.find((s) => s.id === 'fence')!.status).toBe('pending');
    expect(r.fleet.callsTo('dbFenceWrites')).toEqual([]);
    expect(r.fleet.callsTo('dbPromote')).toEqual([]);
  });

  it('a failed post-step fails the run, and what the run did is compensated as usual', async (ctx) => {
    const r = await rig(ctx, 'hook-post');
    const path = `/announce/${r.service}`;
    script.set(path, [{ status: 500, body: 'database of the app is read-only' }]);
    const { rec, result } = await outcome(
      await r.start(runbookWith(`post-${r.service}`, '', hook('announce', path).replace('retries: 1', 'retries: 0'))),
    );
    expect(result).toBe(FAILURE.failed);
    expect(rec.error).toBe(`POST ${appUrl}${path} answered 500: database of the app is read-only`);
    expect(r.fleet.log('trafficShift', 'trafficRestore', 'dbUnfenceWrites')).toEqual([
      `${r.target}.trafficShift`,
      `${r.target}.trafficRestore`,
      `${r.source}.dbUnfenceWrites`,
    ]);
    expect(rec.compensation!.notUndone).toEqual([expect.stringContaining(`promote ${r.target}`)]);
  });
});

describe.concurrent('the example plugin (custom.primary-env-file)', () => {
  const step = (id: string, file: string) => `  - id: ${id}
    action: custom.primary-env-file
    params:
      path: ${file}
      variable: BANKING_PRIMARY_REGION`;

  it("runs on the target's worker and writes the new primary into the application's env file", async (ctx) => {
    const r = await rig(ctx, 'plugin-run');
    const file = join(dir, `${r.service}.env`);
    writeFileSync(file, `LOG_LEVEL=info\nBANKING_PRIMARY_REGION=${r.source}\n`);
    const { rec, result } = await outcome(
      await r.start(runbookWith(`plugin-${r.service}`, '', step('app-primary', file))),
    );
    expect(result).toBe('succeeded');
    expect(readFileSync(file, 'utf8')).toBe(`LOG_LEVEL=info\nBANKING_PRIMARY_REGION=${r.target}\n`);
    expect(rec.steps.find((s) => s.id === 'app-primary')).toMatchObject({
      status: 'done',
      region: r.target,
      title: plugins.get('custom.primary-env-file')!.summary,
      detail: `BANKING_PRIMARY_REGION=${r.target} in ${file} (was ${r.source})`,
    });
  });

  it('an abort after it compensates it: the env file holds the old primary again', async (ctx) => {
    const r = await rig(ctx, 'plugin-abort');
    const file = join(dir, `${r.service}.env`);
    writeFileSync(file, `BANKING_PRIMARY_REGION=${r.source}\n`);
    const hold = `  - id: hold\n    approval:\n      reason: look at the application before the rejoin`;
    await r.start(runbookWith(`plugin-abort-${r.service}`, '', `${step('app-primary', file)}\n${hold}`));
    await waitFor('the run to wait at the hold', async () => (await r.progress()).pendingApproval?.stepId === 'hold');
    expect(readFileSync(file, 'utf8')).toBe(`BANKING_PRIMARY_REGION=${r.target}\n`);
    await abortRun(
      te.client,
      r.workflowId,
      { by: 'carol', reason: 'the application is not ready' },
      signerFor('carol'),
    );
    const { rec, result } = await outcome(te.client.workflow.getHandle(r.workflowId));
    expect(result).toBe(FAILURE.aborted);
    expect(readFileSync(file, 'utf8')).toBe(`BANKING_PRIMARY_REGION=${r.source}\n`);
    expect(rec.compensation!.undone).toContain(
      `undo custom.primary-env-file in ${r.target}: BANKING_PRIMARY_REGION back to ${r.source} in ${file}`,
    );
    expect(rec.steps.find((s) => s.id === 'app-primary')!.status).toBe('compensated');
    // Its saved before-state is gone with the undo: nothing is left for a second compensation to apply.
    expect(existsSync(`${file}.before-regionshift_${rec.runId}_app-primary`)).toBe(false);
  });
});

describe.concurrent('operator controls (onFailure: ask)', () => {
  const asking = (id: string, path: string) =>
    `${hook(id, path).replace('retries: 1', 'retries: 0')}\n    onFailure: ask`;
  const waiting = async (r: Awaited<ReturnType<typeof rig>>, stepId: string) =>
    waitFor(
      `step ${stepId} to wait for a decision`,
      async () => (await r.progress()).pendingDecision?.stepId === stepId,
    );

  it("a failed step waits; a stranger's retry is refused; retried once the cause is fixed, the run finishes", async (ctx) => {
    const r = await rig(ctx, 'ask-retry');
    const path = `/ready/${r.service}`;
    script.set(path, [{ status: 503, body: 'app still starting' }]);
    const handle = await r.start(runbookWith(`ask-retry-${r.service}`, asking('tell-app', path)));
    await waiting(r, 'tell-app');
    const waitingRec = await r.progress();
    expect(waitingRec.pendingDecision).toMatchObject({
      error: `POST ${appUrl}${path} answered 503: app still starting`,
    });
    // The run's Slack message offers the same three decisions as buttons naming the step.
    const buttons = runMessage(waitingRec, 'http://ui').blocks.flatMap((b) => (b.type === 'actions' ? b.elements : []));
    expect(buttons.map((b) => [(b as { action_id?: string }).action_id, (b as { value?: string }).value])).toEqual(
      Object.values(STEP_ACTION).map((id) => [
        id,
        JSON.stringify({ w: r.workflowId, r: waitingRec.runId, s: 'tell-app' }),
      ]),
    );
    expect(r.fleet.callsTo('dbFenceWrites')).toEqual([]);
    await expect(
      operateRun(te.client, r.workflowId, { action: 'retry', by: 'mallory', reason: 'let me' }, signerFor('mallory')),
    ).rejects.toThrow(
      new RefusedError(
        `mallory is not an approver of ${r.service} (approvers with SSH keys: carol); add them to policy.approvers with their public key`,
      ),
    );
    script.set(path, [{ status: 200, body: 'ready' }]);
    expect(
      await operateRun(
        te.client,
        r.workflowId,
        { action: 'retry', by: 'carol', reason: 'app restarted' },
        signerFor('carol'),
      ),
    ).toBe('retrying step tell-app (by carol)');
    const { rec, result } = await outcome(handle);
    expect(result).toBe('succeeded');
    expect(rec.operator).toEqual([
      {
        action: 'retry',
        stepId: 'tell-app',
        by: 'carol',
        reason: 'app restarted',
        at: expect.any(String),
        signed: expect.stringMatching(/^carol \(ssh key SHA256:/),
      },
    ]);
    expect(rec.steps.find((s) => s.id === 'tell-app')).toMatchObject({ status: 'done', detail: 'POST → 200: ready' });
    const calls = seen.filter((s) => s.path === path);
    expect(calls).toHaveLength(2);
    expect(new Set(calls.map((c) => c.headers['idempotency-key']))).toEqual(
      new Set([`regionshift:${rec.runId}:tell-app`]),
    );
  });

  it('skip is recorded with who and why; a pause holds the run before its next step until resumed', async (ctx) => {
    const r = await rig(ctx, 'ask-skip');
    const path = `/optional/${r.service}`;
    script.set(path, [{ status: 500, body: 'cache warmer down' }]);
    const handle = await r.start(runbookWith(`ask-skip-${r.service}`, asking('warm-cache', path)));
    await waiting(r, 'warm-cache');
    expect(
      await operateRun(
        te.client,
        r.workflowId,
        { action: 'pause', by: 'carol', reason: 'checking the app first' },
        signerFor('carol'),
      ),
    ).toBe('paused by carol: the run stops before its next step');
    await operateRun(
      te.client,
      r.workflowId,
      { action: 'skip', by: 'carol', reason: 'the cache warms itself' },
      signerFor('carol'),
    );
    const held = await waitFor('the skip to land', async () => {
      const p = await r.progress();
      return p.steps.find((s) => s.id === 'warm-cache')!.status === 'skipped' && p;
    });
    expect(held.paused).toMatchObject({ by: 'carol', reason: 'checking the app first' });
    expect(r.fleet.callsTo('dbFenceWrites')).toEqual([]);
    await operateRun(
      te.client,
      r.workflowId,
      { action: 'resume', by: 'carol', reason: 'app looks fine' },
      signerFor('carol'),
    );
    const { rec, result } = await outcome(handle);
    expect(result).toBe('succeeded');
    expect(rec.steps.find((s) => s.id === 'warm-cache')!.detail).toBe(
      `skipped by carol: the cache warms itself (it failed: POST ${appUrl}${path} answered 500: cache warmer down)`,
    );
    expect(rec.operator!.map((o) => [o.action, o.stepId, o.by, o.reason])).toEqual([
      ['pause', undefined, 'carol', 'checking the app first'],
      ['skip', 'warm-cache', 'carol', 'the cache warms itself'],
      ['resume', undefined, 'carol', 'app looks fine'],
    ]);
    expect(r.fleet.log('dbFenceWrites', 'dbPromote')).toEqual([`${r.source}.dbFenceWrites`, `${r.target}.dbPromote`]);
  });

  it('compensate fails the run and undoes what it did, recorded with who and why', async (ctx) => {
    const r = await rig(ctx, 'ask-compensate');
    const path = `/announce/${r.service}`;
    script.set(path, [{ status: 500, body: 'read-only' }]);
    const handle = await r.start(runbookWith(`ask-comp-${r.service}`, '', asking('announce', path)));
    await waiting(r, 'announce');
    await operateRun(
      te.client,
      r.workflowId,
      { action: 'compensate', by: 'carol', reason: 'the app cannot take writes in the target' },
      signerFor('carol'),
    );
    const { rec, result } = await outcome(handle);
    expect(result).toBe(FAILURE.failed);
    expect(rec.error).toBe(
      `step announce failed (POST ${appUrl}${path} answered 500: read-only); carol chose to compensate: the app cannot take writes in the target`,
    );
    expect(rec.operator!.map((o) => [o.action, o.stepId, o.by, o.reason])).toEqual([
      ['compensate', 'announce', 'carol', 'the app cannot take writes in the target'],
    ]);
    expect(r.fleet.log('trafficRestore', 'dbUnfenceWrites')).toEqual([
      `${r.target}.trafficRestore`,
      `${r.source}.dbUnfenceWrites`,
    ]);
  });
});
