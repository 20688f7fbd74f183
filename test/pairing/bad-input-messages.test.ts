import { describe, expect, it } from 'vitest';
import { PairedLock, PairedProcessor, PairedQueue } from '../../src/index.js';
import { useRedis } from '../support/file-redis.js';

const eu = useRedis();
const us = useRedis();

describe('error texts for bad input', () => {
  it('describe the value received, never "[object Object]" or "a object"', () => {
    const messages: string[] = [];
    const collect = (make: () => unknown) => {
      try {
        make();
      } catch (err) {
        messages.push((err as Error).message);
      }
    };
    collect(() => new PairedLock({ not: 'a client' } as never, { member: 'eu' }));
    collect(() => new PairedProcessor({ not: 'a function' } as never, {} as never));
    collect(
      () => new PairedLock(eu().connect({ lazyConnect: true }), { member: new Map() as never }),
    );
    expect(messages).toHaveLength(3);
    for (const message of messages) {
      expect(message).not.toMatch(/\[object Object\]|received a object/);
    }
    expect(messages[0]).toMatch(/received an object$/);
    expect(messages[1]).toMatch(/received an object$/);
    expect(messages[2]).toMatch(/option "member" must be .*, received an object \(Map\)$/);
  });

  it('refuse job data that is not JSON with a TypeError on two Redis, as on one (before: PartialAddError "none")', async () => {
    const connection = (redis: typeof eu) => ({ host: redis().host, port: redis().port });
    const queue = new PairedQueue('bad-data', {
      twins: { eu: { connection: connection(eu) }, us: { connection: connection(us) } },
    });
    try {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      await expect(queue.add('push', circular)).rejects.toThrow(TypeError);
      await expect(queue.add('push', { n: 1n })).rejects.toThrow(/cannot be stored as JSON/);
      expect(await queue.queue('eu').count()).toBe(0);
      expect(await queue.queue('us').count()).toBe(0);
    } finally {
      await queue.close();
    }
  });

  it('closes what it opened when BullMQ refuses a twin queue at construction (before: the first stayed open)', async () => {
    const admin = eu().connect();
    const clients = async () =>
      String(await admin.call('CLIENT', 'LIST'))
        .split('\n')
        .filter(Boolean).length;
    const before = await clients();
    const connection = { host: eu().host, port: eu().port };
    expect(
      () =>
        new PairedQueue('refused', {
          twins: { eu: { connection }, us: { connection, queue: 'bad:name' } },
        }),
    ).toThrow(/cannot contain :/);
    // eu's queue had opened a connection: it is closed again, not left keeping the process up.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await expect.poll(clients, { timeout: 3_000 }).toBe(before);
  });
});
