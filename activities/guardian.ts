// A run tells its service's guardian that it ended from the control worker it runs on, as a local
// activity (workflows/guardian.ts, notifyGuardianNow). Sent by the workflow as a signal, the
// signal's outcome would come back as an event the workflow has to take in: one more workflow
// task, a round trip through the server, before the run can close.
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { RunSummary } from '../src/contract/guardian/types';

export interface GuardianNoticeInput {
  guardianWorkflowId: string;
  signal: string;
  summary: RunSummary;
}

export interface GuardianNoticeActivities {
  /** False when the service has no guardian (none is configured, or it has not started yet). */
  tellGuardian(input: GuardianNoticeInput): Promise<boolean>;
}

export function createGuardianNoticeActivities(): GuardianNoticeActivities {
  return {
    async tellGuardian({ guardianWorkflowId, signal, summary }) {
      try {
        await Context.current().client.workflow.getHandle(guardianWorkflowId).signal(signal, summary);
        return true;
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return false;
        throw err;
      }
    },
  };
}
