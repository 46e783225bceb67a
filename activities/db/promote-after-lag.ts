// dbPromoteAfterLag: a region's lag wait and its promotion as one activity (workflows/actions.ts,
// promoteAfterLag), made of whichever provider's two activities serve the service.
import { ApplicationFailure } from '@temporalio/common';
import type { LagConfirmedDetails, LagResult, RegionActivities } from '../../src/contract/activities';

export function promoteAfterLag(
  waitForLag: RegionActivities['dbWaitForLag'],
  promote: RegionActivities['dbPromote'],
): RegionActivities['dbPromoteAfterLag'] {
  return async (input) => {
    const lag = await waitForLag(input);
    try {
      return { ...(await promote(input)), lag };
    } catch (err) {
      throw failedAfterLag(err, lag);
    }
  };
}

/**
 * A promotion that failed after its lag was confirmed: the same failure (retryable or not, same
 * type), carrying the confirmation so the run records the lag step as done (LagConfirmedDetails).
 */
function failedAfterLag(err: unknown, lag: LagResult): ApplicationFailure {
  const details: LagConfirmedDetails[] = [{ lagConfirmed: lag }];
  const cause = err instanceof Error ? err : new Error(String(err));
  return ApplicationFailure.create({
    message: cause.message,
    type: (err instanceof ApplicationFailure ? err.type : cause.name) ?? undefined,
    nonRetryable: err instanceof ApplicationFailure && err.nonRetryable === true,
    details,
    cause,
  });
}
