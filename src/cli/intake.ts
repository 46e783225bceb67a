import { parseArgs } from 'node:util';
import { triggersOf } from '../lib/config/triggers';
import { runIntake } from '../intake/service';
import { installWorkerRuntime } from '../lib/metrics/worker';
import { loadPlugins } from '../lib/plugins';
import { loadRunbook } from '../lib/runbooks';
import { connectFollowing, InputError, temporalAddressFor } from '../lib/runs/client';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';

const USAGE = 'usage: regionshift intake [--host H] [--port N] [--runbook FILE] [--config FILE]';

/** `regionshift intake`: the alarm intake (SNS, EventBridge, Alertmanager) and the health watchers. */
export function intakeCommand(argv: string[]): Promise<number> {
  return guard(false, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        runbook: { type: 'string' },
        config: { type: 'string' },
      },
      strict: true,
    });
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536))
      throw new InputError(`--port ${values.port} is not a port number\n${USAGE}`);
    const cfg = loadConfig(values.config);
    const t = triggersOf(cfg).intake;
    // Before anything makes a Temporal connection: the runtime with the SDK's Prometheus exporter is installed once per process.
    const { sdkMetricsUrl } = await installWorkerRuntime();
    // Follows the namespace, and fails it over when its cluster stays silent with an alarm to deliver.
    const client = await connectFollowing(cfg, { failover: true });
    const intake = await runIntake({
      ...(sdkMetricsUrl ? { sdkMetricsUrl } : {}),
      config: cfg,
      client,
      workerAddress: await temporalAddressFor(cfg),
      namespace: cfg.temporal.namespace,
      // Absent: each service's own failover runbook, else the built-in one (runIntake).
      ...(values.runbook ? { runbook: loadRunbook(values.runbook, { plugins: await loadPlugins(cfg.plugins) }) } : {}),
      host: values.host,
      port,
    });
    for (const [name, env] of [
      ['eventbridge', t.eventbridge.secretEnv],
      ['alertmanager', t.alertmanager.tokenEnv],
    ] as const) {
      if (!process.env[env]) console.log(`intake: ${name} endpoint refuses everything until ${env} is set`);
    }
    console.log(
      `regionshift intake ready: ${intake.server.url} (POST /sns, /eventbridge, /alertmanager; GET /metrics); guardians configured for ${cfg.services.map((s) => s.name).join(', ')}${intake.watchers.length ? `; health watchers ${intake.watchers.join(', ')}` : ''}`,
    );
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await intake.stop();
    await client.close();
    return EXIT.ok;
  });
}
