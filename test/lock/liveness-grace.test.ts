/**
 * The liveness grace in the acquire script: the owner's own grace kept with its grant (a
 * process far from the lock store needs longer to resubscribe), and an absence noted long ago
 * that nobody looked at since (the owner's channel was back in between) counting for nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { livenessChannel, recordAddress } from '../../src/lock/keys.js';
import { acquire } from '../../src/lock/scripts.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis();

function setUp(ownGraceMs: number) {
  const client = redis().connect();
  const prefix = uniquePrefix('grace');
  const address = recordAddress(prefix, 'job-1');
  const channel = livenessChannel(prefix, 'eu-process');
  const base = {
    leaseMs: 60_000,
    retentionMs: 120_000,
    policy: 'takeover',
    graceMs: 100,
    warmupS: 0,
    sessionKey: '',
  };
  return {
    client,
    channel,
    /** eu takes the record, its liveness channel and its own grace kept with the grant. */
    grantEu: () =>
      acquire(client, address, {
        ...base,
        member: 'eu',
        token: 'eu-token',
        liveChannel: channel,
        ownGraceMs,
      }),
    /** us asks, with the default grace of 100 ms. */
    askUs: () =>
      acquire(client, address, { ...base, member: 'us', token: 'us-token', liveChannel: '' }),
  };
}

describe('liveness grace', () => {
  it("applies the owner's own grace when it is longer than the asker's", async () => {
    const { grantEu, askUs } = setUp(600);
    expect(await grantEu()).toMatchObject({ kind: 'granted', fence: 1 });
    // eu's channel has no subscriber: its process is gone (or reconnecting from far away).
    expect(await askUs()).toMatchObject({ kind: 'busy' });
    await sleep(250);
    // Past the asker's 100 ms, within eu's 600 ms: still eu's.
    const busy = await askUs();
    expect(busy).toMatchObject({ kind: 'busy' });
    expect(busy.kind === 'busy' && busy.recheckMs).toBeLessThanOrEqual(400);
    await sleep(450);
    expect(await askUs()).toMatchObject({ kind: 'granted', fence: 2, takeover: 'disconnected' });
  });

  it('does not count an absence from long ago that nobody saw end', async () => {
    const { client, channel, grantEu, askUs } = setUp(0);
    const subscriber = redis().connect();
    await subscriber.subscribe(channel);
    expect(await grantEu()).toMatchObject({ kind: 'granted', fence: 1 });
    // A blip: eu's subscriber drops, us notices, eu is back before the grace and nobody asks.
    await subscriber.unsubscribe(channel);
    expect(await askUs()).toMatchObject({ kind: 'busy' });
    await subscriber.subscribe(channel);
    await sleep(1_300);
    // Another blip, 1.3 s later: the grace counts from now, not from the first one.
    await subscriber.unsubscribe(channel);
    expect(await askUs()).toMatchObject({ kind: 'busy' });
    await sleep(150);
    // Gone for longer than the grace this time: taken over.
    expect(await askUs()).toMatchObject({ kind: 'granted', fence: 2, takeover: 'disconnected' });
    await client.quit();
  });
});
