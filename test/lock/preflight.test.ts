/**
 * A lock store that will never serve us (wrong password, ACL user without the commands, keys
 * or channels, a read-only replica) is refused at once with `LockStoreMisconfiguredError`,
 * instead of every job parking forever as "unreachable"; so is a store that may evict keys,
 * unless `allowEviction` (then it is reported with `LockStoreEvictionError` and used). Each case runs on a private
 * redis-server started with the flags it needs.
 */
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import {
  LockStoreEvictionError,
  LockStoreMisconfiguredError,
  LockStoreUnavailableError,
  PairedLock,
  type PairedLockOptions,
  PairedProcessor,
  type PairInfo,
} from '../../src/index.js';
import { ACL_COMMANDS } from '../../src/lock/preflight.js';
import { useClosers } from '../support/closers.js';
import { deferred } from '../support/deferred.js';
import { useRedis } from '../support/file-redis.js';
import { freePort, type TestRedis, uniquePrefix } from '../support/redis.js';

const PASSWORD = 'right-password';

/** A lock on `client` that collects its 'error' events; closed after the test. */
function lockOn(
  closers: (() => Promise<void>)[],
  client: Redis,
  options: Partial<PairedLockOptions> & { prefix: string },
) {
  const lock = new PairedLock(client, { member: 'eu', ...options });
  const errors: Error[] = [];
  lock.on('error', (err) => errors.push(err));
  closers.push(() => lock.close());
  return { lock, errors };
}

async function refusal(promise: Promise<unknown>): Promise<LockStoreMisconfiguredError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LockStoreMisconfiguredError);
  expect(err).toMatchObject({ code: 'ERR_PAIRED_LOCK_STORE_MISCONFIGURED' });
  return err as LockStoreMisconfiguredError;
}

describe('lock store with a password', () => {
  const redis = useRedis({ killable: true, args: ['--requirepass', PASSWORD] });
  const closers = useClosers();

  it('refuses a wrong password at once, in waitUntilReady() and in run()', async () => {
    const prefix = uniquePrefix('pf');
    const { lock } = lockOn(closers, redis().connect({ password: 'wrong' }), { prefix });
    const err = await refusal(lock.waitUntilReady());
    expect(err.message).toMatch(/WRONGPASS/);
    expect(err.message).toMatch(/password/);
    const ran = vi.fn();
    const runErr = await refusal(lock.run('task-1', ran));
    expect(runErr.message).toMatch(/WRONGPASS/);
    expect(ran).not.toHaveBeenCalled();
  });

  it('refuses a missing password (NOAUTH), and accepts the right one', async () => {
    const prefix = uniquePrefix('pf');
    const none = lockOn(closers, redis().connect(), { prefix });
    expect((await refusal(none.lock.waitUntilReady())).message).toMatch(/NOAUTH.*password/s);
    const right = lockOn(closers, redis().connect({ password: PASSWORD }), { prefix });
    await right.lock.waitUntilReady();
    expect(await right.lock.run('task-1', () => 'ok')).toMatchObject({ role: 'executor' });
    expect(right.errors).toEqual([]);
  });
});

describe('lock store that is a replica', () => {
  const primary = useRedis({ killable: true });
  const replica = useRedis({ killable: true });
  const closers = useClosers();

  it('refuses a read-only replica and names the primary as the fix', async () => {
    const admin = replica().connect();
    await admin.replicaof(primary().host, primary().port);
    closers.push(async () => void (await admin.replicaof('NO', 'ONE')));
    const prefix = uniquePrefix('pf');
    const { lock } = lockOn(closers, replica().connect(), { prefix });
    const err = await refusal(lock.waitUntilReady());
    expect(err.message).toMatch(/replica/);
    expect(err.message).toMatch(/primary/);
    await refusal(lock.run('task-1', () => 'never'));
    // The primary itself is fine.
    const good = lockOn(closers, primary().connect(), { prefix });
    await good.lock.waitUntilReady();
  });
});

describe('lock store with ACL users', () => {
  const redis = useRedis({ killable: true });
  const closers = useClosers();

  /** A connection as a new ACL user with `rules` (after `on >password`). */
  async function userClient(rules: string[]): Promise<Redis> {
    const username = uniquePrefix('user');
    await redis()
      .connect()
      .call('ACL', 'SETUSER', username, 'reset', 'on', `>${PASSWORD}`, ...rules);
    return redis().connect({ username, password: PASSWORD });
  }

  it.each([
    ['without EVALSHA and EVAL', ['~*', '&*', '+@all', '-evalsha', '-eval']],
    ['without access to the keys', ['~elsewhere:*', '&*', '+@all']],
    ['without access to the channels', ['~*', 'resetchannels', '+@all']],
  ])('refuses a user %s (NOPERM) and names what to grant', async (_, rules) => {
    const prefix = uniquePrefix('pf');
    const { lock } = lockOn(closers, await userClient(rules), { prefix });
    const err = await refusal(lock.waitUntilReady());
    // Redis says NOPERM, or inside a script "The user executing the script can't …".
    expect(err.message).toMatch(/NOPERM|user executing the script can't/);
    expect(err.message).toContain(`ACL SETUSER <user> ~${prefix}:* &${prefix}:*`);
    expect(err.message).toContain('+evalsha');
  });

  it('accepts a user granted exactly what the error names, and pairs runs with it', async () => {
    const prefix = uniquePrefix('pf');
    const rules = [
      `~${prefix}:*`,
      'resetchannels',
      `&${prefix}:*`,
      ...ACL_COMMANDS.map((c) => `+${c}`),
    ];
    const eu = lockOn(closers, await userClient(rules), { prefix, member: 'eu' });
    const us = lockOn(closers, await userClient(rules), { prefix, member: 'us' });
    await eu.lock.waitUntilReady();
    await us.lock.waitUntilReady();
    // eu runs, us shadows (liveness watcher: PUBSUB NUMSUB, MGET) and gets eu's result.
    const started = deferred();
    const release = deferred();
    const first = eu.lock.run('task-1', async () => {
      started.resolve();
      await release.promise;
      return 'by eu';
    });
    await Promise.race([started.promise, first]); // a refused command rejects `first`
    const second = us.lock.run('task-1', () => 'by us');
    await new Promise((resolve) => setTimeout(resolve, 300));
    release.resolve();
    expect(await first).toMatchObject({ role: 'executor', result: 'by eu' });
    expect(await second).toMatchObject({ role: 'shadow', result: 'by eu' });
    expect([...eu.errors, ...us.errors]).toEqual([]);
  });
});

describe('lock store that evicts keys', () => {
  const redis = useRedis({ killable: true, args: ['--maxmemory-policy', 'allkeys-lru'] });
  const closers = useClosers();

  it('is refused by default, naming the policy, the fix and the opt-out; used once fixed', async () => {
    const prefix = uniquePrefix('pf');
    const { lock, errors } = lockOn(closers, redis().connect(), { prefix });
    const err = await refusal(lock.waitUntilReady());
    expect(err.message).toMatch(
      /"allkeys-lru".*runs again on the twin.*maxmemory-policy noeviction.*allowEviction: true/s,
    );
    await refusal(lock.run('task-1', () => 'not run'));
    expect(errors.filter((e) => e instanceof LockStoreEvictionError)).toEqual([]);
    // The next call checks again: the operator's fix is taken without a restart.
    const admin = redis().connect();
    closers.push(async () => void admin.disconnect());
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    try {
      expect(await lock.run('task-1', () => 'ok')).toMatchObject({
        role: 'executor',
        result: 'ok',
      });
    } finally {
      await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    }
  });

  it('refuses it in PairedProcessor.waitUntilReady() too', async () => {
    const paired = new PairedProcessor(async () => 'not run', {
      twin: 'eu',
      lockConnection: redis().connect(),
      prefix: uniquePrefix('pf'),
    });
    paired.on('error', () => {});
    closers.push(() => paired.close());
    const err = await refusal(paired.waitUntilReady());
    expect(err.message).toMatch(/"allkeys-lru"/);
  });

  it('with allowEviction: reports LockStoreEvictionError naming the policy and the fix, and runs', async () => {
    const { lock, errors } = lockOn(closers, redis().connect(), {
      prefix: uniquePrefix('pf'),
      allowEviction: true,
    });
    await lock.waitUntilReady();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(LockStoreEvictionError);
    expect(errors[0]).toMatchObject({ code: 'ERR_PAIRED_EVICTION_POLICY', policy: 'allkeys-lru' });
    expect(errors[0]?.message).toMatch(/allkeys-lru.*maxmemory-policy noeviction/s);
    expect(await lock.run('task-1', () => 'ok')).toMatchObject({ role: 'executor', result: 'ok' });
    expect(errors).toHaveLength(1); // once per lock, not per run
  });
});

describe('lock store with noeviction', () => {
  const redis = useRedis({ killable: true, args: ['--maxmemory-policy', 'noeviction'] });
  const closers = useClosers();

  it('reports nothing', async () => {
    const { lock, errors } = lockOn(closers, redis().connect(), { prefix: uniquePrefix('pf') });
    await lock.waitUntilReady();
    expect(await lock.run('task-1', () => 'ok')).toMatchObject({ role: 'executor' });
    expect(errors).toEqual([]);
  });
});

describe('PairedProcessor on a misconfigured or unreachable lock store', () => {
  const queueRedis = useRedis({ killable: true });
  const lockRedis = useRedis({ killable: true, args: ['--requirepass', PASSWORD] });
  const closers = useClosers();

  /** A real Worker whose lock connection is `lockConnection`, running under policy 'run'. */
  async function runUncoordinated(redis: () => TestRedis, lockConnection: Redis) {
    const name = uniquePrefix('q');
    const paired = new PairedProcessor(
      async (_job: Job, _token?: string, _signal?: AbortSignal, pair?: PairInfo) => ({
        coordinated: pair?.coordinated,
      }),
      { twin: 'eu', lockConnection, whenLockStoreDown: 'run', lockStoreRetryMs: 200 },
    );
    const errors: Error[] = [];
    paired.on('error', (err) => errors.push(err));
    const worker = new Worker(name, paired.processor, {
      connection: redis().connect({ maxRetriesPerRequest: null }),
    });
    paired.attach(worker);
    const queue = new Queue(name, { connection: redis().connect() });
    closers.push(async () => {
      await worker.close();
      await paired.close();
      await queue.close();
    });
    return { paired, errors, queue };
  }

  it('rejects waitUntilReady() on a wrong password; under whenLockStoreDown "run" the job runs uncoordinated and no error says "parked"', async () => {
    const { paired, errors, queue } = await runUncoordinated(
      queueRedis,
      lockRedis().connect({ password: 'wrong' }),
    );
    const err = await refusal(paired.waitUntilReady());
    expect(err.message).toMatch(/WRONGPASS/);
    await queue.add('work', {}, { jobId: 'job-1' });
    await vi.waitFor(async () => expect(await queue.getJobState('job-1')).toBe('completed'), {
      timeout: 15_000,
      interval: 50,
    });
    expect((await queue.getJob('job-1'))?.returnvalue).toEqual({ coordinated: false });
    expect(errors.length).toBeGreaterThan(0);
    // Besides the subscriber's own connection errors (WRONGPASS), only the typed refusal.
    expect(errors.some((e) => e instanceof LockStoreMisconfiguredError)).toBe(true);
    expect(errors.some((e) => e instanceof LockStoreUnavailableError)).toBe(false);
    for (const e of errors) expect(e.message).not.toMatch(/parked|retries by itself/);
  });

  it('says an unreachable store\'s job runs without coordination under "run", not that it was parked', async () => {
    const dead = new Redis({
      port: await freePort(),
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    dead.on('error', () => {});
    closers.push(async () => dead.disconnect());
    const { errors, queue } = await runUncoordinated(queueRedis, dead);
    await queue.add('work', {}, { jobId: 'job-1' });
    await vi.waitFor(async () => expect(await queue.getJobState('job-1')).toBe('completed'), {
      timeout: 15_000,
      interval: 50,
    });
    const down = errors.filter((e) => e instanceof LockStoreUnavailableError);
    // The job's own reports; the start-up checks' (no job id) say nothing of jobs.
    const job = down.filter((e) => e.id === 'job-1');
    expect(job.length).toBeGreaterThan(0);
    for (const e of job) expect(e.message).toMatch(/runs without coordination/);
    for (const e of down) expect(e.message).not.toMatch(/parked/);
  });

  it('keeps the job parked under whenLockStoreDown "wait" (nothing runs, nothing is lost)', async () => {
    const name = uniquePrefix('q');
    const ran = vi.fn();
    const paired = new PairedProcessor(ran, {
      twin: 'eu',
      lockConnection: lockRedis().connect({ password: 'wrong' }),
      lockStoreRetryMs: 200,
    });
    const errors: Error[] = [];
    paired.on('error', (err) => errors.push(err));
    const worker = new Worker(name, paired.processor, {
      connection: queueRedis().connect({ maxRetriesPerRequest: null }),
    });
    paired.attach(worker);
    const queue = new Queue(name, { connection: queueRedis().connect() });
    closers.push(async () => {
      await worker.close();
      await paired.close();
      await queue.close();
    });
    await queue.add('work', {}, { jobId: 'job-1' });
    await vi.waitFor(
      () =>
        expect(
          errors.filter((e) => e instanceof LockStoreMisconfiguredError).length,
        ).toBeGreaterThan(2),
      { timeout: 15_000, interval: 50 },
    );
    expect(['delayed', 'waiting', 'active', 'prioritized']).toContain(
      await queue.getJobState('job-1'),
    );
    expect(ran).not.toHaveBeenCalled();
    expect(errors.some((e) => e instanceof LockStoreUnavailableError)).toBe(false);
  });
});
