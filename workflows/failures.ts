// How a run fails, in terms a caller can tell apart (the CLI maps them to exit codes) and a
// person can act on.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/common';

/** Failure types a caller can tell apart. */
export const FAILURE = { refused: 'RunRefused', failed: 'RunFailed', aborted: 'RunAborted' } as const;

/** Ends the run as refused: what was asked cannot be done safely, and nothing more is attempted. */
export function refuse(message: string): never {
  throw ApplicationFailure.create({ type: FAILURE.refused, message, nonRetryable: true });
}

/** The message of the failure underneath an activity's or a child's wrapper. */
export function errorMessage(err: unknown): string {
  if (err instanceof wf.ActivityFailure && err.cause) return errorMessage(err.cause);
  if (err instanceof wf.ChildWorkflowFailure && err.cause) return errorMessage(err.cause);
  if (err instanceof Error) return err.message;
  return String(err);
}
