// Route 53 health check observations to a verdict. Pure (the health watcher workflow uses it).

/** One checker's report, as GetHealthCheckStatus returns it (HealthCheckObservations[]). */
export interface HealthObservation {
  /** The Route 53 checker region. */
  region?: string;
  /** StatusReport.Status, e.g. "Success: HTTP Status Code 200, OK" or "Failure: Connection timed out…". */
  status?: string;
  /** StatusReport.CheckedTime (ISO). */
  checkedAt?: string;
}

export interface HealthVerdict {
  verdict: 'healthy' | 'failing' | 'unknown';
  healthy: number;
  total: number;
  /** A failing checker's status line, for the alarm's reason. */
  sample?: string;
}

/**
 * Route 53 calls an endpoint healthy when more than `healthyShare` of its checkers (18% by
 * default) report success. No observations at all tells nothing: unknown, never failing.
 */
export function healthVerdict(observations: HealthObservation[], healthyShare: number): HealthVerdict {
  const reports = observations.filter((o) => typeof o.status === 'string' && o.status.length > 0);
  const total = reports.length;
  if (total === 0) return { verdict: 'unknown', healthy: 0, total: 0 };
  const healthy = reports.filter((o) => /^success/i.test(o.status!)).length;
  const sample = reports.find((o) => !/^success/i.test(o.status!))?.status;
  const verdict = healthy / total > healthyShare ? 'healthy' : 'failing';
  return { verdict, healthy, total, ...(sample ? { sample } : {}) };
}
