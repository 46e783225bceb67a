// Records the histories test/histories.test.ts replays: the demo (planned failover away and back,
// a drain and undrain, the unplanned failover, reconciliation, failback) and a guardian that
// drains a failing region, run for real on a throw-away local stack, every execution then written
// as <out>/<version>/<name>.history.pb. Run it when a release ships (`npm run record-histories`):
// the suite then proves every later change to workflows/ still replays what that release wrote.
//
// The payloads are encrypted with test/histories/codec-keys.env, a key made for these fixtures
// only (it protects nothing), so the replay reads them with the same codec as the workers that
// wrote them.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { temporal } from '@temporalio/proto';
import { loadConfig } from '../lib/config/load';
import { runDemo, DEMO_SERVICE } from '../demo/scenario';
import { Deliverer } from '../intake/deliver';
import { guardianWorkflowId } from '../contract/guardian/ids';
import type { AlarmSignal, GuardianView } from '../contract/guardian/types';
import { REPO_ROOT } from '../lib/paths';
import { builtinRunbookPath, loadRunbook } from '../lib/runbooks';
import type { RunRecord } from '../contract/runbook/types';
import { awaitRecord, connect } from '../lib/runs/client';
import { stackDown, stackUp } from '../stack/stack';
import { shippedLedgerTriggers, writeTempStack } from '../stack/temp';
import { fixtureCodecEnv, HISTORIES_DIR } from './history-fixtures';

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { version: { type: 'string' }, out: { type: 'string', default: HISTORIES_DIR } },
    strict: true,
  });
  const version =
    values.version ??
    `v${(JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version}`;
  const outDir = join(values.out!, version);
  Object.assign(process.env, fixtureCodecEnv());
  const say = (line: string): void => console.error(line);

  const files = await writeTempStack({
    prefix: 'regionshift-record-',
    comment: 'written by npm run record-histories; deleted when it ends',
    regions: ['us-west-2', 'us-east-1', 'eu-west-1'],
    weights: { 'us-west-2': 60, 'us-east-1': 30, 'eu-west-1': 10 },
    // The demo's failures are found by the stack's own monitoring, as `regionshift demo` finds them.
    monitoring: true,
    app: true,
    ...shippedLedgerTriggers(),
  });
  process.env.REGIONSHIFT_HOME = files.home;
  process.env.REGIONSHIFT_CONFIG = files.configFile;
  const config = loadConfig(files.configFile);
  process.env.TEMPORAL_ADDRESS = config.temporal.address;
  try {
    const ctx = { config, configFile: files.configFile, home: files.home };
    await stackUp({ ...ctx, onProgress: say });
    const demo = await runDemo({ ctx, say, clients: 2 });
    if (!demo.ok) throw new Error('the demo failed: its histories are not what a release writes; fix that first');

    // The guardian: a non-writer region failing long enough is drained (a run it starts and is told the end of).
    const client = await connect(config);
    const service = config.services.find((s) => s.name === DEMO_SERVICE)!;
    // No cooldown: the failback just ended, and the guardian must act for its history to show it.
    const deliverer = new Deliverer({
      client,
      config,
      runbook: loadRunbook(builtinRunbookPath('failover')),
      settingsExtra: { policy: { ...service.policy, cooldown: '1s' } },
    });
    const spare = service.regions.at(-1)!;
    const alarm = (): AlarmSignal => ({
      source: 'alertmanager',
      name: 'RegionDown',
      region: spare,
      severity: 'critical',
      state: 'ALARM',
      at: Date.now(),
      receivedAt: Date.now(),
    });
    say(`guardian: two alarms about ${spare}…`);
    await deliverer.deliver(service.name, [alarm()]);
    await deliverer.deliver(service.name, [alarm()]);
    // Whatever it decides (a drain, or holding back), its history has the signals, the decision and what it did.
    const v = await waitFor(
      'the guardian to take both alarms',
      async () => {
        const g = await client.workflow.getHandle(guardianWorkflowId(service.name)).query<GuardianView>('state');
        return g.received >= 2 && g.decisions.length > 0 ? g : undefined;
      },
      60_000,
    );
    say(`guardian: ${JSON.stringify(v.decisions.at(-1))}`);
    if (v.current) await awaitRecord(client, v.current.workflowId, v.current.runId).catch(() => undefined);
    await client.workflow.getHandle(guardianWorkflowId(service.name)).terminate('recorded');

    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(outDir, { recursive: true });
    const taken = new Map<string, number>();
    for await (const ex of client.workflow.list()) {
      // Every control worker's start writes one, all alike.
      if (ex.type === 'warmUp' && taken.has('warmUp')) continue;
      let name = ex.type;
      if (ex.type === 'runbook') {
        const rec: RunRecord | undefined = await awaitRecord(client, ex.workflowId, ex.runId).catch(() => undefined);
        name = rec ? `${rec.kind}-${rec.mode}` : `runbook-${ex.status.name.toLowerCase()}`;
      }
      const n = (taken.get(name) ?? 0) + 1;
      taken.set(name, n);
      const history = await client.workflow.getHandle(ex.workflowId, ex.runId).fetchHistory();
      const file = join(outDir, `${n === 1 ? name : `${name}-${n}`}.history.pb`);
      writeFileSync(file, temporal.api.history.v1.History.encode(history).finish());
      say(`${file}: ${ex.workflowId} (${history.events?.length ?? 0} events)`);
    }
    await client.connection.close();
  } finally {
    await stackDown({ home: files.home }).catch((err: Error) =>
      say(`stack down failed: ${err.message}; stop it with REGIONSHIFT_HOME=${files.home} regionshift stack down`),
    );
    rmSync(files.dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
