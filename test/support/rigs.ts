/**
 * Starts test rigs in parallel, like Promise.all, but when one fails the others that did start
 * are stopped before the error is thrown: a failed beforeAll must not leave servers running
 * (afterAll cannot stop what was never assigned).
 */
export async function startRigs<T extends readonly unknown[]>(
  starts: readonly [...{ [K in keyof T]: Promise<T[K]> }],
): Promise<T> {
  const settled = await Promise.allSettled(starts as readonly Promise<unknown>[]);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (!failed) return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
  await Promise.allSettled(settled.flatMap((s) => (s.status === 'fulfilled' ? [stopRig(s.value)] : [])));
  throw failed.reason;
}

function stopRig(rig: unknown): Promise<unknown> {
  const r = rig as { teardown?: () => Promise<unknown>; stop?: () => Promise<unknown>; close?: () => Promise<unknown> };
  const stop = r.teardown ?? r.stop ?? r.close;
  return stop ? stop.call(r) : Promise.resolve();
}
