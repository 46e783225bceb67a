// The guardian when the control worker holding it dies, as it does when the region it runs in is
// lost: the alarms that loss raises arrive while a status query is in flight, and the query is
// answered by a control worker that did not hold the guardian. That worker applies the pending
// alarms to answer it, with the clock of the guardian's last workflow task, and keeps the result
// for the task that follows. Decided there, a cooldown that had ended still held the failover back
// (it started only on a later alarm, 33 s after the kill in the demo), and the guardian's history
// no longer replayed. Two real `regionshift worker --control-only` processes; one is SIGKILLed.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Deliverer } from '../src/intake/deliver';
import { guardianWorkflowId } from '../src/contract/guardian/ids';
import type { AlarmSignal, GuardianView } from '../src/contract/guardian/types';
import { regionTaskQueue, runWorkflowId } from '../src/contract/runbook/ids';
import type { DbNodeState } from '../src/contract/activities';
import { loadConfig } from '../src/lib/config/load';
import type { Config } from '../src/lib/config/schema';
import { workflowExporterSink } from '../src/lib/tracing';
import { controlBundle } from '../workers/versioning';
import { runbookFromText } from './support/failover-env';
import { startCliWorker } from './support/stack-env';
import { createTemporalEnv, type TemporalEnv } from './support/temporal-env';
import { waitFor } from './support/wait';

const SERVICE = 'ledger';
const [WEST, EAST, EU] = ['us-west-2', 'us-east-1', 'eu-west-1'];
const COOLDOWN_S = 3;
// The run itself is not the subject: one step, skipped when no approval is required.
const RUNBOOK = runbookFromText(
  'kind: failover\nsteps:\n  - {id: approval, approval: {reason: policy}, when: [approval-required]}\n',
);

let te: TemporalEnv;
let config: Config;
let configFile: string;
const workers: ChildProcess[] = [];

function configYaml(address: string): string {
  const nodes = [WEST, EAST, EU].map((r, i) => `${r}: { host: 127.0.0.1, port: ${i + 1}, dataDir: /nonexistent/${r} }`);
  return `temporal: { address: "${address}" }
services:
  - name: ${SERVICE}
    regions: [${WEST}, ${EAST}, ${EU}]
    database: { provider: postgres-streaming, regions: { ${nodes.join(', ')} } }
    traffic: { provider: route53, hostedZone: z., recordName: r.z., endpoints: { ${WEST}: a., ${EAST}: b., ${EU}: c. } }
    policy: { cooldown: ${COOLDOWN_S}s, approval: { planned: none, unplanned: none } }
    triggers:
      alarms: [{ source: alertmanager, name: RegionshiftEndpointUnreachable, regionLabel: region }]
      debounce: { failures: 2, window: 1m }
`;
}

/** `regionshift worker --control-only`, ready once it says so (it makes its version current first). */
async function startControlWorker(): Promise<ChildProcess> {
  const { child } = await startCliWorker(['--control-only'], { ...process.env, REGIONSHIFT_CONFIG: configFile });
  workers.push(child);
  return child;
}

/** A probe alarm about the writer from one vantage point, as Alertmanager sends it through the intake. */
function unreachable(vantage: string, id: string): AlarmSignal {
  const now = Date.now();
  return {
    source: 'alertmanager',
    name: 'RegionshiftEndpointUnreachable',
    region: WEST,
    severity: 'critical',
    state: 'ALARM',
    at: now,
    receivedAt: now,
    since: now - 3_000,
    vantage,
    id,
  };
}

beforeAll(async () => {
  te = await createTemporalEnv((address) => {
    const dir = mkdtempSync(join(tmpdir(), 'regionshift-guardian-loss-'));
    configFile = join(dir, 'regionshift.yaml');
    writeFileSync(configFile, configYaml(address));
    return (config = loadConfig(configFile));
  }, { controlWorker: false }); // prettier-ignore
  // The candidates' standbys answer the guardian's target choice.
  for (const region of [EAST, EU]) {
    const standby: DbNodeState = {
      region,
      role: 'standby',
      reachable: true,
      replayLagMs: 0,
      lagBytes: 0,
    } as DbNodeState;
    await te.startWorker({ taskQueue: regionTaskQueue(region), activities: { dbDescribe: async () => standby } });
  }
}, 120_000);

afterAll(async () => {
  for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  await te?.teardown();
});

it('the worker holding the guardian dies as the alarms come, with a status query in flight: the failover starts once the alarms agree, and the history replays', async () => {
  const holder = await startControlWorker();
  const deliverer = new Deliverer({ client: te.client, config, runbook: RUNBOOK });
  await deliverer.configureAll();
  const guardian = te.client.workflow.getHandle(guardianWorkflowId(SERVICE));
  // A run just ended: its cooldown ends before the alarms come, and no workflow task runs meanwhile.
  await guardian.signal('runEnded', {
    workflowId: runWorkflowId(SERVICE),
    runId: 'earlier-run',
    kind: 'failover',
    status: 'succeeded',
    target: WEST,
    endedAt: new Date().toISOString(),
    dryRun: false,
    requestedBy: 'alice',
  });
  expect((await guardian.query<GuardianView>('state')).lastRun?.runId).toBe('earlier-run');
  await startControlWorker();
  await new Promise((r) => setTimeout(r, (COOLDOWN_S + 1) * 1000));

  holder.kill('SIGKILL');
  // The status query goes to A's sticky queue first; when A does not take it (1 s), to B, with the
  // history as it is then: the alarms below included.
  const status = guardian.query<GuardianView>('state');
  await new Promise((r) => setTimeout(r, 300));
  await deliverer.deliver(SERVICE, [unreachable(EU, 'alarm-1')]);
  await deliverer.deliver(SERVICE, [unreachable(EAST, 'alarm-2')]);
  // The scenario happened: B answered with the alarms applied before any task decided them.
  expect((await status).received).toBe(2);

  const run = await waitFor(
    'the guardian to start the failover',
    async () =>
      (
        await te.client.workflow
          .getHandle(runWorkflowId(SERVICE))
          .describe()
          .catch(() => undefined)
      )?.runId,
    30_000,
    200,
  );
  const view = await guardian.query<GuardianView>('state');
  expect(view.decisions.map((d) => d.kind)).not.toContain('cooldown');
  expect(view.current?.runId ?? view.lastRun?.runId).toBe(run);

  const history = await guardian.fetchHistory();
  const sinks = { regionshiftMetrics: { runEnded: { fn: () => undefined } }, ...workflowExporterSink(undefined) };
  await expect(
    Worker.runReplayHistory({ workflowBundle: (await controlBundle()).workflowBundle, sinks }, history, 'guardian'),
  ).resolves.toBeUndefined();
}, 120_000);
