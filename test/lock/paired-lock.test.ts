import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { ClosedError, LeaseLostError, PeerFailedError, StaleFenceError } from '../../src/index.js';
import { sessionKey } from '../../src/lock/keys.js';
import { aborted, deferred } from '../support/deferred.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import {
  expireLease,
  heldRun,
  keysUnder,
  lockKit,
  runOptions,
  type Storage,
  taskId,
} from './lock-test-kit.js';

const redis = useRedis();

describe.each<Storage>(['key', 'hash'])('PairedLock with %s storage', (storage) => {
  const kit = lockKit(redis);
  const opts = runOptions(storage, 'pairs');

  it('runs fn on exactly one member of a racing pair, many times over', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const us = kit.lock({ member: 'us' }, kit.prefix);
    for (let round = 0; round < 40; round++) {
      const id = taskId();
      let runs = 0;
      let concurrent = 0;
      let maxConcurrent = 0;
      const fn = async ({ fence }: { fence: number }) => {
        runs++;
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        await sleep(Math.random() * 5);
        concurrent--;
        return { fence, round };
      };
      const start = (lock: typeof eu) =>
        sleep(Math.random() * 10).then(() => lock.run(id, fn, opts));
      const [a, b] = await Promise.all([start(eu), start(us)]);
      expect(runs).toBe(1);
      expect(maxConcurrent).toBe(1);
      expect([a.role, b.role].sort()).toEqual(['executor', 'shadow']);
      expect(a.result).toEqual({ fence: clockFence, round });
      expect(b.result).toEqual(a.result);
    }
  });

  it('returns the executor result to the shadow without running fn there', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const us = kit.lock({ member: 'us' }, kit.prefix);
    const id = taskId();
    const started = deferred();
    const finish = deferred();
    const executor = eu.run(
      id,
      async () => {
        started.resolve();
        await finish.promise;
        return { sent: 3 };
      },
      opts,
    );
    await started.promise;
    const shadowFn = vi.fn();
    const shadow = us.run(id, shadowFn, opts);
    finish.resolve();
    expect(await executor).toEqual({
      role: 'executor',
      result: { sent: 3 },
      fence: clockFence,
      owner: 'eu',
    });
    expect(await shadow).toEqual({
      role: 'shadow',
      result: { sent: 3 },
      fence: clockFence,
      owner: 'eu',
    });
    expect(shadowFn).not.toHaveBeenCalled();
  });

  it('takes over at once when the executor throws (policy takeover)', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const us = kit.lock({ member: 'us', pollIntervalMs: 60_000 }, kit.prefix);
    const id = taskId();
    const started = deferred();
    const boom = deferred();
    const executor = eu.run(
      id,
      async () => {
        started.resolve();
        await boom.promise;
        throw new Error('gateway said no');
      },
      opts,
    );
    await started.promise;
    const shadow = us.run(id, ({ fence, takeover }) => ({ fence, takeover }), opts);
    boom.resolve();
    await expect(executor).rejects.toThrow('gateway said no');
    // pollIntervalMs is a minute: only the settle notification can wake the shadow in time.
    const outcome = await shadow;
    expect(outcome).toMatchObject({
      role: 'executor',
      fence: clockFence,
      takeover: 'failed',
      owner: 'us',
    });
    expect(outcome.result).toEqual({ fence: clockFence, takeover: 'failed' });
    const record = await eu.inspect(id, opts);
    expect(record).toMatchObject({
      state: 'done',
      fence: clockFence,
      owner: 'us',
      attempts: 2,
      takeover: 'failed',
    });
  });

  it('fails the shadow with the executor error under policy respect', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const us = kit.lock({ member: 'us', onPeerFailure: 'respect' }, kit.prefix);
    const id = taskId();
    await expect(
      eu.run(
        id,
        () => {
          throw new TypeError('bad token');
        },
        opts,
      ),
    ).rejects.toThrow('bad token');
    const shadowFn = vi.fn();
    const error = await us.run(id, shadowFn, opts).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(PeerFailedError);
    expect(error).toMatchObject({
      code: 'ERR_PAIRED_PEER_FAILED',
      owner: 'eu',
      fence: clockFence,
      peerError: { name: 'TypeError', message: 'bad token' },
    });
    expect(shadowFn).not.toHaveBeenCalled();
  });

  it('keeps a task five times longer than its lease alive by heartbeats', async () => {
    const eu = kit.lock({ member: 'eu', leaseMs: 300, heartbeatMs: 75 }, kit.prefix);
    const us = kit.lock(
      { member: 'us', leaseMs: 300, heartbeatMs: 75, liveness: false },
      kit.prefix,
    );
    const id = taskId();
    const started = deferred();
    let lostLease: unknown;
    const executor = eu.run(
      id,
      async ({ signal }) => {
        started.resolve();
        signal.addEventListener('abort', () => {
          lostLease = signal.reason;
        });
        await sleep(1_500);
        return 'long';
      },
      opts,
    );
    await started.promise;
    const shadowFn = vi.fn();
    const shadow = us.run(id, shadowFn, opts);
    expect((await executor).result).toBe('long');
    expect(await shadow).toMatchObject({ role: 'shadow', result: 'long', fence: clockFence });
    expect(shadowFn).not.toHaveBeenCalled();
    expect(lostLease).toBeUndefined();
  });

  it('refuses a stale owner: its signal aborts and its result is not stored', async () => {
    // Per-record leases (no session), so the test can end this one record's lease by hand.
    const eu = kit.lock(
      { member: 'eu', leaseMs: 600, heartbeatMs: 100, liveness: false },
      kit.prefix,
    );
    const us = kit.lock({ member: 'us' }, kit.prefix);
    const id = taskId();
    const held = heldRun(eu, id, 'stale result', opts);
    const executor = held.run;
    const signal = await held.signal;
    await expireLease(redis().connect(), kit.prefix, id, opts.hash);
    const taken = await us.run(id, ({ fence, takeover }) => ({ fence, takeover }), opts);
    expect(taken).toMatchObject({
      role: 'executor',
      result: { fence: clockFence, takeover: 'expired' },
    });
    const takenFence = (taken.result as { fence: number }).fence;
    const reason = await aborted(signal);
    expect(reason).toBeInstanceOf(LeaseLostError);
    expect(reason).toMatchObject({
      code: 'ERR_PAIRED_LEASE_LOST',
      reason: 'superseded',
      fence: clockFence,
      currentFence: takenFence,
    });
    expect((reason as LeaseLostError).fence).toBeLessThan(takenFence);
    held.release();
    const error = await executor.catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StaleFenceError);
    expect(error).toMatchObject({
      code: 'ERR_PAIRED_STALE_FENCE',
      fence: clockFence,
      currentFence: takenFence,
      currentState: 'done',
    });
    expect(await us.inspect(id, opts)).toMatchObject({
      state: 'done',
      fence: clockFence,
      result: { fence: clockFence, takeover: 'expired' },
    });
  });

  it('stops an owner whose session ran out: the shadow takes over, the owner aborts', async () => {
    const eu = kit.lock({ member: 'eu', leaseMs: 600, heartbeatMs: 100 }, kit.prefix);
    const us = kit.lock({ member: 'us' }, kit.prefix);
    const id = taskId();
    const held = heldRun(eu, id, 'late', opts);
    const executor = held.run;
    const signal = await held.signal;
    // As if the process had been frozen past its lease: its session key is gone.
    const sessions = (await keysUnder(redis().connect(), kit.prefix)).filter((k) =>
      k.startsWith(sessionKey(kit.prefix, '')),
    );
    expect(sessions).toHaveLength(1); // us has not started yet: this is eu's
    const record = await us.inspect(id, opts);
    expect(record?.owner).toBe('eu');
    for (const key of sessions) await redis().connect().del(key);
    const taken = await us.run(id, ({ fence, takeover }) => ({ fence, takeover }), opts);
    expect(taken).toMatchObject({
      role: 'executor',
      result: { fence: clockFence, takeover: 'expired' },
    });
    expect(await aborted(signal)).toMatchObject({
      code: 'ERR_PAIRED_LEASE_LOST',
      reason: 'expired',
      fence: clockFence,
    });
    held.release();
    await expect(executor).rejects.toMatchObject({
      code: 'ERR_PAIRED_STALE_FENCE',
      currentFence: (taken.result as { fence: number }).fence,
    });
  });

  it('hands over on close(): the twin takes over without waiting for the lease', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const us = kit.lock({ member: 'us', pollIntervalMs: 60_000 }, kit.prefix);
    const id = taskId();
    const started = deferred();
    const executor = eu.run(
      id,
      async ({ signal }) => {
        started.resolve();
        throw await aborted(signal);
      },
      opts,
    );
    await started.promise;
    const shadow = us.run(id, ({ fence, takeover }) => ({ fence, takeover }), opts);
    await eu.close();
    await expect(executor).rejects.toBeInstanceOf(ClosedError);
    expect(await shadow).toMatchObject({
      role: 'executor',
      result: { fence: clockFence, takeover: 'released' },
    });
    await expect(eu.run(taskId(), () => 1, opts)).rejects.toBeInstanceOf(ClosedError);
  });

  it('shows a record written by one member to another connection', async () => {
    const eu = kit.lock({ member: 'eu', leaseMs: 10_000 }, kit.prefix);
    const viewer = kit.lock({ member: 'viewer' }, kit.prefix);
    const id = taskId();
    expect(await viewer.inspect(id, opts)).toBeNull();
    const started = deferred();
    const finish = deferred();
    const run = eu.run(
      id,
      async () => {
        started.resolve();
        await finish.promise;
        return ['ok'];
      },
      opts,
    );
    await started.promise;
    const running = await viewer.inspect(id, opts);
    expect(running).toMatchObject({
      id,
      state: 'running',
      owner: 'eu',
      fence: clockFence,
      attempts: 1,
    });
    // Under the keeper thread's session (a 3 s key, refreshed every 1.5 s) the lease left is
    // the key's: how soon a cut-off process would be taken over.
    expect(running?.leaseLeftMs).toBeGreaterThan(1_000);
    expect(running?.leaseLeftMs).toBeLessThanOrEqual(3_000);
    finish.resolve();
    await run;
    const done = await viewer.inspect(id, opts);
    expect(done).toMatchObject({
      state: 'done',
      owner: 'eu',
      fence: clockFence,
      result: ['ok'],
      leaseLeftMs: null,
    });
    expect(done?.retentionLeftMs).toBeGreaterThan(86_000_000);
  });

  it('reports the lease left from the session while a task outlives its first lease', async () => {
    const eu = kit.lock({ member: 'eu', leaseMs: 300, heartbeatMs: 75 }, kit.prefix);
    const id = taskId();
    const started = deferred();
    const finish = deferred();
    const run = eu.run(
      id,
      async () => {
        started.resolve();
        await finish.promise;
      },
      opts,
    );
    await started.promise;
    await sleep(700); // more than two leases: only the session's refreshes keep it alive
    const record = await eu.inspect(id, opts);
    expect(record?.state).toBe('running');
    expect(record?.leaseLeftMs).toBeGreaterThan(0);
    expect(record?.leaseLeftMs).toBeLessThanOrEqual(300);
    finish.resolve();
    await run;
  });

  it('deletes records after retention and leaves no keys behind', async () => {
    const prefix = `${kit.prefix}-ret`;
    const eu = kit.lock(
      { member: 'eu', leaseMs: 200, heartbeatMs: 50, retentionMs: 1_000 },
      prefix,
    );
    const ids = [taskId(), taskId(), taskId()];
    for (const id of ids) await eu.run(id, () => id, opts);
    expect(await eu.inspect(ids[0] ?? '', opts)).toMatchObject({ state: 'done' });
    const client = redis().connect();
    expect((await keysUnder(client, prefix)).length).toBeGreaterThan(0);
    await eu.close(); // its session key goes with it: only records could remain
    await vi.waitFor(
      async () => {
        expect(await keysUnder(client, prefix)).toEqual([]);
      },
      { timeout: 10_000, interval: 100 },
    );
  });
});
