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

const live = new Map<number, { type: string; timeoutMs: number | undefined }>();
let tracking = false;
let newestTimeout: number | undefined;

createHook({
  init(asyncId, type, _trigger, resource) {
    if (!tracking || !WATCHED.has(type) || isUntracked()) return;
    const timeoutMs =
      type === 'Timeout' ? (resource as { _idleTimeout?: number })._idleTimeout : undefined;
    live.set(asyncId, { type, timeoutMs });
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
  live.clear();
  if (leaked.length > 0) {
    throw new Error(
      `test leaked: ${leaked.join(', ')} (close clients, clear timers, kill children)`,
    );
  }
});
