import { asError } from '../errors.js';
import { backoffMs } from './reply-errors.js';

/** What to do when an attempt throws. */
export interface RetryPolicy {
  /** Whether `err` ends the retries: it is rethrown. */
  stop(err: Error): boolean;
  /** Told of each error that is retried, before the pause. */
  retrying(err: Error, attempt: number): void;
  /** Longest pause between two attempts (back-off from 100 ms, doubling, ±20 % jitter). */
  capMs: number;
}

/** The global timer (not `timers/promises`), so that fake timers drive the pauses in tests. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * `attempt(0)`, and again after a back-off for as long as it throws what `policy.stop` lets
 * through: the settle of a record and the answer to a claim, which must end stored whatever
 * the lock store says meanwhile (a failover, an OOM, a person fixing an ACL).
 */
export async function retryWithBackoff<T>(
  attempt: (n: number) => Promise<T>,
  policy: RetryPolicy,
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      const error = asError(err);
      if (policy.stop(error)) throw error;
      policy.retrying(error, n);
      await pause(backoffMs(n, policy.capMs));
    }
  }
}
