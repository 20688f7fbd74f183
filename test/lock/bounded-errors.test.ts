/**
 * A lock store that does not answer is reported as `LockStoreUnavailableError` (a `code`, the
 * connection's error as `cause`) within `lockStoreTimeoutMs`, whatever the connection's own
 * retry settings: with ioredis' defaults (`new Redis(url)`, as the README builds a lock) a run
 * used to reject only after about 68 s with a raw `MaxRetriesPerRequestError`, and with
 * `maxRetriesPerRequest: null` (BullMQ's setting) jobs sat active forever and
 * `worker.close()` never returned.
 */
import { performance } from 'node:perf_hooks';
import { Queue, Worker } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import {
  LockStoreUnavailableError,
  PairedLock,
  PairedProcessor,
  type RedisConnection,
} from '../../src/index.js';
import { resolveLockOptions } from '../../src/lock/options.js';
import { useClosers } from '../support/closers.js';
import { useRedis } from '../support/file-redis.js';
import { freePort, uniquePrefix } from '../support/redis.js';
import { taskId } from './lock-test-kit.js';

const BOUND_MS = 1_000;

/** What `promise` rejects with, and after how many ms. */
async function rejection(promise: Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const started = performance.now();
  const err = await promise.then(
    () => new Error('resolved, expected a rejection'),
    (e: unknown) => e,
  );
  return { err, ms: performance.now() - started };
}

function expectUnavailable(err: unknown, id?: string): LockStoreUnavailableError {
  expect(err).toBeInstanceOf(LockStoreUnavailableError);
  const typed = err as LockStoreUnavailableError;
  expect(typed.code).toBe('ERR_PAIRED_LOCK_STORE_DOWN');
  expect(typed.cause).toBeInstanceOf(Error);
  if (id !== undefined) {
    expect(typed.id).toBe(id);
    expect(typed.message).toContain(id);
  }
  return typed;
}

/** Resolves `promise` or fails the test after `ms` (close() used to hang forever). */
async function within(promise: Promise<unknown>, ms: number, what: string): Promise<number> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not return within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
  return performance.now() - started;
}

describe('PairedLock on new Redis(url) (ioredis defaults) when the lock store is down', () => {
  const redis = useRedis({ killable: true });
  const closers = useClosers();

  /** A lock bounded by BOUND_MS on a client with `clientOptions` (default: ioredis' defaults). */
  function boundedLock(clientOptions: RedisOptions = {}): { lock: PairedLock; client: Redis } {
    const client = new Redis(redis().url, clientOptions);
    client.on('error', () => {});
    closers.push(async () => client.disconnect());
    const lock = new PairedLock(client, {
      member: 'eu',
      prefix: uniquePrefix('bounded'),
      lockStoreTimeoutMs: BOUND_MS,
    });
    lock.on('error', () => {});
    closers.push(() => within(lock.close(), 10_000, 'lock.close()').then(() => {}));
    return { lock, client };
  }

  /** A lock on a client with every ioredis default, as the README builds one. */
  const readmeLock = () => boundedLock();

  it('rejects run() with LockStoreUnavailableError within the bound, for a lock that was ready and for a new one', async () => {
    const { lock } = readmeLock();
    expect(await lock.run(taskId(), () => 'before')).toMatchObject({ role: 'executor' });
    const fresh = readmeLock().lock; // never ready: its start-up checks meet the dead store
    await redis().kill();
    try {
      const id = taskId();
      const ready = await rejection(lock.run(id, () => 'during'));
      expectUnavailable(ready.err, id);
      expect(ready.ms).toBeLessThan(3 * BOUND_MS);

      const freshId = taskId();
      const first = await rejection(fresh.run(freshId, () => 'during'));
      expectUnavailable(first.err, freshId);
      expect(first.ms).toBeLessThan(3 * BOUND_MS);
      const waited = await rejection(fresh.waitUntilReady());
      expectUnavailable(waited.err);
      expect(waited.ms).toBeLessThan(3 * BOUND_MS);

      // close() sends nothing to a store it cannot reach (its session key runs out by itself).
      expect(await within(lock.close(), 20_000, 'lock.close()')).toBeLessThan(3_000);
      expect(await within(fresh.close(), 20_000, 'lock.close()')).toBeLessThan(3_000);
    } finally {
      await redis().restart();
    }
  });

  it('maps a connection error from acquire to LockStoreUnavailableError with it as cause', async () => {
    // No offline queue: commands fail at once while the store is down, with ioredis' own error.
    const { lock, client } = boundedLock({ enableOfflineQueue: false });
    // Without an offline queue, a command fails until the connections are up: retry.
    await vi.waitFor(() => lock.waitUntilReady(), { timeout: 5_000, interval: 50 });
    await redis().kill();
    try {
      await vi.waitFor(() => expect(client.status).not.toBe('ready'), { timeout: 5_000 });
      const id = taskId();
      const { err, ms } = await rejection(lock.run(id, () => 'during'));
      const typed = expectUnavailable(err, id);
      expect(typed.timeoutMs).toBeUndefined(); // the connection's error, not the bound
      expect((typed.cause as Error).message).toMatch(/enableOfflineQueue|writeable|closed/i);
      expect(ms).toBeLessThan(BOUND_MS);
    } finally {
      await redis().restart();
    }
  });
});

describe('PairedProcessor whose lock connection never becomes ready (maxRetriesPerRequest: null)', () => {
  const queueRedis = useRedis();
  const closers = useClosers();

  it('reports LockStoreUnavailableError within the bound, parks the job, and worker.close() and paired.close() return', async () => {
    // A mistyped lock URL: a port nobody listens on. Commands wait in the offline queue forever.
    const lockConnection = new Redis({ port: await freePort(), maxRetriesPerRequest: null });
    lockConnection.on('error', () => {});
    closers.push(async () => lockConnection.disconnect());
    const name = uniquePrefix('q');
    const ran = vi.fn();
    const paired = new PairedProcessor(ran, {
      twin: 'eu',
      lockConnection,
      lockStoreTimeoutMs: BOUND_MS,
      lockStoreRetryMs: 200,
    });
    const errors: { err: Error; at: number }[] = [];
    paired.on('error', (err) => errors.push({ err, at: performance.now() }));
    const worker = new Worker(name, paired.processor, {
      connection: queueRedis().connect({ maxRetriesPerRequest: null }),
    });
    paired.attach(worker);
    const queue = new Queue(name, { connection: queueRedis().connect() });
    let closed = false;
    closers.push(async () => {
      if (closed) return;
      await within(worker.close(), 10_000, 'worker.close()');
      await within(paired.close(), 10_000, 'paired.close()');
      await queue.close();
    });
    let activeAt = Number.NaN;
    worker.once('active', () => {
      activeAt = performance.now();
    });
    await queue.add('work', {}, { jobId: 'job-1' });

    const about = (e: Error) => e instanceof LockStoreUnavailableError && e.id === 'job-1';
    await vi.waitFor(() => expect(errors.some(({ err }) => about(err))).toBe(true), {
      timeout: 10_000,
      interval: 20,
    });
    const first = errors.find(({ err }) => about(err));
    expectUnavailable(first?.err, 'job-1');
    expect(first?.err.message).toMatch(/parked/);
    expect((first?.at ?? Number.POSITIVE_INFINITY) - activeAt).toBeLessThan(3 * BOUND_MS);
    // The copy was parked, not left active; nothing ran uncoordinated.
    await vi.waitFor(
      async () =>
        expect(['delayed', 'waiting', 'prioritized']).toContain(await queue.getJobState('job-1')),
      { timeout: 10_000, interval: 50 },
    );
    expect(ran).not.toHaveBeenCalled();

    closed = true;
    const workerMs = await within(worker.close(), 20_000, 'worker.close()');
    const pairedMs = await within(paired.close(), 20_000, 'paired.close()');
    await queue.close();
    expect(workerMs).toBeLessThan(3 * BOUND_MS + 2_000);
    expect(pairedMs).toBeLessThan(3_000);
  });
});

describe('option lockStoreTimeoutMs', () => {
  // Validation throws before any connection is made.
  const client = { evalsha: () => {} } as unknown as RedisConnection;

  it('defaults to 10 000 ms', () => {
    expect(resolveLockOptions({ member: 'eu' }).lockStoreTimeoutMs).toBe(10_000);
    expect(resolveLockOptions({ member: 'eu', lockStoreTimeoutMs: 250 }).lockStoreTimeoutMs).toBe(
      250,
    );
  });

  it.each([
    [50, /"lockStoreTimeoutMs" must be an integer >= 100, received 50/],
    ['1000', /"lockStoreTimeoutMs" must be an integer >= 100, received "1000"/],
    [1000.5, /"lockStoreTimeoutMs" must be an integer/],
    [Number.POSITIVE_INFINITY, /"lockStoreTimeoutMs" .* received Infinity/],
    [null, /option "lockStoreTimeoutMs" is null/],
  ])('refuses %s with a TypeError (PairedLock and PairedProcessor)', (value, message) => {
    expect(
      () => new PairedLock(client, { member: 'eu', lockStoreTimeoutMs: value as never }),
    ).toThrow(message);
    expect(
      () => new PairedLock(client, { member: 'eu', lockStoreTimeoutMs: value as never }),
    ).toThrow(TypeError);
    expect(
      () =>
        new PairedProcessor(async () => null, {
          twin: 'eu',
          lockConnection: client,
          lockStoreTimeoutMs: value as never,
        }),
    ).toThrow(/PairedProcessor: .*lockStoreTimeoutMs/);
  });

  it('must exceed durability.timeoutMs: a grant waits that long for its replicas', () => {
    expect(
      () =>
        new PairedLock(client, {
          member: 'eu',
          lockStoreTimeoutMs: 500,
          durability: { replicas: 1, timeoutMs: 500 },
        }),
    ).toThrow(/"lockStoreTimeoutMs" must be above durability.timeoutMs \(500\).*, received 500/);
  });
});
