/**
 * The liveness grace in the acquire script: the owner's own grace kept with its grant (a
 * process far from the lock store needs longer to resubscribe), and an absence noted long ago
 * that nobody looked at since (the owner's channel was back in between) counting for nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { PairCore } from '../../src/lock/core.js';
import type { ClaimReply } from '../../src/lock/execute.js';
import { livenessChannel, recordAddress } from '../../src/lock/keys.js';
import { resolveLockOptions } from '../../src/lock/options.js';
import { acquire, inspect } from '../../src/lock/scripts.js';
import { deferred, nextEvent } from '../support/deferred.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { sentClaim, usAcquire } from './lock-test-kit.js';

const redis = useRedis();

function setUp(ownGraceMs: number) {
  const client = redis().connect();
  const prefix = uniquePrefix('grace');
  const address = recordAddress(prefix, 'job-1');
  const channel = livenessChannel(prefix, 'eu-process');
  const base = usAcquire();
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
    askUs: () => acquire(client, address, base),
  };
}

describe('liveness grace', () => {
  it("applies the owner's own grace when it is longer than the asker's", async () => {
    const { grantEu, askUs } = setUp(600);
    expect(await grantEu()).toMatchObject({ kind: 'granted', fence: clockFence });
    // eu's channel has no subscriber: its process is gone (or reconnecting from far away).
    expect(await askUs()).toMatchObject({ kind: 'busy' });
    await sleep(250);
    // Past the asker's 100 ms, within eu's 600 ms: still eu's.
    const busy = await askUs();
    expect(busy).toMatchObject({ kind: 'busy' });
    expect(busy.kind === 'busy' && busy.recheckMs).toBeLessThanOrEqual(400);
    await sleep(450);
    expect(await askUs()).toMatchObject({
      kind: 'granted',
      fence: clockFence,
      takeover: 'disconnected',
    });
  });

  it('does not count an absence from long ago that nobody saw end', async () => {
    const { client, channel, grantEu, askUs } = setUp(0);
    const subscriber = redis().connect();
    await subscriber.subscribe(channel);
    expect(await grantEu()).toMatchObject({ kind: 'granted', fence: clockFence });
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
    expect(await askUs()).toMatchObject({
      kind: 'granted',
      fence: clockFence,
      takeover: 'disconnected',
    });
    await client.quit();
  });
});

describe("a grace its owner raised since its grant (its session key's value)", () => {
  it('is applied once the owner raised it, up to a lease, and not before', async () => {
    const client = redis().connect();
    const prefix = uniquePrefix('raised');
    const address = recordAddress(prefix, 'job-1');
    const channel = livenessChannel(prefix, 'eu-process');
    const session = `${prefix}:session:eu-process`;
    await client.set(session, '1', 'PX', 60_000);
    const grant = await acquire(client, address, {
      ...usAcquire(),
      member: 'eu',
      token: 'eu-token',
      liveChannel: channel,
      sessionKey: session,
    });
    expect(grant).toMatchObject({ kind: 'granted', fence: clockFence });
    // eu's connections are being reset: it raised its grace to 900 ms (src/lock/flap-grace.ts).
    await client.set(session, '900', 'PX', 60_000);
    const ask = () => acquire(client, address, usAcquire());
    expect(await ask()).toMatchObject({ kind: 'busy' });
    await sleep(300);
    // Past the 100 ms grace, within the raised one: still eu's.
    const busy = await ask();
    expect(busy).toMatchObject({ kind: 'busy' });
    expect(busy.kind === 'busy' && busy.recheckMs).toBeLessThanOrEqual(700);
    await sleep(700);
    expect(await ask()).toMatchObject({ kind: 'granted', takeover: 'disconnected' });
    await client.quit();
  });

  it("is the usual one while the value says nothing ('1'), and never longer than the lease", async () => {
    const client = redis().connect();
    const prefix = uniquePrefix('raised');
    const session = `${prefix}:session:eu-process`;
    const grantEu = (id: string) =>
      acquire(client, recordAddress(prefix, id), {
        ...usAcquire(),
        member: 'eu',
        token: `eu-${id}`,
        liveChannel: livenessChannel(prefix, 'eu-process'),
        sessionKey: session,
      });
    const ask = (id: string, leaseMs = 60_000) =>
      acquire(client, recordAddress(prefix, id), usAcquire({ leaseMs }));
    await client.set(session, '1', 'PX', 60_000);
    await grantEu('usual');
    expect(await ask('usual')).toMatchObject({ kind: 'busy' });
    await sleep(200);
    expect(await ask('usual')).toMatchObject({ kind: 'granted', takeover: 'disconnected' });
    // A value far beyond the asker's lease (300 ms) counts as that lease.
    await grantEu('capped');
    await client.set(session, '600000', 'PX', 60_000);
    expect(await ask('capped', 300)).toMatchObject({ kind: 'busy' });
    await sleep(450);
    expect(await ask('capped', 300)).toMatchObject({ kind: 'granted', takeover: 'disconnected' });
    await client.quit();
  });
});

describe('settle messages', () => {
  it("wake a shadow of a task whose id has a '/' (cjson escapes it), not only its poll", async () => {
    const client = redis().connect();
    const prefix = uniquePrefix('slash/prefix');
    // A poll a minute apart: only the settle message can wake the shadow in time.
    const eu = new PairedLock(client, { member: 'eu', prefix, pollIntervalMs: 60_000 });
    const us = new PairedLock(redis().connect(), { member: 'us', prefix, pollIntervalMs: 60_000 });
    try {
      let release = (): void => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      const started = deferred();
      const executor = eu.run('push/device-1', async () => {
        started.resolve();
        await held;
        return 'sent';
      });
      await started.promise;
      const shadowing = nextEvent(us, 'shadowing');
      const shadow = us.run('push/device-1', async () => 'ran twice');
      await shadowing;
      const settledAt = Date.now();
      release();
      await executor;
      const result = await shadow;
      expect(result).toMatchObject({ role: 'shadow', result: 'sent' });
      // Without the message, the shadow would wake only when it next asks: its poll (60 s)
      // or the executor's lease (30 s).
      expect(Date.now() - settledAt).toBeLessThan(10_000);
    } finally {
      await Promise.all([eu.close(), us.close()]);
    }
  });
});

describe("a standby's wait for the chosen executor's claim", () => {
  it('is kept by the acquire script however the copy came back, then the standby takes fence 2', async () => {
    const client = redis().connect();
    const address = recordAddress(uniquePrefix('claim-wait'), 'job-1');
    const ask = () => acquire(client, address, usAcquire({ minFence: 2, waitForClaimMs: 400 }));
    // us's standby looked first: the record is marked 'waiting'.
    await inspect(client, address, 120_000);
    const early = await ask();
    expect(early).toMatchObject({ kind: 'busy', owner: '' });
    expect(early.kind === 'busy' && early.recheckMs).toBeGreaterThan(0);
    await sleep(450);
    // Nobody claimed it within the wait: the standby runs it, never with fence 1.
    expect(await ask()).toMatchObject({ kind: 'granted', fence: clockFence });
    await client.quit();
  });
});

describe('a run started before its claim (a chosen executor)', () => {
  it('stores its result only once the claim is granted, even when the claim lands after the run returned', async () => {
    const client = redis().connect();
    const prefix = uniquePrefix('claim-order');
    const core = new PairCore(client, resolveLockOptions({ member: 'eu', prefix }), () => {});
    try {
      await core.ready();
      const address = core.address('job-1');
      const token = 'eu-claim';
      // The claim is still unanswered when the routine returns (a reply lost and re-sent, a
      // session made anew): here it is sent only after the result.
      const claim = deferred<ClaimReply>();
      const late: Error[] = [];
      const outcome = await core.execute(
        address,
        { token, fence: 1 },
        { takeover: undefined, attempts: 1 },
        performance.now(),
        () => 'sent',
        undefined,
        { claim: await sentClaim(claim.promise), pipeline: ({ error }) => late.push(error) },
      );
      expect(outcome).toEqual({ kind: 'completed', result: 'sent' });
      claim.resolve((await core.claim(address, token)).reply);
      await core.flush();
      // The record holds the result: no grant is left running that nobody works on.
      expect(await core.inspect(address)).toMatchObject({
        state: 'done',
        fence: 1,
        result: 'sent',
      });
      expect(late).toEqual([]);
    } finally {
      await core.close();
      await client.quit();
    }
  });
});

describe('an owner whose session key ran out', () => {
  /** eu holds the record under session key `skey` and liveness channel `channel`. */
  async function grantedEu() {
    const client = redis().connect();
    const prefix = uniquePrefix('ran-out');
    const address = recordAddress(prefix, 'job-1');
    const channel = livenessChannel(prefix, 'eu-process');
    const skey = `${prefix}:session:eu-process`;
    await client.set(skey, '1', 'PX', 60_000);
    const eu = usAcquire({
      member: 'eu',
      token: 'eu-token',
      liveChannel: channel,
      sessionKey: skey,
    });
    expect(await acquire(client, address, eu)).toMatchObject({ kind: 'granted' });
    return { client, address, channel, skey };
  }

  it("is taken over as 'disconnected' when its liveness channel is empty too (its process is gone)", async () => {
    const { client, address, skey } = await grantedEu();
    await client.del(skey); // ran out: nobody subscribes eu's channel either
    expect(await acquire(client, address, usAcquire())).toMatchObject({
      kind: 'granted',
      takeover: 'disconnected',
    });
  });

  it("is taken over as 'expired' while its channel is still held (cut off, frozen)", async () => {
    const { client, address, channel, skey } = await grantedEu();
    const subscriber = redis().connect();
    await subscriber.subscribe(channel);
    await client.del(skey);
    expect(await acquire(client, address, usAcquire())).toMatchObject({
      kind: 'granted',
      takeover: 'expired',
    });
  });
});
