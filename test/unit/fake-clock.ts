/**
 * Fake timers for unit tests of the lock's timekeeping. The lock reads its clock with
 * `performance.now()` imported from node:perf_hooks, an object vitest's fake timers do not
 * replace (they swap `globalThis.performance` for a new one): it is made to read the fake
 * `Date.now()`, which advances with the fake timers.
 *
 * `advance(ms)` moves time and runs the timers due on the way (and the promises they start);
 * `freeze(ms)` moves time without running any, as after a SIGSTOP or a long GC pause, when
 * timers that were due have not had their turn yet.
 */
import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, vi } from 'vitest';

export function useFakeClock() {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
    vi.spyOn(performance, 'now').mockImplementation(() => Date.now());
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });
  return {
    now: (): number => Date.now(),
    advance: (ms: number): Promise<void> => vi.advanceTimersByTimeAsync(ms).then(() => {}),
    freeze: (ms: number): void => {
      vi.setSystemTime(Date.now() + ms);
    },
  };
}

/** A promise that never settles: a command the lock store never answers. */
export function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}
