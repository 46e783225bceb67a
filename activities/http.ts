// http.call (workflows/app-steps.ts): one HTTP request to an application, made by the worker of
// the region the step names. The request arrives rendered (no secrets in it); credentials are
// added here from this worker's environment, by variable name, and never returned.
import { ApplicationFailure, Context } from '@temporalio/activity';

export interface HttpCallInput {
  url: string;
  method: string;
  headers: Record<string, string>;
  /** Header name → environment variable on this worker holding its value. */
  headersFromEnv: Record<string, string>;
  bearerTokenEnv?: string;
  /** Sent as is; `json` says whether it is JSON. */
  body?: string;
  json: boolean;
  /** Empty: any 2xx. */
  expectStatus: number[];
  timeoutMs: number;
  /** Sent as the Idempotency-Key header: the same on every retry of the step in this run. */
  idempotencyKey: string;
}

export interface HttpCallResult {
  region: string;
  status: number;
  attempt: number;
  /** The first line of the response body, for the run's record (at most 200 characters). */
  firstLine: string;
  ms: number;
}

export interface HttpActivities {
  appHttpCall(input: HttpCallInput): Promise<HttpCallResult>;
}

/** Failure types: a 4xx (or an unexpected non-5xx status) is the application's answer and is not retried. */
export const HTTP_REFUSED = 'HttpRefused';
const HTTP_RETRYABLE = 'HttpUnavailable';

function firstLineOf(text: string): string {
  return (text.split('\n').find((l) => l.trim()) ?? '').trim().slice(0, 200);
}

export function createHttpActivities(region: string, env: NodeJS.ProcessEnv = process.env): HttpActivities {
  const secret = (name: string, what: string): string => {
    const value = env[name];
    if (!value)
      throw ApplicationFailure.nonRetryable(
        `${what} comes from ${name}, which is not set on the worker of ${region}`,
        'HttpConfig',
      );
    return value;
  };
  return {
    async appHttpCall(input) {
      const headers: Record<string, string> = { ...input.headers, 'Idempotency-Key': input.idempotencyKey };
      if (input.json) headers['Content-Type'] ??= 'application/json';
      for (const [name, variable] of Object.entries(input.headersFromEnv))
        headers[name] = secret(variable, `header ${name}`);
      if (input.bearerTokenEnv) headers.Authorization = `Bearer ${secret(input.bearerTokenEnv, 'the bearer token')}`;
      const attempt = Context.current().info.attempt;
      const started = Date.now();
      const what = `${input.method} ${input.url}`;
      let res: Response;
      try {
        res = await fetch(input.url, {
          method: input.method,
          headers,
          body: input.body,
          signal: AbortSignal.any([AbortSignal.timeout(input.timeoutMs), Context.current().cancellationSignal]),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code;
        throw ApplicationFailure.retryable(
          `${what}: ${(err as Error).name === 'TimeoutError' ? `no answer within ${input.timeoutMs} ms` : (cause ?? (err as Error).message)}`,
          HTTP_RETRYABLE,
        );
      }
      const firstLine = firstLineOf(await res.text());
      const expected = input.expectStatus.length
        ? input.expectStatus.includes(res.status)
        : res.status >= 200 && res.status < 300;
      if (expected) return { region, status: res.status, attempt, firstLine, ms: Date.now() - started };
      const message = `${what} answered ${res.status}${firstLine ? `: ${firstLine}` : ''}`;
      // A server error or "too many requests" may pass; anything else is the application saying no.
      if (res.status >= 500 || res.status === 429) throw ApplicationFailure.retryable(message, HTTP_RETRYABLE);
      throw ApplicationFailure.nonRetryable(message, HTTP_REFUSED);
    },
  };
}
