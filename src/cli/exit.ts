/** Exit codes every command uses, so scripts can tell a refusal from a failure. */
export const EXIT = {
  ok: 0,
  /** The operation ran and failed (a step failed, a component did not come up). */
  failed: 1,
  /** The input was wrong (unknown service, bad flag, invalid file): nothing was done. */
  badInput: 2,
  /** The request was valid but refused (a run is already in progress, not allowed to approve). */
  refused: 3,
} as const;
