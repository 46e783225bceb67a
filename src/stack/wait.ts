// Polling with a deadline: readiness is checked, never assumed after a fixed sleep.
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class NotReadyError extends Error {
  override name = 'NotReadyError';
}

export interface WaitOptions {
  /** What is awaited, for the error message: "temporal on 127.0.0.1:7233 answering". */
  what: string;
  timeoutMs: number;
  intervalMs?: number;
  /** Checked between probes: a reason to give up now (the process exited), or undefined. */
  abort?: () => string | undefined;
}

/** Calls `probe` until it returns a value other than undefined/false, or the deadline passes. */
export async function waitUntil<T>(probe: () => Promise<T | undefined | false>, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError = '';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = (err as Error).message;
    }
    const reason = opts.abort?.();
    if (reason) throw new NotReadyError(`${opts.what}: ${reason}`);
    if (Date.now() >= deadline) {
      const seconds = Math.round(opts.timeoutMs / 1000);
      throw new NotReadyError(
        `${opts.what}: not ready after ${seconds}s${lastError ? ` (last error: ${lastError})` : ''}`,
      );
    }
    await sleep(opts.intervalMs ?? 200);
  }
}
