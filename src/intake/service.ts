// `regionshift intake` as a library: configure the guardians, start the health watchers and the
// worker that runs their Route 53 calls, and serve the alarm endpoints.
import type { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Config } from '../config/schema';
import { triggerProblems } from '../config/triggers';
import { InputError } from '../runs/client';
import { builtinRunbookPath, loadRunbook } from '../runbook/load';
import type { RunbookDoc } from '../runbook/types';
import { Deliverer } from './deliver';
import { createHealthActivities, startHealthWatchers } from './health';
import { INTAKE_TASK_QUEUE } from './ids';
import { startIntakeServer, type IntakeServer, type IntakeServerOptions } from './server';
import type { GuardianSettings, HealthActivities } from './types';

export interface IntakeOptions {
  config: Config;
  client: Client;
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
  settingsExtra?: Partial<GuardianSettings>;
}

export interface RunningIntake {
  server: IntakeServer;
  deliverer: Deliverer;
  watchers: string[];
  stop(): Promise<void>;
}

export async function runIntake(opts: IntakeOptions): Promise<RunningIntake> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const problems = triggerProblems(opts.config);
  if (problems.length) throw new InputError(`the triggers config is not valid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  const runbook = opts.runbook ?? loadRunbook(builtinRunbookPath('failover'));
  const deliverer = new Deliverer({ client: opts.client, config: opts.config, runbook, settingsExtra: opts.settingsExtra });
  await deliverer.configureAll();

  let worker: { worker: Worker; done: Promise<void>; connection: NativeConnection } | undefined;
  const watchers = await startHealthWatchers(opts.client, opts.config);
  if (watchers.length > 0 && opts.workerAddress) {
    const connection = await NativeConnection.connect({ address: opts.workerAddress });
    const w = await Worker.create({
      connection,
      namespace: opts.namespace ?? 'default',
      taskQueue: INTAKE_TASK_QUEUE,
      activities: opts.healthActivities ?? createHealthActivities(),
    });
    worker = { worker: w, done: w.run(), connection };
  }
  const server = await startIntakeServer({
    config: opts.config, deliverer, host: opts.host, port: opts.port, log, secrets: opts.secrets, snsUrlAllowed: opts.snsUrlAllowed,
  });
  return {
    server,
    deliverer,
    watchers,
    async stop() {
      await server.close();
      if (worker) {
        worker.worker.shutdown();
        await worker.done.catch(() => undefined);
        await worker.connection.close().catch(() => undefined);
      }
    },
  };
}
