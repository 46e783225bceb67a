// Finding the service an activity was called for. A service this worker's config lacks, or one
// that uses another provider, is refused for good: retrying cannot fix the worker's config, and
// the message says which to fix.
import { ApplicationFailure } from '@temporalio/common';
import type { Config, Service } from '../src/lib/config/schema';

/** `worker` names whose config it is, for the message: "the us-east-1 worker". */
export function knownService(config: Config, service: string, worker: string, failureType: string): Service {
  const svc = config.services.find((x) => x.name === service);
  if (!svc)
    throw ApplicationFailure.nonRetryable(
      `unknown service "${service}": the config of ${worker} has no such service (it has: ${config.services.map((x) => x.name).join(', ') || 'none'}); check the service name, or restart the worker with the config that defines it`,
      failureType,
    );
  return svc;
}

export function wrongProvider(service: string, why: string, failureType: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `service "${service}" ${why}: routed to the wrong provider (activities/index.ts)`,
    failureType,
  );
}

export interface PerServiceOptions<T> {
  worker: string;
  /** Why the service is not this provider's, or undefined when it is. */
  mismatch: (svc: Service) => string | undefined;
  make: (svc: Service) => T;
  failureTypes: { unknown: string; wrongProvider: string };
}

/** One instance per service (its clients, its cached describes), made on first use. */
export function perService<T>(config: Config, opts: PerServiceOptions<T>): (service: string) => T {
  const made = new Map<string, T>();
  return (service) => {
    const existing = made.get(service);
    if (existing !== undefined) return existing;
    const svc = knownService(config, service, opts.worker, opts.failureTypes.unknown);
    const mismatch = opts.mismatch(svc);
    if (mismatch) throw wrongProvider(service, mismatch, opts.failureTypes.wrongProvider);
    const instance = opts.make(svc);
    made.set(service, instance);
    return instance;
  };
}
