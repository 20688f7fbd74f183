/**
 * The siblings registry: each process watches one sibling (the next on the ring of listed
 * liveness channels), so the cost is flat in the number of siblings, and a run of dead
 * siblings is walked one check at a time until a live one is watched.
 */
import { Worker } from 'bullmq';
import { describe, expect, it, vi } from 'vitest';
import { PairedProcessor } from '../../src/index.js';
import { siblingsKey } from '../../src/pairing/keys.js';
import { SiblingRegistry } from '../../src/pairing/siblings.js';
import { useClosers } from '../support/closers.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis();
const closers = useClosers();

describe('SiblingRegistry', () => {
  it('adopts after each dead sibling on the ring, walking to the live one, and never removes a live one', async () => {
    const client = redis().connect();
    const key = `${uniquePrefix('sib')}:siblings:eu:q`;
    // Channels sort as the ring: own (a) watches b, then c (both dead), then d (live).
    const [own, deadB, deadC, live] = ['a', 'b', 'c', 'd'].map((c) => `${key}:live:${c}`) as [
      string,
      string,
      string,
      string,
    ];
    const subscriber = redis().connect();
    await subscriber.subscribe(own, live);
    await client.zadd(key, Date.now(), deadB, Date.now(), deadC, Date.now(), live);
    const numsub = async (channels: string[]): Promise<number[]> => {
      const reply = (await client.pubsub('NUMSUB', ...channels)) as (string | number)[];
      return channels.map((_, i) => Number(reply[2 * i + 1]));
    };
    const asked: string[][] = [];
    const registry = new SiblingRegistry(
      client,
      {
        channelNear: async () => own,
        subscribers: async (channels) => {
          asked.push(channels);
          return numsub(channels);
        },
      },
      (err) => {
        throw err;
      },
    );
    const deaths = vi.fn();
    const stop = await registry.register(key, deaths);
    try {
      await vi.waitFor(() => expect(deaths).toHaveBeenCalledTimes(2), { timeout: 15_000 });
      expect((await client.zrange(key, '0', '-1')).sort()).toEqual([own, live]);
      // Each check asked about one sibling only, never the whole set.
      expect(asked.every((channels) => channels.length === 1)).toBe(true);
      // The live neighbour dies too: it goes the same way.
      await subscriber.unsubscribe(live);
      await vi.waitFor(() => expect(deaths).toHaveBeenCalledTimes(3), { timeout: 15_000 });
      expect(await client.zrange(key, '0', '-1')).toEqual([own]);
    } finally {
      stop();
    }
  });
});

describe('a process on its twin’s list', () => {
  it('is off the list while dark (its queue server not answering) and back on after', async () => {
    const client = redis().connect();
    const key = `${uniquePrefix('sib')}:siblings:eu:q`;
    const own = `${key}:live:a`;
    const registry = new SiblingRegistry(
      client,
      { channelNear: async () => own, subscribers: async (channels) => channels.map(() => 1) },
      (err) => {
        throw err;
      },
    );
    const stop = await registry.register(key, () => {});
    try {
      expect(await client.zrange(key, '0', '-1')).toEqual([own]);
      await registry.setDark(key, true);
      expect(await client.zrange(key, '0', '-1')).toEqual([]);
      await registry.setDark(key, false);
      expect(await client.zrange(key, '0', '-1')).toEqual([own]);
    } finally {
      stop();
    }
  });

  it('is on it once waitUntilReady resolves after attach (before: only the lock store was checked, so a second call did not wait for the listing)', async () => {
    const prefix = uniquePrefix('ready');
    const queue = uniquePrefix('q');
    const paired = new PairedProcessor(async () => 'done', {
      twin: 'eu',
      lockConnection: redis().connect(),
      prefix,
    });
    // The lock store checked first: what is left for the second call is the listing.
    await paired.waitUntilReady();
    const worker = new Worker(queue, paired.processor, {
      connection: redis().connect({ maxRetriesPerRequest: null }),
      autorun: false,
    });
    paired.attach(worker);
    closers.push(async () => {
      await worker.close();
      await paired.close();
    });
    await paired.waitUntilReady();
    expect(
      await redis()
        .connect()
        .zcard(siblingsKey(prefix, 'eu', queue)),
    ).toBe(1);
  });
});
