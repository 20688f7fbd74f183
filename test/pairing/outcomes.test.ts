import { describe, expect, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { expireLease } from '../lock/lock-test-kit.js';
import { inProcessTwins } from '../observability/in-process-twins.js';
import { deferred } from '../support/deferred.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';

const redis = useRedis();

describe('how an execution ends decides its copy, whatever the processor threw', () => {
  it("completes a superseded executor's copy with the pair's result when its processor throws", async () => {
    const started = deferred<string>();
    const refused = deferred();
    // Per-record leases (no session): the test can make the executor's lease look expired.
    const twins = inProcessTwins(redis(), {
      run: (twin) => async (_job, _token, _signal, pair) => {
        if (pair.takeover !== undefined) return { by: twin };
        started.resolve(twin);
        await refused.promise;
        // e.g. its sink saw the higher fence of the takeover and refused this stale write
        throw new Error(`sink refused fence ${pair.fence}`);
      },
      options: () => ({ liveness: false }),
    });
    const other = new PairedLock(redis().connect(), { member: 'other' });
    try {
      twins.start();
      const job = await twins.queue.add('push', {}, { jobId: 'superseded-1' });
      await started.promise;
      // Another member takes the pair over (a higher fence) and completes it.
      const id = `${twins.queue.name}:${job.id}`;
      await expireLease(redis().connect(), 'paired', id);
      const taken = await other.run(id, () => ({ by: 'other' }));
      expect(taken).toMatchObject({ role: 'executor', fence: clockFence, takeover: 'expired' });
      refused.resolve();
      // Before: the executor's copy failed with "sink refused fence 1", though the pair completed.
      const jobs = await twins.settled('superseded-1');
      expect(jobs.eu.returnvalue).toEqual({ by: 'other' });
      expect(jobs.us.returnvalue).toEqual({ by: 'other' });
    } finally {
      await twins.close();
      await other.close();
    }
  });

  it('runs a job once when its result cannot be stored, though BullMQ would retry it', async () => {
    let runs = 0;
    const twins = inProcessTwins(redis(), {
      run: () => async () => {
        runs++;
        return 'x'.repeat(500);
      },
      options: () => ({ maxResultBytes: 100 }),
    });
    try {
      twins.start();
      await twins.queue.add('push', {}, { jobId: 'too-large-1', attempts: 3 });
      // Before: each twin ran it on every attempt (6 runs).
      const jobs = await twins.settled('too-large-1', 'failed');
      expect(runs).toBe(1);
      const reasons = [jobs.eu.failedReason, jobs.us.failedReason].sort();
      expect(reasons.join('\n')).toMatch(/maxResultBytes/);
      expect(jobs.eu.attemptsMade + jobs.us.attemptsMade).toBeLessThanOrEqual(4);
    } finally {
      await twins.close();
    }
  });
});
