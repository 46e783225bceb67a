// The health watcher's activity: Route 53 GetHealthCheckStatus, run by the intake process's worker
// on task queue regionshift.intake (the watcher workflow is in workflows/guardian.ts).
import {
  GetHealthCheckStatusCommand,
  Route53Client,
  type GetHealthCheckStatusCommandOutput,
} from '@aws-sdk/client-route-53';
import type { HealthObservation } from '../src/contract/guardian/health-verdict';
import type { HealthActivities } from '../src/contract/guardian/types';

/** The SDK's answer reduced to what the verdict reads. */
export function observationsOf(
  out: Pick<GetHealthCheckStatusCommandOutput, 'HealthCheckObservations'>,
): HealthObservation[] {
  return (out.HealthCheckObservations ?? []).map((o) => ({
    region: o.Region,
    status: o.StatusReport?.Status,
    checkedAt: o.StatusReport?.CheckedTime?.toISOString(),
  }));
}

type Send = (
  healthCheckId: string,
  endpointUrl?: string,
) => Promise<Pick<GetHealthCheckStatusCommandOutput, 'HealthCheckObservations'>>;

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
        ...(endpointUrl && !env.AWS_ACCESS_KEY_ID
          ? { credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } }
          : {}),
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
