import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { lockKit } from '../lock/lock-test-kit.js';
import { aborted, deferred } from '../support/deferred.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis({ killable: true, persistence: true });
const kit = lockKit(redis);

describe('a lock store restarted with AOF while an executor fails', () => {
  it('records the failure once the store is back, so the twin takes over instead of waiting forever', async () => {
    const prefix = uniquePrefix('restart');
    // A client that gives up on a command after one reconnect attempt, as a fail-fast
    // application configures it (ioredis' default gives up after 20, about a minute down).
    const client = redis().connect({ maxRetriesPerRequest: 1 });
    const eu = kit.lock({ member: 'eu', leaseMs: 10_000 }, prefix, client);
    const errors: Error[] = [];
    eu.on('error', (err) => errors.push(err));
    const started = deferred();
    const fail = deferred();
    const run = eu.run('task-1', async () => {
      started.resolve();
      await fail.promise;
      throw new Error('gateway unreachable');
    });
    await started.promise;
    await redis().kill();
    fail.resolve(); // the routine throws while its failure cannot be recorded
    const restarted = (async () => {
      // Long enough for the client to give up on the first attempt to record the failure.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await redis().restart();
    })();
    await expect(run).rejects.toThrow('gateway unreachable');
    await restarted;
    // The first attempts to record the failure were given up on, and reported with their cause.
    const retried = errors.filter((err) => err.name === 'SettleRetryError');
    expect(retried.map((err) => (err.cause as Error).name)).toContain('MaxRetriesPerRequestError');
    expect(await eu.inspect('task-1')).toMatchObject({ state: 'failed', fence: clockFence });
    const us = kit.lock({ member: 'us', leaseMs: 10_000 }, prefix);
    const outcome = await us.run('task-1', ({ fence, takeover }) => ({ fence, takeover }));
    expect(outcome).toMatchObject({
      role: 'executor',
      result: { fence: clockFence, takeover: 'failed' },
    });
  });

  it('takes no grant while its liveness subscriber is still away, though its client is back', async () => {
    // After a restart each connection reconnects on its own back-off, so a process's client
    // can be back before its subscriber: a grant then would look like a dead owner's to the
    // twin, which takes over after the grace. Here only the subscriber is kept away.
    const prefix = uniquePrefix('restart');
    const proxy = await startFaultProxy(redis());
    // Closed here, before the proxy they talk through: not by the kit after the test.
    const eu = new PairedLock(redis().connect({ port: proxy.port }), { member: 'eu', prefix });
    const us = new PairedLock(redis().connect(), { member: 'us', prefix });
    try {
      await eu.run('warm-up', () => 'subscribed');
      proxy.refuseCommands(/subscribe/i);
      proxy.cut();
      proxy.heal();
      expect(await eu.inspect('warm-up')).toMatchObject({ state: 'done' }); // its client is back
      const ran: string[] = [];
      const euRun = eu.run('task-2', async ({ fence, signal }) => {
        ran.push(`eu:${fence}`);
        await aborted(signal);
        throw signal.reason;
      });
      await sleep(300); // eu's acquire had every chance to go out first
      const usOutcome = await us.run('task-2', ({ fence }) => {
        ran.push(`us:${fence}`);
        return 'sent by us';
      });
      proxy.refuseCommands(undefined); // the subscriber gets back; eu's run goes on
      expect(await euRun).toMatchObject({ role: 'shadow', result: 'sent by us', owner: 'us' });
      expect(usOutcome).toMatchObject({ role: 'executor', fence: clockFence });
      expect(ran).toEqual([`us:${usOutcome.fence}`]);
    } finally {
      await Promise.all([eu.close(), us.close()]);
      await proxy.close();
    }
  });
});
