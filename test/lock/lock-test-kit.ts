import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach } from 'vitest';
import { PairedLock, type PairedLockOptions } from '../../src/index.js';
import type { ClaimReply } from '../../src/lock/execute.js';
import { recordAddress } from '../../src/lock/keys.js';
import type { AcquireArgs } from '../../src/lock/scripts.js';
import { StartedClaim } from '../../src/lock/started-claim.js';
import { deferred } from '../support/deferred.js';
import type { TestRedis } from '../support/redis.js';
import { uniquePrefix } from '../support/redis.js';

export type Storage = 'key' | 'hash';

/** Builds locks for one test, each on its own connection, and closes them after it. */
export function lockKit(redis: () => TestRedis) {
  const locks: PairedLock[] = [];
  let prefix = uniquePrefix('lock');
  beforeEach(() => {
    prefix = uniquePrefix('lock');
  });
  afterEach(async () => {
    await Promise.all(locks.splice(0).map((lock) => lock.close()));
  });
  return {
    /** A fresh random prefix for each test, so tests sharing a REDIS_URL never meet. */
    get prefix() {
      return prefix;
    },
    /** A lock on `client` (default: a new connection), closed after the test. */
    lock(
      options: Partial<PairedLockOptions> & { member: string },
      prefix: string,
      client: Redis = redis().connect(),
    ): PairedLock {
      const lock = new PairedLock(client, { prefix, ...options });
      locks.push(lock);
      return lock;
    },
  };
}

export function runOptions(storage: Storage, hash: string): { hash?: string } {
  return storage === 'hash' ? { hash } : {};
}

/**
 * Starts `lock.run(id, …)` with a routine that holds until `release()` and then returns
 * `result`; `signal` resolves with the routine's signal once it runs.
 */
export function heldRun<T>(
  lock: PairedLock,
  id: string,
  result: T,
  options: { hash?: string } = {},
) {
  const started = deferred<AbortSignal>();
  const released = deferred();
  const run = lock.run(
    id,
    async ({ signal }) => {
      started.resolve(signal);
      await released.promise;
      return result;
    },
    options,
  );
  return { signal: started.promise, release: () => released.resolve(), run };
}

export function taskId(): string {
  return `task-${randomUUID()}`;
}

/** Makes the current lease look expired, as if the owner had stopped heartbeating long ago. */
export async function expireLease(
  client: Redis,
  prefix: string,
  id: string,
  hash?: string,
): Promise<void> {
  const a = recordAddress(prefix, id, hash);
  const raw = a.field === '' ? await client.get(a.key) : await client.hget(a.key, a.field);
  if (raw === null) throw new Error(`no record for ${id}`);
  const record = JSON.parse(raw) as { leaseUntil: number };
  record.leaseUntil = 1;
  if (a.field === '') await client.set(a.key, JSON.stringify(record), 'KEEPTTL');
  else await client.hset(a.key, a.field, JSON.stringify(record));
}

/** All keys under a prefix (SCAN, never KEYS). */
export async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    found.push(...batch);
  } while (cursor !== '0');
  return found;
}

/**
 * Arguments of an acquire by member 'us' (a shadow of eu's records): a 60 s lease, a 100 ms
 * grace, no liveness channel or session of its own; `overrides` for the rest.
 */
export function usAcquire(overrides: Partial<AcquireArgs> = {}): AcquireArgs {
  return {
    member: 'us',
    token: 'us-token',
    leaseMs: 60_000,
    retentionMs: 120_000,
    policy: 'takeover',
    liveChannel: '',
    graceMs: 100,
    warmupS: 0,
    sessionKey: '',
    ...overrides,
  };
}

/**
 * A started claim already on the wire (sent as a plain claim) whose answer is `answer`: a run
 * given it stores its result after the claim, as one that awaited I/O before it ended.
 */
export async function sentClaim(answer: Promise<ClaimReply>): Promise<StartedClaim> {
  const claim = new StartedClaim(() => answer);
  await new Promise((resolve) => setImmediate(resolve));
  return claim;
}
