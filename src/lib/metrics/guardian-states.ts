// The guardians' states for the intake's /metrics, asked at scrape time: the guardian is the
// source of truth (it lives in Temporal, not in the intake), so a copy kept here could only lag.
import type { Client } from '@temporalio/client';
import type { GuardianView } from '../../contract/guardian/types';
import type { GuardianStateName } from './registry';

export function guardianStateOf(v: GuardianView): GuardianStateName {
  if (v.current) return 'running';
  if (v.inCooldown) return 'cooldown';
  if (v.failing.some((f) => f.count > 0)) return 'debouncing';
  return 'idle';
}

export async function queryGuardianStates(
  client: Client,
  services: string[],
  workflowIdOf: (service: string) => string,
  timeoutMs = 2000,
): Promise<Record<string, GuardianStateName>> {
  return askEachService(
    services,
    async (service) =>
      guardianStateOf(await client.workflow.getHandle(workflowIdOf(service)).query<GuardianView>('state')),
    timeoutMs,
  );
}

/**
 * Asks `ask` for every service at once, for a scrape: a service whose answer fails or takes longer
 * than `timeoutMs` (not started yet, no control worker answering) is `unknown`, so a scrape never
 * hangs on, or fails for, one service.
 */
export async function askEachService<T extends string>(
  services: string[],
  ask: (service: string) => Promise<T>,
  timeoutMs: number,
): Promise<Record<string, T | 'unknown'>> {
  const entries = await Promise.all(
    services.map(async (service): Promise<[string, T | 'unknown']> => {
      let timer: NodeJS.Timeout | undefined;
      try {
        return [
          service,
          await Promise.race([
            ask(service),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
            }),
          ]),
        ];
      } catch {
        return [service, 'unknown'];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return Object.fromEntries(entries);
}
