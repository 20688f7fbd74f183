import { Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { PairedLock, PairedProcessor, PairedQueue } from '../../src/index.js';
import { deferred } from '../support/deferred.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const lockRedis = useRedis();
// AOF: the parked copy survives the outage, as it would in production.
const usRedis = useRedis({ killable: true, persistence: true });

describe('a parked copy woken while its queue Redis is down', () => {
  it('is promoted once the Redis is back, not left for maxParkMs', async () => {
    const name = uniquePrefix('promote');
    // A worker whose commands fail at once while its Redis is down (no offline queue): the
    // wake-up's promote fails, as it does once any client gives up on a command.
    const connection = usRedis().connect({ maxRetriesPerRequest: null, enableOfflineQueue: false });
    connection.on('error', () => {});
    const paired = new PairedProcessor(async () => 'run on us', {
      twin: 'us',
      lockConnection: lockRedis().connect(),
      group: name,
      shadowHoldMs: 0,
    });
    paired.on('error', () => {});
    const worker = new Worker(name, paired.processor, { connection, autorun: false });
    worker.on('error', () => {});
    paired.attach(worker);
    // The executor: a PairedLock standing in for the eu twin, holding the record.
    const eu = new PairedLock(lockRedis().connect(), { member: 'eu' });
    const queue = new PairedQueue(name, {
      twins: {
        us: { connection: { host: usRedis().host, port: usRedis().port } },
        eu: { connection: { host: lockRedis().host, port: lockRedis().port }, queue: `${name}-eu` },
      },
    });
    const release = deferred();
    const started = deferred();
    try {
      const held = eu.run(`${name}:p-1`, async () => {
        started.resolve();
        await release.promise;
        return 'run on eu';
      });
      await started.promise;
      await queue.queue('us').add('push', {}, { jobId: 'p-1' });
      void worker.run();
      await expect.poll(() => queue.queue('us').getJobState('p-1')).toBe('delayed'); // parked
      await usRedis().kill();
      release.resolve(); // the settle wakes the parked copy while its Redis is down
      await held;
      await usRedis().restart();
      // Before: the failed promote was dropped, and the copy waited out maxParkMs (5 min).
      await expect
        .poll(() => queue.queue('us').getJobState('p-1'), { timeout: 20_000, interval: 100 })
        .toBe('completed');
      expect((await queue.queue('us').getJob('p-1'))?.returnvalue).toBe('run on eu');
    } finally {
      release.resolve();
      await worker.close();
      await paired.close();
      await eu.close();
      await queue.close();
    }
  });
});
