/**
 * The back-off loop that stores a settle (and a claim's answer) whatever the lock store says
 * meanwhile, driven by fake timers: the pauses double from 100 ms to the cap with ±20 %
 * jitter, each retried error is told before its pause, and the errors the policy stops on
 * are rethrown at once. The lock's own use of it is covered against a real Redis in
 * test/faults/lock-store-refusals.test.ts and test/lock/durability.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { retryWithBackoff } from '../../src/lock/retry.js';

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5); // no jitter: 100, 200, 400, … ms
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** An attempt that fails `failures` times with `make(n)`, then answers 'stored'. */
function failing(failures: number, make = (n: number) => new Error(`refused ${n}`)) {
  const calls: number[] = [];
  const attempt = async (n: number): Promise<string> => {
    calls.push(Date.now());
    if (n < failures) throw make(n);
    return 'stored';
  };
  return { attempt, calls };
}

/** The time between consecutive attempts. */
function gaps(calls: number[]): number[] {
  return calls.slice(1).map((at, i) => at - (calls[i] ?? at));
}

describe('retryWithBackoff', () => {
  it('pauses 100, 200, 400 … ms up to the cap between attempts, telling each error', async () => {
    const { attempt, calls } = failing(6);
    const told: string[] = [];
    const result = retryWithBackoff(attempt, {
      stop: () => false,
      retrying: (err, n) => told.push(`${n}: ${err.message}`),
      capMs: 1_000,
    });
    await vi.advanceTimersByTimeAsync(10_000);
    await expect(result).resolves.toBe('stored');
    expect(gaps(calls)).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(told).toEqual([0, 1, 2, 3, 4, 5].map((n) => `${n}: refused ${n}`));
  });

  it('jitters each pause by at most 20 %', async () => {
    vi.mocked(Math.random).mockReturnValue(0.999);
    const { attempt, calls } = failing(2);
    const result = retryWithBackoff(attempt, {
      stop: () => false,
      retrying: () => {},
      capMs: 2_000,
    });
    await vi.advanceTimersByTimeAsync(1_000);
    await expect(result).resolves.toBe('stored');
    expect(gaps(calls)).toEqual([120, 240]);
  });

  it('rethrows at once what the policy stops on, without a pause or a report', async () => {
    const { attempt, calls } = failing(5, (n) => new Error(n === 1 ? 'ours' : 'transient'));
    const told: Error[] = [];
    const result = retryWithBackoff(attempt, {
      stop: (err) => err.message === 'ours',
      retrying: (err) => told.push(err),
      capMs: 2_000,
    });
    const settled = expect(result).rejects.toThrow('ours');
    await vi.advanceTimersByTimeAsync(1_000);
    await settled;
    expect(calls).toHaveLength(2);
    expect(told.map((e) => e.message)).toEqual(['transient']);
  });

  it('turns a thrown non-Error into an Error', async () => {
    const result = retryWithBackoff(
      async () => {
        throw 'a string';
      },
      { stop: () => true, retrying: () => {}, capMs: 2_000 },
    );
    await expect(result).rejects.toBeInstanceOf(Error);
  });
});
