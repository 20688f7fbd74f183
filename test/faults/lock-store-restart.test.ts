import { afterEach, describe, expect, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { deferred } from '../support/deferred.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis({ killable: true, persistence: true });
const locks: PairedLock[] = [];
afterEach(async () => {
  await Promise.all(locks.splice(0).map((lock) => lock.close()));
});

describe('a lock store restarted with AOF while an executor fails', () => {
  it('records the failure once the store is back, so the twin takes over instead of waiting forever', async () => {
    const prefix = uniquePrefix('restart');
    // A client that gives up on a command after one reconnect attempt, as a fail-fast
    // application configures it (ioredis' default gives up after 20, about a minute down).
    const client = redis().connect({ maxRetriesPerRequest: 1 });
    const eu = new PairedLock(client, { member: 'eu', prefix, leaseMs: 10_000 });
    locks.push(eu);
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
    // The first attempts to record the failure were given up on, and reported.
    expect(errors.map((err) => err.name)).toContain('MaxRetriesPerRequestError');
    expect(await eu.inspect('task-1')).toMatchObject({ state: 'failed', fence: 1 });
    const us = new PairedLock(redis().connect(), { member: 'us', prefix, leaseMs: 10_000 });
    locks.push(us);
    const outcome = await us.run('task-1', ({ fence, takeover }) => ({ fence, takeover }));
    expect(outcome).toMatchObject({ role: 'executor', result: { fence: 2, takeover: 'failed' } });
  });
});
