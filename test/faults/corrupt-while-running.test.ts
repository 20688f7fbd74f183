import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { CorruptRecordError } from '../../src/index.js';
import { recordKey } from '../../src/lock/keys.js';
import { lockKit } from '../lock/lock-test-kit.js';
import { deferred } from '../support/deferred.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis();
const kit = lockKit(redis);

describe('a record overwritten by something else while its executor runs', () => {
  it('the run rejects with CorruptRecordError instead of retrying its result forever', async () => {
    const prefix = uniquePrefix('corrupt');
    const eu = kit.lock({ member: 'eu' }, prefix);
    const errors: Error[] = [];
    eu.on('error', (err) => errors.push(err));
    const started = deferred();
    const finish = deferred();
    const run = eu.run('task-1', async () => {
      started.resolve();
      await finish.promise;
      return 'sent';
    });
    await started.promise;
    await redis().connect().set(recordKey(prefix, 'task-1'), 'not json');
    finish.resolve();
    const giveUp = new AbortController();
    const outcome = await Promise.race([
      run.then(
        () => 'resolved',
        (err: unknown) => err,
      ),
      sleep(5_000, 'still pending after 5 s', { signal: giveUp.signal }),
    ]);
    giveUp.abort();
    expect(outcome).toBeInstanceOf(CorruptRecordError);
    expect((outcome as Error).message).toMatch(/delete it/);
    expect(errors.filter((err) => err instanceof CorruptRecordError).length).toBeLessThanOrEqual(1);
  });
});
