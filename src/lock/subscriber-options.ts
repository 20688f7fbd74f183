import type { Redis, RedisOptions } from 'ioredis';

/**
 * The subscriber's liveness channel must be back within `livenessGraceMs` (100 ms) of a
 * dropped connection, or shadows take this process for dead and run its jobs again.
 * ioredis 6 waits 50–250 ms before its first reconnect (a jittered back-off): measured after
 * `CLIENT KILL`, the channel stayed empty 115–207 ms and running jobs were taken over. So
 * this connection retries once at once, then follows the client's own strategy.
 */
export function subscriberOptions(client: Redis): Partial<RedisOptions> {
  // No ready check (an INFO before resubscribing): it costs a round trip per reconnect, and
  // over a WAN the channel then stays empty about three round trips instead of one and a
  // half (measured at 80 ms: 243–275 ms against 131–167 ms). SUBSCRIBE needs no loaded data.
  //
  // No automatic resubscribe: ioredis sends it with a promise nobody awaits, which rejects
  // unhandled ('Connection is closed.') when the connection ends again before the answer
  // (seen in CI on a lock store restart). Each subscriber resubscribes on 'ready' itself,
  // with the answer handled. An offline queue always, so that a subscribe sent before the
  // connection is up waits for it even when the client's own options turned the queue off.
  const options: Partial<RedisOptions> = {
    enableReadyCheck: false,
    enableOfflineQueue: true,
    autoResubscribe: false,
  };
  const strategy = client.options.retryStrategy;
  if (typeof strategy !== 'function') return options; // reconnects turned off: keep it so
  return { ...options, retryStrategy: (times) => (times === 1 ? 0 : strategy(times - 1)) };
}
