import { PairCore } from './core.js';
import type { ResolvedLockOptions } from './options.js';
import type { RedisConnection } from './scripts.js';

/** One core and the users that share it, each with its own error listener. */
interface Shared {
  core: PairCore;
  users: Set<(err: Error) => void>;
}

/** Per lock connection, per set of lock options (as JSON): the core its users share. */
const shared = new WeakMap<RedisConnection, Map<string, Shared>>();

/** A user's hold on a shared core: `release()` once, at its close. */
export interface CoreLease {
  readonly core: PairCore;
  /**
   * Lets go of the core: the last user closes it (subscriber, session); the others wait for
   * the settles still being stored, so a closing user's finished runs are not handed over.
   */
  release(): Promise<void>;
}

/**
 * The `PairCore` for `client` and `options`, shared by every `PairedProcessor` of this
 * process that names the same lock connection object and the same lock options: one
 * session, one subscriber (one liveness channel), one health check and one owner watch per
 * process and lock store, however many queues it pairs. Errors of the shared core reach every
 * user's `report` (they concern the one lock store they share).
 */
export function leaseCore(
  client: RedisConnection,
  options: Readonly<ResolvedLockOptions>,
  report: (err: Error) => void,
): CoreLease {
  let byOptions = shared.get(client);
  if (byOptions === undefined) {
    byOptions = new Map();
    shared.set(client, byOptions);
  }
  const key = JSON.stringify(options);
  let entry = byOptions.get(key);
  if (entry === undefined || entry.core.closing) {
    const users = new Set<(err: Error) => void>();
    entry = {
      users,
      core: new PairCore(client, options, (err) => {
        for (const user of users) user(err);
      }),
    };
    byOptions.set(key, entry);
  }
  const held = entry;
  // One listener per lease, even when one function is passed twice.
  const user = (err: Error): void => report(err);
  held.users.add(user);
  let released = false;
  return {
    core: held.core,
    async release(): Promise<void> {
      if (released) return;
      released = true;
      held.users.delete(user);
      if (held.users.size > 0) return held.core.flush();
      if (byOptions.get(key) === held) byOptions.delete(key);
      await held.core.close();
    },
  };
}
