import { describe, expect, it } from 'vitest';
import { LeaseLostError, StaleFenceError } from '../../src/index.js';
import { recordKey } from '../../src/lock/keys.js';
import { aborted, deferred } from '../support/deferred.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { heldRun, lockKit, taskId } from './lock-test-kit.js';

describe('PairedLock when the lock store goes away', () => {
  const redis = useRedis({ killable: true, persistence: true });
  const kit = lockKit(redis);

  it('aborts the executor before its lease can end, and completes once the store is back', async () => {
    const eu = kit.lock({ member: 'eu', leaseMs: 1_000, heartbeatMs: 200 }, kit.prefix);
    const id = taskId();
    const { signal: started, release, run } = heldRun(eu, id, 'sent');
    const signal = await started;
    await redis().kill();
    const reason = await aborted(signal);
    expect(reason).toBeInstanceOf(LeaseLostError);
    expect(reason).toMatchObject({ reason: 'expired', fence: clockFence });
    await redis().restart();
    release();
    // AOF kept the record, and nobody took it over while the store was down: the result stands.
    expect(await run).toMatchObject({ role: 'executor', result: 'sent', fence: clockFence });
    expect(await eu.inspect(id)).toMatchObject({ state: 'done', fence: clockFence });
  });

  it('refuses the result when the record did not survive the outage', async () => {
    // Under a session the record is refreshed every retention / 3: 500 ms here.
    const eu = kit.lock(
      { member: 'eu', leaseMs: 1_000, heartbeatMs: 200, retentionMs: 1_500 },
      kit.prefix,
    );
    const id = taskId();
    const started = deferred<AbortSignal>();
    const run = eu.run(id, async ({ signal }) => {
      started.resolve(signal);
      await aborted(signal);
      return 'late';
    });
    await started.promise;
    await redis().connect().del(recordKey(kit.prefix, id));
    const error = await run.catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StaleFenceError);
    expect(error).toMatchObject({ fence: clockFence, currentFence: undefined });
  });
});
