// Workflow ids and task queues of the trigger side. Pure: workflow code imports it.

/** The service's long-lived guardian: every alarm for the service is delivered to it. */
export function guardianWorkflowId(service: string): string {
  return `regionshift-guardian-${service}`;
}

/** The service's Route 53 health watcher (polls its regional health checks). */
export function healthWatcherWorkflowId(service: string): string {
  return `regionshift-health-${service}`;
}

/** Activities the intake process runs itself (Route 53 GetHealthCheckStatus). */
export const INTAKE_TASK_QUEUE = 'regionshift.intake';
