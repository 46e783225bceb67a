// `regionshift intake` as a library: configure the guardians, open the alarm journal (forwarding
// what a previous process accepted), start the health watchers and the worker that runs their
// Route 53 calls, and serve the alarm endpoints.
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Config } from '../lib/config/schema';
import { temporalCredentials } from '../lib/config/temporal-credentials';
import { triggersOf } from '../lib/config/triggers';
import { stateDir } from '../lib/paths';
import { triggerProblems } from '../lib/config/triggers';
import { dataConverterFromEnv } from '../lib/codec/env';
import { InputError } from '../lib/runs/client';
import { FollowingClient } from '../lib/runs/following';
import { builtinRunbookPath, loadRunbook, loadServiceRunbook } from '../lib/runbooks';
import type { RunbookDoc } from '../contract/runbook/types';
import { queryGuardianStates } from '../lib/metrics/guardian-states';
import { fetchExposition } from '../lib/metrics/server';
import { Deliverer } from './deliver';
import { AlarmJournal } from './journal';
import { createHealthActivities } from '../../activities/health';
import { startHealthWatchers } from './health-watchers';
import { INTAKE_TASK_QUEUE } from '../contract/guardian/ids';
import { startIntakeServer, type IntakeServer, type IntakeServerOptions } from './server';
import type { GuardianSettings, HealthActivities } from '../contract/guardian/types';
import { ensureReadinessSchedule, readinessStates } from '../lib/readiness';

export interface IntakeOptions {
  config: Config;
  /** A FollowingClient (regionshift intake's) follows the namespace and fails it over when its cluster stays silent. */
  client: Client | FollowingClient;
  /** Temporal address for the health watcher's activity worker; absent: no worker (no health checks polled here). */
  workerAddress?: string;
  namespace?: string;
  runbook?: RunbookDoc;
  host?: string;
  port?: number;
  log?: (line: string) => void;
  secrets?: IntakeServerOptions['secrets'];
  snsUrlAllowed?: IntakeServerOptions['snsUrlAllowed'];
  healthActivities?: HealthActivities;
  /** The Temporal runtime's Prometheus endpoint (installWorkerRuntime): served after the intake's own /metrics. */
  sdkMetricsUrl?: string;
  settingsExtra?: Partial<GuardianSettings>;
  /** The journal file; default: triggers.intake.journal.path, or intake-journal.jsonl in the state directory. */
  journalPath?: string;
}

export interface RunningIntake {
  server: IntakeServer;
  deliverer: Deliverer;
  journal: AlarmJournal;
  watchers: string[];
  stop(): Promise<void>;
}

export async function runIntake(opts: IntakeOptions): Promise<RunningIntake> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const problems = triggerProblems(opts.config);
  if (problems.length)
    throw new InputError(`the triggers config is not valid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  const runbook = opts.runbook ?? loadRunbook(builtinRunbookPath('failover'));
  // Without an explicit runbook, a service with its own failover runbook (config `runbooks:`) gets it, with the config's plugins.
  const runbooks: Record<string, RunbookDoc> = {};
  if (!opts.runbook) {
    for (const svc of opts.config.services)
      if (svc.runbooks?.failover) runbooks[svc.name] = await loadServiceRunbook(opts.config, svc.name, 'failover');
  }
  const temporal = opts.client instanceof FollowingClient ? opts.client : FollowingClient.fixed(opts.client);
  const deliverer = new Deliverer({
    client: temporal,
    config: opts.config,
    runbook,
    runbooks,
    settingsExtra: opts.settingsExtra,
  });
  await deliverer.configureAll();
  const j = triggersOf(opts.config).intake.journal;
  const journal = await AlarmJournal.open({
    path: opts.journalPath ?? j.path ?? join(stateDir(), 'intake-journal.jsonl'),
    forward: deliverer,
    maxPending: j.maxPending,
    log,
  });
  // The intake's own namespace moves go to its journal, next to the alarms that caused them.
  temporal.onMove = async (move) => {
    log(
      `intake: control plane: namespace ${opts.config.temporal.namespace} failed over ${move.from} → ${move.to} (failover version ${move.failoverVersion}); ${move.from} silent ${Math.round(move.silentMs / 1000)} s with an alarm to deliver`,
    );
    await journal.note({ controlPlane: move });
  };

  type RunningWorker = { worker: Worker; done: Promise<void>; connection: NativeConnection; address: string };
  let worker: RunningWorker | undefined;
  const startWorker = async (address: string): Promise<RunningWorker> => {
    const connection = await NativeConnection.connect({ address, ...temporalCredentials(opts.config) });
    const w = await Worker.create({
      connection,
      namespace: opts.namespace ?? 'default',
      dataConverter: dataConverterFromEnv(),
      taskQueue: INTAKE_TASK_QUEUE,
      activities: opts.healthActivities ?? createHealthActivities(),
    });
    return { worker: w, done: w.run(), connection, address };
  };
  const retire = async (w: RunningWorker, boundMs?: number): Promise<void> => {
    // On SIGTERM the Temporal runtime has already begun draining it: shutting down twice throws.
    if (w.worker.getState() === 'RUNNING') w.worker.shutdown();
    const done = w.done.catch(() => undefined);
    // A worker whose cluster is gone may take long to stop: it is left behind after boundMs.
    await (boundMs === undefined ? done : Promise.race([done, new Promise((r) => setTimeout(r, boundMs))]));
    await w.connection.close().catch(() => undefined);
  };
  // The worker polls the cluster it started on; when the intake's client follows the namespace to
  // another cluster (the first one stopped answering), the worker goes too, or its polls of a dead
  // cluster never end.
  let moving: Promise<void> = Promise.resolve();
  let stopping = false;
  temporal.onAddress = (address) => {
    moving = moving
      .then(async () => {
        if (!worker || stopping || worker.address === address) return;
        const old = worker;
        worker = await startWorker(address);
        log(`intake: its worker now polls ${address}, the cluster its calls follow`);
        await retire(old, 10_000);
      })
      .catch((err: unknown) => log(`intake: moving its worker to ${address} failed: ${(err as Error).message}`));
  };
  const stopWorker = async (): Promise<void> => {
    stopping = true;
    await moving;
    if (worker) await retire(worker);
  };
  let server: IntakeServer;
  let watchers: string[];
  try {
    watchers = await temporal.run((c) => startHealthWatchers(c, opts.config));
    // Readiness is evaluated on a schedule per service; the intake runs wherever regionshift is
    // deployed, so it makes the schedules (or brings them to the config) as it starts.
    for (const svc of opts.config.services) {
      await temporal
        .run((c) => ensureReadinessSchedule(c, opts.config, svc))
        .catch((err: unknown) => log(`readiness schedule of ${svc.name} not made: ${(err as Error).message}`));
    }
    // The worker runs the health watchers' activities; with the SDK's metrics asked for it runs
    // anyway, so /metrics shows the intake's own Temporal connection and polls.
    if ((watchers.length > 0 || opts.sdkMetricsUrl) && opts.workerAddress)
      worker = await startWorker(opts.workerAddress);
    server = await startIntakeServer({
      config: opts.config,
      sink: journal,
      host: opts.host,
      port: opts.port,
      log,
      secrets: opts.secrets,
      snsUrlAllowed: opts.snsUrlAllowed,
      guardianStates: () =>
        temporal.run((c) =>
          queryGuardianStates(
            c,
            opts.config.services.map((s) => s.name),
            deliverer.guardianId,
          ),
        ),
      readinessStates: () =>
        temporal.run((c) =>
          readinessStates(
            c,
            opts.config.services.map((s) => s.name),
          ),
        ),
      ...(opts.sdkMetricsUrl ? { extraMetrics: () => fetchExposition(opts.sdkMetricsUrl!) } : {}),
    });
  } catch (err) {
    // The journal's lock must not outlive a start that failed (the next start would be refused).
    await stopWorker();
    await journal.close();
    throw err;
  }
  return {
    server,
    deliverer,
    journal,
    watchers,
    async stop() {
      await server.close();
      await journal.close();
      await stopWorker();
    },
  };
}
