import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { deferred, nextEvent } from '../support/deferred.js';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

/**
 * An executor whose lock-store connections are reset again and again (a flaky link): after a
 * first reset it raises its liveness grace for a while (src/lock/flap-grace.ts), so a second
 * absence longer than its usual grace is not taken for its death. Through a fault proxy:
 * eu's connections go through it, us's do not.
 */
const redis = useRedis();
let proxy: FaultProxy;
const closers: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  proxy = await startFaultProxy(redis());
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
  await proxy.close();
});

describe('an executor whose connections are reset in a burst', () => {
  it('is not taken over while away for longer than its usual grace, once a reset raised it', async () => {
    const prefix = uniquePrefix('burst');
    const euClient = new Redis(proxy.url, { maxRetriesPerRequest: null });
    euClient.on('error', () => {});
    const eu = new PairedLock(euClient, { member: 'eu', prefix });
    const us = new PairedLock(redis().connect(), { member: 'us', prefix });
    closers.push(
      () => us.close(),
      async () => euClient.disconnect(),
      () => eu.close(),
    );
    await Promise.all([eu.waitUntilReady(), us.waitUntilReady()]);
    const admin = redis().connect();
    /** The highest session-key value: eu's raised grace once it raised it ('1' otherwise). */
    const raisedGrace = async (): Promise<number> => {
      const keys = await admin.keys(`${prefix}:session:*`);
      const values = await Promise.all(keys.map((key) => admin.get(key)));
      return Math.max(0, ...values.map(Number));
    };
    // A first reset of every eu connection: each comes back at once.
    for (const address of proxy.clientAddresses()) await admin.client('KILL', 'ADDR', address);
    await vi.waitFor(async () => expect(await raisedGrace()).toBeGreaterThanOrEqual(2_000), {
      timeout: 10_000,
    });

    const started = deferred();
    const release = deferred();
    const executor = eu.run('task', async () => {
      started.resolve();
      await release.promise;
      return 'by eu';
    });
    await started.promise;
    const shadowing = nextEvent(us, 'shadowing');
    const shadow = us.run('task', async () => 'by us');
    await shadowing;
    // Away for 800 ms: 8 times the usual grace (100 ms), within the raised one.
    proxy.cut();
    await new Promise((resolve) => setTimeout(resolve, 800));
    proxy.heal();
    release.resolve();
    await expect(executor).resolves.toMatchObject({ role: 'executor', result: 'by eu' });
    // Before: us took it over as from a dead process ('disconnected') and ran it too.
    await expect(shadow).resolves.toMatchObject({ role: 'shadow', result: 'by eu' });
  });
});
