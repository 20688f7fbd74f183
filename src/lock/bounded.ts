import type { RedisConnection } from './scripts.js';

export const TIMED_OUT = Symbol('timed out');

/** `promise`'s value, or `TIMED_OUT` if it has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Longest a clean-up command on the way out (deleting the session key, QUIT) is waited for.
 * It is best-effort: what it would remove runs out by itself.
 */
export const CLOSE_TIMEOUT_MS = 1_500;

/**
 * Sends a best-effort clean-up command on close, only if the connection is ready: on one that
 * is reconnecting (or never connected) the command would wait in ioredis' offline queue as long
 * as its retries allow, forever under `maxRetriesPerRequest: null`, and close() with it.
 * Errors and a late answer are ignored.
 */
export async function bestEffort(
  client: RedisConnection,
  command: () => Promise<unknown>,
  ms = CLOSE_TIMEOUT_MS,
): Promise<void> {
  if (client.status !== 'ready') return;
  try {
    await within(command(), ms);
  } catch {
    // Unreachable after all: what the command would remove runs out by itself.
  }
}
