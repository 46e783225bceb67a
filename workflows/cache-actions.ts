// The workflow side of a service's cache (runbooks/failover.yaml and failback.yaml: cache.fence,
// cache.promote, cache.repoint, cache.rejoin), called from the runbook interpreter's switch. The
// steps are gated on the condition `cache` (RunInput.cache), so a service without one, and every
// run that started before these steps existed, schedules nothing new. Failure policy: the YAML's. A planned run promotes
// the cache only once the target has the offset the fenced source ended at (the same rule as
// the database's lag gate); an unplanned one promotes what the target has.
import * as wf from '@temporalio/workflow';
import type { ActivityOptions } from '@temporalio/common';
import type { CacheActivities } from '../src/contract/activities';
import { regionTaskQueue } from '../src/contract/runbook/ids';
import type { RunInput, RunRecord, Step, StepState } from '../src/contract/runbook/types';
import { COMPENSATION, type Compensations } from './compensation';

export const CACHE_ACTIONS = ['cache.fence', 'cache.promote', 'cache.repoint', 'cache.rejoin'] as const;
export type CacheAction = (typeof CACHE_ACTIONS)[number];

export function isCacheAction(action: string): action is CacheAction {
  return (CACHE_ACTIONS as readonly string[]).includes(action);
}

export interface CacheContext {
  input: RunInput;
  rec: RunRecord;
  state: StepState;
  step: Step;
  opts: Partial<ActivityOptions>;
  source(): string;
  refuse(message: string): never;
  compensations: Compensations;
}

/** The cache activities of one region's worker. */
function cacheIn(region: string, options: Partial<ActivityOptions> = {}): CacheActivities {
  return wf.proxyActivities<CacheActivities>({
    taskQueue: regionTaskQueue(region),
    startToCloseTimeout: '60s',
    heartbeatTimeout: '15s',
    retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 20 },
    cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    ...options,
  });
}

function message(err: unknown): string {
  if (err instanceof wf.ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

export async function runCacheAction(action: CacheAction, ctx: CacheContext): Promise<void> {
  const { input, rec, state } = ctx;
  const svc = { service: input.service };
  const cache = (rec.cache ??= {});
  switch (action) {
    case 'cache.fence': {
      const source = ctx.source();
      state.region = source;
      ctx.compensations.register(
        ctx.step.id,
        action,
        `unfence the cache in ${source}`,
        async () => (await cacheIn(source, COMPENSATION).cacheUnfence(svc)).detail,
      );
      try {
        cache.fence = await cacheIn(source, ctx.opts).cacheFence(svc);
        state.detail = `${cache.fence.alreadyFenced ? 'already fenced' : 'fenced'}${cache.fence.offset !== undefined ? ` at offset ${cache.fence.offset}` : ''}; ${cache.fence.detail}`;
      } catch (err) {
        const policy = input.mode === 'unplanned' ? ctx.step.unplanned?.onFailure : undefined;
        if (policy !== 'continue' && policy !== 'require-data-loss-ack') throw err;
        // The source's cache is gone with its region: what it had not sent is lost to the cache.
        cache.fence = {
          region: source,
          alreadyFenced: false,
          verified: false,
          detail: 'not fenced',
          error: message(err),
        };
        state.detail = `source cache unreachable, carried on (onFailure: ${policy}): ${cache.fence.error}`;
      }
      return;
    }
    case 'cache.promote': {
      state.region = input.target;
      // The database's promotion guard decided already whether this run may promote at all.
      if (!rec.promotion)
        ctx.refuse("cache.promote comes after db.promote: the cache follows the database's new writer");
      const planned = input.mode === 'planned';
      if (planned && !cache.fence?.verified && !cache.fence?.managed)
        ctx.refuse('cache.promote in a planned run needs a verified cache.fence first');
      // How long it waits for the fenced offset is the cache config's syncTimeout, read by the worker.
      cache.promotion = await cacheIn(input.target, ctx.opts).cachePromote({
        ...svc,
        mode: input.mode,
        source: ctx.source(),
        ...(planned && cache.fence?.offset !== undefined ? { offset: cache.fence.offset } : {}),
      });
      state.detail = cache.promotion.detail;
      return;
    }
    case 'cache.rejoin': {
      // A failback's target is the old primary. Its cache came back from an unplanned failover
      // still a primary, with writes the current one never had: it replicates from the current
      // primary (its own data replaced) before anything is fenced, promoted or routed to it.
      state.region = input.target;
      const current = ctx.source();
      const rejoin = await cacheIn(input.target, ctx.opts).cacheRepoint({
        ...svc,
        primaryRegion: current,
        regions: [input.target],
      });
      cache.rejoin = rejoin;
      const mine = rejoin.regions.find((r) => r.region === input.target);
      if (!mine?.following)
        ctx.refuse(
          `${input.target}'s cache does not follow ${current}'s (${mine?.detail ?? 'not found'}); nothing was fenced or moved`,
        );
      state.detail = mine.detail;
      return;
    }
    case 'cache.repoint': {
      state.region = input.target;
      cache.repoint = await cacheIn(input.target, ctx.opts).cacheRepoint({ ...svc, primaryRegion: input.target });
      state.detail = cache.repoint.regions.map((r) => `${r.region}: ${r.detail}`).join('; ');
      return;
    }
  }
}
