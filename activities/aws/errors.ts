// Sorting AWS SDK errors into what a retry can fix and what it cannot.
//
// - throttled: the API asked us to slow down (Throttling, RequestLimitExceeded, HTTP 429, …);
// - transient: the API or the network failed in a way that usually heals (5xx, resets, timeouts);
// - unavailable: the endpoint does not offer the operation at all (InvalidAction, HTTP 501, or a
//   stand-in such as moto answering a 5xx that is not an AWS error document);
// - permanent: the request itself is refused (a fault naming a state, a missing resource, a bad
//   parameter, access denied): retrying the same request gives the same answer.
//
// The SDK already retried throttled and transient errors with backoff (clients.ts,
// SDK_MAX_ATTEMPTS) before we see them; Temporal then retries the activity with its own backoff.
import { ApplicationFailure } from '@temporalio/common';

export type AwsErrorKind = 'throttled' | 'transient' | 'unavailable' | 'permanent';

const THROTTLING = new Set([
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'SlowDown',
  'PriorRequestNotComplete',
  'BandwidthLimitExceeded',
]);
const TRANSIENT = new Set([
  'InternalFailure',
  'InternalError',
  'InternalServerError',
  'InternalServerException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'EndpointTemporarilyUnavailableException',
]);
const UNAVAILABLE = new Set([
  'InvalidAction',
  'UnknownOperationException',
  'UnsupportedOperation',
  'NotImplemented',
  'OperationNotSupported',
]);
const NETWORK =
  /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|ECONNABORTED|UND_ERR_\w+)$/;

interface SdkErrorShape {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: 'client' | 'server';
  cause?: unknown;
}

/** The AWS error code (FailoverGlobalCluster faults, Throttling, …), or the Node error code. */
export function awsErrorCode(err: unknown): string {
  const e = (err ?? {}) as SdkErrorShape;
  return e.Code ?? (e.name && e.name !== 'Error' ? e.name : undefined) ?? e.code ?? 'Error';
}

export function httpStatusOf(err: unknown): number | undefined {
  return ((err ?? {}) as SdkErrorShape).$metadata?.httpStatusCode;
}

export function classifyAwsError(err: unknown): AwsErrorKind {
  const e = (err ?? {}) as SdkErrorShape;
  const code = awsErrorCode(err);
  const status = httpStatusOf(err);
  if (THROTTLING.has(code) || status === 429) return 'throttled';
  if (UNAVAILABLE.has(code) || status === 501) return 'unavailable';
  // An answer that is not an AWS error document: the SDK could not parse it. From AWS that does
  // not happen for an operation it has; a stand-in (moto) answers operations it lacks this way.
  if (status !== undefined && status >= 500 && /Deserialization error|parse error/i.test(e.message ?? ''))
    return 'unavailable';
  if (TRANSIENT.has(code) || (status !== undefined && status >= 500) || e.$fault === 'server') return 'transient';
  const sys = e.code ?? ((e.cause ?? {}) as SdkErrorShape).code;
  if (typeof sys === 'string' && NETWORK.test(sys)) return 'transient';
  if (status === undefined && /socket hang up|network|connect|timed? ?out/i.test(e.message ?? '')) return 'transient';
  return 'permanent';
}

export function errorText(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(errorText).join('; ');
  const e = (err ?? {}) as SdkErrorShape;
  const code = awsErrorCode(err);
  const message = (e.message ?? String(err)).split('\n')[0]!;
  return code && code !== 'Error' && !message.startsWith(code) ? `${code}: ${message}` : message;
}

/**
 * An AWS error as a Temporal failure: throttled and transient ones retryable, the others not.
 * `what` says which call for which service; `hint` says what a person should do about it.
 */
export function awsFailure(err: unknown, what: string, hint?: string): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  const kind = classifyAwsError(err);
  const code = awsErrorCode(err);
  const suffix = hint
    ? `; ${hint}`
    : kind === 'throttled'
      ? '; AWS is throttling these calls: retrying with backoff'
      : '';
  return ApplicationFailure.create({
    message: `${what} failed: ${errorText(err)}${suffix}`,
    type: kind === 'throttled' ? 'Throttled' : code,
    nonRetryable: kind === 'permanent' || kind === 'unavailable',
    cause: err instanceof Error ? err : undefined,
  });
}
