// The guardians' states for the intake's /metrics, asked at scrape time: the guardian is the
// source of truth (it lives in Temporal, not in the intake), so a copy kept here could only lag.
import type { Client } from '@temporalio/client';
import type { GuardianView } from '../intake/types';
import type { GuardianStateName } from './registry';

export function guardianStateOf(v: GuardianView): GuardianStateName {
  if (v.current) return 'running';
  if (v.inCooldown) return 'cooldown';
  if (v.failing.some((f) => f.count > 0)) return 'debouncing';
  return 'idle';
}

export async function queryGuardianStates(client: Client, services: string[], workflowIdOf: (service: string) => string, timeoutMs = 2000): Promise<Record<string, GuardianStateName>> {
  const entries = await Promise.all(
    services.map(async (service): Promise<[string, GuardianStateName]> => {
      let timer: NodeJS.Timeout | undefined;
      try {
        const view = await Promise.race([
          client.workflow.getHandle(workflowIdOf(service)).query<GuardianView>('state'),
          new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('timeout')), timeoutMs); }),
        ]);
        return [service, guardianStateOf(view)];
      } catch {
        // Not started yet, or no control worker answering: a scrape must not hang on it.
        return [service, 'unknown'];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return Object.fromEntries(entries);
}
