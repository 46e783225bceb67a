// Each provider serves only the services configured for it: a call for another service, or one
// routed to the wrong provider, fails for good with what to fix, before any AWS call is made.
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { createAuroraActivities } from '../activities/db/aurora';
import { createRdsReplicaActivities } from '../activities/db/rds-replicas';
import { createArcActivities } from '../activities/traffic/arc';
import { paperConfig } from './support/temporal-env';

// ledger: postgres-streaming with Route 53 records, so every provider here is the wrong one for it.
const config = paperConfig('127.0.0.1:1', [{ name: 'ledger', regions: ['us-west-2', 'us-east-1'] }]);

/** A provider may throw before its first await: Temporal fails the activity either way. */
async function failure(call: () => Promise<unknown>): Promise<ApplicationFailure> {
  const err = await Promise.resolve()
    .then(call)
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('provider routing', () => {
  const providers = [
    {
      name: 'aurora-global',
      call: (service: string) => createAuroraActivities(config, 'us-east-1').dbDescribe({ service }),
      wrong: { type: 'AuroraConfig', says: 'uses database provider postgres-streaming, not aurora-global' },
    },
    {
      name: 'rds-postgres-replicas',
      call: (service: string) => createRdsReplicaActivities(config, 'us-east-1').dbDescribe({ service }),
      wrong: { type: 'RdsConfig', says: 'uses database provider postgres-streaming, not rds-postgres-replicas' },
    },
    {
      name: 'route53-arc',
      call: (service: string) => createArcActivities(config).trafficDescribe({ service }),
      wrong: { type: 'ArcConfig', says: 'steers traffic with route53, not Route 53 ARC' },
    },
  ];

  for (const p of providers) {
    it(`${p.name} refuses a service the worker's config lacks, naming the ones it has`, async () => {
      const f = await failure(() => p.call('payments'));
      expect(f.nonRetryable).toBe(true);
      expect(f.type).toBe('UnknownService');
      expect(f.message).toContain('unknown service "payments"');
      expect(f.message).toContain('it has: ledger');
    });

    it(`${p.name} refuses a service of another provider, saying which`, async () => {
      const f = await failure(() => p.call('ledger'));
      expect(f.nonRetryable).toBe(true);
      expect(f.type).toBe(p.wrong.type);
      expect(f.message).toContain(`service "ledger" ${p.wrong.says}: routed to the wrong provider`);
    });
  }
});
