/**
 * The session kept by a worker thread (src/lock/thread-session.ts) against a real Redis: it
 * speaks RESP on a connection of its own, so it must reach the same database as the lock
 * connection, keep a short-lived key alive, and notice when the key is gone.
 */
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ThreadSession } from '../../src/lock/thread-session.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis();
const sessions: ThreadSession[] = [];
afterEach(async () => {
  await Promise.all(sessions.splice(0).map((session) => session.stop()));
});

/** A session on database 3, its key living 600 ms (a refresh every 300 ms). */
async function start() {
  const client = redis().connect({ db: 3 });
  const key = `${uniquePrefix('thread')}:session`;
  const lost: number[] = [];
  const errors: Error[] = [];
  const session = new ThreadSession(
    client,
    key,
    { ttlMs: 600, leaseMs: 6_000, heartbeatMs: 2_000 },
    () => lost.push(Date.now()),
    (err) => errors.push(err),
  );
  sessions.push(session);
  await session.start();
  return { client, key, session, lost, errors };
}

describe('ThreadSession', () => {
  it("keeps its key alive from the thread, in the lock connection's database", async () => {
    const { client, key, session, lost, errors } = await start();
    // Each refresh raises the TTL back towards 600 ms: seen rise five times, the key lived
    // well past its first 600 ms, which only the thread's refreshes (on database 3) explain.
    let rises = 0;
    let last = await client.pttl(key);
    await vi.waitFor(
      async () => {
        const now = await client.pttl(key);
        expect(now, 'the key ran out').toBeGreaterThan(0);
        if (now > last) rises++;
        last = now;
        expect(rises).toBeGreaterThanOrEqual(5);
      },
      { timeout: 10_000, interval: 20 },
    );
    expect(await client.get(key)).toBe('1');
    expect(lost).toEqual([]);
    expect(errors).toEqual([]);
    // The deadline the thread publishes lies ahead, within one key's life.
    const left = session.deadlineAt - performance.now();
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(600);
  });

  it('tells the grace in the key, and when the key is gone stops the runs and makes it anew', async () => {
    const { client, key, session, lost } = await start();
    session.setGrace(2_000);
    await vi.waitFor(async () => expect(await client.get(key)).toBe('2000'), { timeout: 5_000 });
    await client.del(key);
    await vi.waitFor(() => expect(lost.length).toBeGreaterThanOrEqual(1), { timeout: 5_000 });
    await vi.waitFor(async () => expect(await client.get(key)).toBe('2000'), { timeout: 5_000 });
    expect(session.deadlineAt).toBeGreaterThan(performance.now());
  });

  it('keeps the key from the main thread, with a life of the lease, when the thread dies', async () => {
    const { client, key, session, errors } = await start();
    // The thread, as if it had crashed (its worker is private: reached for the test).
    await (session as unknown as { worker: Worker }).worker.terminate();
    await vi.waitFor(async () => expect(await client.pttl(key)).toBeGreaterThan(1_000), {
      timeout: 5_000,
    });
    expect(await client.pttl(key)).toBeLessThanOrEqual(6_000);
    expect(errors.map((e) => e.message).join('\n')).toMatch(/session keeper thread failed/);
    expect(session.deadlineAt - performance.now()).toBeGreaterThan(1_000);
  });

  it('deletes its key on stop', async () => {
    const { client, key, session } = await start();
    expect(await client.exists(key)).toBe(1);
    await session.stop();
    expect(await client.exists(key)).toBe(0);
  });
});
