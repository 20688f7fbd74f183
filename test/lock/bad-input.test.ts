import { describe, expect, it, vi } from 'vitest';
import {
  CorruptRecordError,
  PeerFailedError,
  ResultNotSerializableError,
  ResultTooLargeError,
} from '../../src/index.js';
import { recordKey } from '../../src/lock/keys.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { lockKit, taskId } from './lock-test-kit.js';

const redis = useRedis();
const kit = lockKit(redis);

describe('PairedLock with bad results and odd throws', () => {
  it('refuses a result over maxResultBytes with a typed error, and the twin sees why', async () => {
    const eu = kit.lock({ member: 'eu', maxResultBytes: 1_024 }, kit.prefix);
    const us = kit.lock({ member: 'us', onPeerFailure: 'respect' }, kit.prefix);
    const id = taskId();
    const error = await eu.run(id, () => 'x'.repeat(2_000)).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ResultTooLargeError);
    expect(error).toMatchObject({
      code: 'ERR_PAIRED_RESULT_TOO_LARGE',
      bytes: 2_002,
      maxBytes: 1_024,
    });
    expect(await eu.inspect(id)).toMatchObject({
      state: 'failed',
      error: { name: 'ResultTooLargeError', code: 'ERR_PAIRED_RESULT_TOO_LARGE' },
    });
    await expect(us.run(id, vi.fn())).rejects.toBeInstanceOf(PeerFailedError);
  });

  it('refuses a result JSON cannot hold', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    await expect(eu.run(taskId(), () => ({ big: 1n }))).rejects.toBeInstanceOf(
      ResultNotSerializableError,
    );
  });

  it.each<[string, unknown, string]>([
    ['a string', 'gateway down', 'gateway down'],
    ['undefined', undefined, 'undefined'],
    ['a number', 42, '42'],
  ])('records a throw of %s so the twin can tell what happened', async (_name, thrown, message) => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const us = kit.lock({ member: 'us', onPeerFailure: 'respect' }, kit.prefix);
    const id = taskId();
    await expect(
      eu.run(id, () => {
        throw thrown;
      }),
    ).rejects.toBe(thrown);
    const error = await us.run(id, vi.fn()).catch((err: unknown) => err);
    expect(error).toMatchObject({ peerError: { name: 'NonError', message } });
  });

  it('stores an undefined result as nothing: the shadow gets undefined too', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const us = kit.lock({ member: 'us' }, kit.prefix);
    const id = taskId();
    expect(await eu.run(id, () => undefined)).toMatchObject({
      role: 'executor',
      result: undefined,
    });
    const shadowFn = vi.fn();
    expect(await us.run(id, shadowFn)).toMatchObject({
      role: 'shadow',
      result: undefined,
      fence: clockFence,
    });
    expect(shadowFn).not.toHaveBeenCalled();
  });
});

describe('PairedLock with a record that is not one', () => {
  it('refuses to guess: CorruptRecordError names the key and the fix', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const id = taskId();
    await redis().connect().set(recordKey(kit.prefix, id), 'not json');
    const error = await eu.run(id, vi.fn()).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CorruptRecordError);
    expect((error as Error).message).toMatch(/is not a record bullmq-paired wrote; delete it/);
    await redis().connect().del(recordKey(kit.prefix, id));
    expect(await eu.run(id, () => 'ran')).toMatchObject({ role: 'executor', result: 'ran' });
  });
});
