/**
 * Fails a test that leaves a connection, timer, server or child process behind. An async
 * hook records every such resource created during the test; after the test each must be
 * gone (closed, cleared, exited) within a grace period.
 */
import { createHook } from 'node:async_hooks';
import { afterEach, beforeEach } from 'vitest';
import { HOOK_TIMEOUT_MS } from './timeouts.js';
import { isUntracked } from './untracked.js';

const WATCHED = new Set(['TCPWRAP', 'TCPSERVERWRAP', 'Timeout', 'PROCESSWRAP', 'PIPEWRAP']);
const GRACE_MS = 3_000;

/** What was left behind, with where it was made (a leak seen once in CI must say whose it is). */
const live = new Map<
  number,
  { type: string; timeoutMs: number | undefined; stack: string | undefined }
>();
let tracking = false;
let newestTimeout: number | undefined;

createHook({
  init(asyncId, type, _trigger, resource) {
    if (!tracking || !WATCHED.has(type) || isUntracked()) return;
    const timeoutMs =
      type === 'Timeout' ? (resource as { _idleTimeout?: number })._idleTimeout : undefined;
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 16;
    const frames = new Error().stack?.split('\n').slice(1) ?? [];
    // AbortSignal.timeout's timer (node-redis arms one per command): unref'd, nobody can
    // clear it, and it ends by itself holding nothing; not a leak of the test's.
    //
    // BullMQ 6.7's Valkey GLIDE adapter does not close the client it makes lazily
    // (`ensureRaw`, e.g. a worker's blocking connection): a plain BullMQ Worker on GLIDE leaves
    // its socket open after close() too. BullMQ's, not the test's (docs/deployment.md).
    if (
      frames.some((f) => f.includes('setWeakAbortSignalTimeout')) ||
      (type === 'PIPEWRAP' && frames.some((f) => f.includes('ValkeyGlideAdapter.ensureRaw')))
    ) {
      Error.stackTraceLimit = limit;
      return;
    }
    // Not the hook's own frames, nor Node's: the first frame left is whose it is.
    const stack = frames
      .filter((f) => !f.includes('node:internal') && !f.includes('support/leaks.ts'))
      .join('\n');
    Error.stackTraceLimit = limit;
    live.set(asyncId, { type, timeoutMs, stack });
    if (type === 'Timeout') newestTimeout = asyncId;
  },
  destroy(asyncId) {
    live.delete(asyncId);
  },
}).enable();

function describeLeaks(ignore: number | undefined): string[] {
  const counts = new Map<string, number>();
  for (const [id, { type }] of live) {
    if (id !== ignore) counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return [...counts].map(([type, n]) => `${n} × ${type}`);
}

/** Where the first few leaks were made: their type, timer length and creation stack. */
function whereMade(ignore: number | undefined): string {
  return [...live]
    .filter(([id]) => id !== ignore)
    .slice(0, 3)
    .map(([, { type, timeoutMs, stack }]) => {
      const ms = timeoutMs === undefined ? '' : ` (${timeoutMs} ms)`;
      return `${type}${ms} made at:\n${stack ?? '  (no stack)'}`;
    })
    .join('\n');
}

beforeEach(() => {
  live.clear();
  tracking = true;
});

afterEach(async () => {
  tracking = false;
  // vitest arms this hook's own timeout timer just before calling it: not the test's leak.
  const own =
    newestTimeout !== undefined && live.get(newestTimeout)?.timeoutMs === HOOK_TIMEOUT_MS
      ? newestTimeout
      : undefined;
  const deadline = Date.now() + GRACE_MS;
  let leaked = describeLeaks(own);
  while (leaked.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25));
    leaked = describeLeaks(own);
  }
  const where = leaked.length > 0 ? whereMade(own) : '';
  live.clear();
  if (leaked.length > 0) {
    throw new Error(
      `test leaked: ${leaked.join(', ')} (close clients, clear timers, kill children)\n${where}`,
    );
  }
});
