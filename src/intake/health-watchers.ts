// Starting one Route 53 health watcher per service that has `triggers.healthChecks` (the watcher
// workflow is in workflows/guardian.ts, its activity in activities/health.ts).
import type { Client } from '@temporalio/client';
import type { Config, Service } from '../lib/config/schema';
import { serviceTriggersOf, triggersOf } from '../lib/config/triggers';
import { CONTROL_TASK_QUEUE } from '../contract/runbook/ids';
import { healthWatcherWorkflowId } from '../contract/guardian/ids';
import type { HealthWatcherInput, HealthWatcherView } from '../contract/guardian/types';

export function healthWatcherInput(config: Config, service: Service): HealthWatcherInput | undefined {
  const checks = serviceTriggersOf(service).healthChecks;
  if (Object.keys(checks).length === 0) return undefined;
  const w = triggersOf(config).healthWatcher;
  const endpointUrl = (service.traffic as { endpointUrl?: string }).endpointUrl;
  return {
    service: service.name,
    checks,
    interval: w.interval,
    healthyShare: w.healthyShare,
    ...(endpointUrl ? { endpointUrl } : {}),
  };
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
      staticSummary: `Route 53 health checks of ${service.name}: ${Object.entries(input.checks)
        .map(([r, id]) => `${r}=${id}`)
        .join(', ')}`,
    });
    started.push(workflowId);
  }
  return started;
}
