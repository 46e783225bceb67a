// The Route 53 side of the health watcher: the activity that asks GetHealthCheckStatus (run by
// the intake process's worker on task queue regionshift.intake), and starting one watcher per
// service that has `triggers.healthChecks`.
import { GetHealthCheckStatusCommand, Route53Client, type GetHealthCheckStatusCommandOutput } from '@aws-sdk/client-route-53';
import type { Client } from '@temporalio/client';
import type { Config, Service } from '../config/schema';
import { serviceTriggersOf, triggersOf } from '../config/triggers';
import { CONTROL_TASK_QUEUE } from '../runbook/ids';
import type { HealthObservation } from './health-verdict';
import { healthWatcherWorkflowId } from './ids';
import type { HealthActivities, HealthWatcherInput, HealthWatcherView } from './types';

/** The SDK's answer reduced to what the verdict reads. */
export function observationsOf(out: Pick<GetHealthCheckStatusCommandOutput, 'HealthCheckObservations'>): HealthObservation[] {
  return (out.HealthCheckObservations ?? []).map((o) => ({
    region: o.Region,
    status: o.StatusReport?.Status,
    checkedAt: o.StatusReport?.CheckedTime?.toISOString(),
  }));
}

type Send = (healthCheckId: string, endpointUrl?: string) => Promise<Pick<GetHealthCheckStatusCommandOutput, 'HealthCheckObservations'>>;

/** Activities of the intake worker; `send` is replaceable so tests can feed SDK-level answers. */
export function createHealthActivities(send?: Send, env: NodeJS.ProcessEnv = process.env): HealthActivities {
  const clients = new Map<string, Route53Client>();
  const defaultSend: Send = (healthCheckId, endpointUrl) => {
    const key = endpointUrl ?? '';
    let client = clients.get(key);
    if (!client) {
      client = new Route53Client({
        region: 'us-east-1',
        ...(endpointUrl ? { endpoint: endpointUrl } : {}),
        // Same rule as the traffic provider: moto needs some credentials, real ones are used as they are.
        ...(endpointUrl && !env.AWS_ACCESS_KEY_ID ? { credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } } : {}),
      });
      clients.set(key, client);
    }
    return client.send(new GetHealthCheckStatusCommand({ HealthCheckId: healthCheckId }));
  };
  const ask = send ?? defaultSend;
  return {
    async route53HealthCheckStatus({ healthCheckId, endpointUrl }) {
      return observationsOf(await ask(healthCheckId, endpointUrl));
    },
  };
}

export function healthWatcherInput(config: Config, service: Service): HealthWatcherInput | undefined {
  const checks = serviceTriggersOf(service).healthChecks;
  if (Object.keys(checks).length === 0) return undefined;
  const w = triggersOf(config).healthWatcher;
  const endpointUrl = (service.traffic as { endpointUrl?: string }).endpointUrl;
  return { service: service.name, checks, interval: w.interval, healthyShare: w.healthyShare, ...(endpointUrl ? { endpointUrl } : {}) };
}

/**
 * Starts each service's watcher with the current config, replacing a running one (and keeping
 * which regions it had reported failing, so their recovery is still announced).
 */
export async function startHealthWatchers(client: Client, config: Config): Promise<string[]> {
  const started: string[] = [];
  for (const service of config.services) {
    const input = healthWatcherInput(config, service);
    if (!input) continue;
    const workflowId = healthWatcherWorkflowId(service.name);
    let failing: string[] = [];
    try {
      failing = (await client.workflow.getHandle(workflowId).query<HealthWatcherView>('health')).failing;
    } catch {
      // none running
    }
    await client.workflow.start('healthWatcher', {
      workflowId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ ...input, failing }],
      workflowIdConflictPolicy: 'TERMINATE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: `Route 53 health checks of ${service.name}: ${Object.entries(input.checks).map(([r, id]) => `${r}=${id}`).join(', ')}`,
    });
    started.push(workflowId);
  }
  return started;
}
