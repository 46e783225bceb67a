// Workflow ids are derived from the service: one id per service is what makes single flight
// (docs/safety.md, invariant 2) a property of Temporal rather than of our own locking.

export function runWorkflowId(service: string): string {
  return `regionshift-${service}`;
}

export function fenceOnReturnWorkflowId(service: string, region: string): string {
  return `regionshift-fence-${service}-${region}`;
}

/** The watcher that re-points a region's standby once it answers (db.repointStandbys). */
export function followWatcherWorkflowId(service: string, region: string): string {
  return `regionshift-follow-${service}-${region}`;
}

/** One evacuation per region at a time; each service it moves still runs under runWorkflowId. */
export function evacuationWorkflowId(region: string): string {
  return `regionshift-evacuate-${region}`;
}

export function regionTaskQueue(region: string): string {
  return `region.${region}`;
}

export const CONTROL_TASK_QUEUE = 'regionshift.control';
