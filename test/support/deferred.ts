/** A promise with its resolve function outside, for tests that wait on events. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Resolves when `signal` aborts, with its reason. */
export function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener('abort', () => resolve(signal.reason), { once: true });
  });
}

/**
 * The arguments of `emitter`'s next `event`. Unlike `events.once`, an 'error' event meanwhile
 * does not reject it: the lock reports the trouble a test provokes on 'error' and then emits
 * the event the test waits for.
 */
export function nextEvent<A extends unknown[]>(
  emitter: { once(event: string, listener: (...args: A) => void): unknown },
  event: string,
): Promise<A> {
  return new Promise((resolve) => {
    emitter.once(event, (...args: A) => resolve(args));
  });
}
