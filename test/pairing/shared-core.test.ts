/**
 * PairedProcessors of one process on the same lock connection and lock options share one core:
 * one session key and one liveness channel, however many queues the process pairs.
 */
import { describe, expect, it } from 'vitest';
import { PairedProcessor } from '../../src/index.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis();

describe('one core per process and lock store', () => {
  it('shares one session among the processors of a lock connection, and ends it with the last', async () => {
    const prefix = uniquePrefix('shared');
    const lockConnection = redis().connect();
    const processors = Array.from(
      { length: 3 },
      () => new PairedProcessor(async () => 1, { twin: 'eu', lockConnection, prefix }),
    );
    // Another lock option: a core of its own.
    const apart = new PairedProcessor(async () => 1, {
      twin: 'eu',
      lockConnection,
      prefix,
      leaseMs: 20_000,
    });
    await Promise.all([...processors, apart].map((p) => p.waitUntilReady()));
    const sessions = () => lockConnection.keys(`${prefix}:session:*`);
    // Before: one session (and subscriber) per processor, 4.
    expect(await sessions()).toHaveLength(2);
    await processors[0]?.close();
    await apart.close();
    // The others go on under the shared session.
    expect(await sessions()).toHaveLength(1);
    await processors[1]?.waitUntilReady();
    await Promise.all(processors.slice(1).map((p) => p.close()));
    expect(await sessions()).toHaveLength(0);
  });
});
