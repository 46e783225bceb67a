import { parseArgs } from 'node:util';
import { loadConfig, configPath, ConfigError } from '../lib/config/load';
import { CredentialsError } from '../lib/config/temporal-credentials';
import { runRegionWorkers } from '../../workers/region';
import { MetricsSettingError, workerMetricsPort, type PortChoice } from '../lib/metrics/worker';
import { CONTROL_TASK_QUEUE, regionTaskQueue } from '../contract/runbook/ids';
import { EXIT } from './exit';
import { clusterEndpoints, endpointOf } from '../lib/runs/control-plane';
import { temporalAddressFor } from '../lib/runs/client';

const USAGE =
  'usage: regionshift worker --region <region> [--no-control] | --control-only [--no-make-current] [--metrics-port N] [--config FILE]';

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      region: { type: 'string' },
      'control-only': { type: 'boolean', default: false },
      'no-control': { type: 'boolean', default: false },
      // For a deploy that promotes versions itself (README: changing workflow code).
      'no-make-current': { type: 'boolean', default: false },
      config: { type: 'string' },
      'metrics-port': { type: 'string' },
    },
    strict: true,
  });
  if (!values.region && !values['control-only']) {
    console.error(`regionshift worker: name a region (--region us-west-2) or --control-only\n${USAGE}`);
    return EXIT.badInput;
  }
  let config;
  try {
    config = loadConfig(values.config ?? configPath());
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return EXIT.badInput;
    }
    throw err;
  }
  const region = values['control-only'] ? undefined : values.region;
  if (region && !config.services.some((s) => s.regions.includes(region))) {
    console.error(`regionshift worker: no service in ${configPath()} runs in region ${region}`);
    return EXIT.badInput;
  }
  // Replicated control plane: a region's worker polls its own region's cluster, which forwards to
  // the active one while passive, so a namespace failover never has to move it.
  // An empty TEMPORAL_ADDRESS (docker-compose's replicated profile) counts as unset.
  const address =
    process.env.TEMPORAL_ADDRESS ||
    (region && clusterEndpoints(config) ? endpointOf(config, region).address : await temporalAddressFor(config));
  const control = !values['no-control'];
  let metricsPort: PortChoice;
  try {
    metricsPort = workerMetricsPort(config, region, values['metrics-port']);
    await runRegionWorkers(
      {
        config,
        region,
        control,
        address,
        namespace: config.temporal.namespace,
        metricsPort,
        makeCurrent: !values['no-make-current'],
        log: (line) => console.log(line),
      },
      (rw) => {
        const queues = [region && regionTaskQueue(region), control && CONTROL_TASK_QUEUE].filter(Boolean).join(', ');
        console.log(
          `regionshift worker ready: region=${region ?? '-'} taskQueues=${queues} temporal=${address} metrics=${rw.metrics.server.url} (${metricsPort.setting}${rw.metrics.sdkMetrics ? "; with the Temporal SDK's" : ''})${rw.tracing ? ' traces=OTLP' : ''}${rw.buildId ? ` version=${rw.buildId}` : ''}${rw.warmedUp ? `; ${rw.warmedUp}` : ''}`,
        );
      },
    );
  } catch (err) {
    if (err instanceof MetricsSettingError || err instanceof CredentialsError) {
      console.error(`regionshift worker: ${err.message}`);
      return EXIT.badInput;
    }
    throw err;
  }
  return EXIT.ok;
}
