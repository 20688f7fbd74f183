import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { PeerFailedError, SettleRetryError } from '../../src/index.js';
import { sessionKeyPattern } from '../../src/lock/keys.js';
import { heldRun, lockKit, taskId } from '../lock/lock-test-kit.js';
import { deferred } from '../support/deferred.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';

/**
 * The lock store answers, but refuses the write that stores an executor's result: each
 * fault is made on a private server and healed while the executor's settle is retried.
 */
interface Refusal {
  name: string;
  /** The Redis reply prefix the executor must see while the fault lasts. */
  reply: string;
  make(admin: Redis): Promise<void>;
  heal(admin: Redis): Promise<void>;
}

const REFUSALS: Refusal[] = [
  {
    name: 'out of memory under noeviction',
    reply: 'OOM',
    make: async (admin) => {
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      await admin.config('SET', 'maxmemory', '1');
    },
    heal: async (admin) => {
      await admin.config('SET', 'maxmemory', '0');
    },
  },
  {
    name: 'read-only (demoted to a replica in a failover)',
    reply: 'READONLY',
    // A replica of a primary that does not answer keeps its data and refuses writes.
    make: async (admin) => {
      await admin.replicaof('127.0.0.1', '1');
    },
    heal: async (admin) => {
      await admin.replicaof('NO', 'ONE');
    },
  },
  {
    name: "an ACL that lost the scripting commands (the executor's user)",
    reply: 'NOPERM',
    make: async (admin) => {
      await admin.call('ACL', 'SETUSER', 'paired-eu', '-evalsha', '-eval');
    },
    heal: async (admin) => {
      await admin.call('ACL', 'SETUSER', 'paired-eu', '+evalsha', '+eval');
    },
  },
];

describe('an executor whose result the lock store refuses', () => {
  const redis = useRedis({ killable: true });
  const kit = lockKit(redis);

  for (const fault of REFUSALS) {
    it(`retries the settle until it is stored, and the twin completes with the result (${fault.name})`, async () => {
      const admin = redis().connect();
      for (const user of ['paired-eu', 'paired-us']) {
        await admin.call('ACL', 'SETUSER', user, 'reset', 'on', '>pw', '~*', '&*', '+@all');
      }
      const as = (user: string) => redis().connect({ username: user, password: 'pw' });
      const eu = kit.lock({ member: 'eu' }, kit.prefix, as('paired-eu'));
      const us = kit.lock({ member: 'us' }, kit.prefix, as('paired-us'));
      const refused = deferred<SettleRetryError>();
      eu.on('error', (err) => {
        if (err instanceof SettleRetryError) refused.resolve(err);
      });
      us.on('error', () => {});
      // Both ready before the fault: it strikes the settle, not the start-up checks.
      await Promise.all([eu.run(taskId(), () => 0), us.run(taskId(), () => 0)]);
      const id = taskId();
      let runs = 0;
      const held = heldRun(eu, id, 'sent');
      await held.signal;
      const shadow = us.run(id, () => {
        runs++;
        return 'sent again';
      });
      try {
        await fault.make(admin);
        held.release();
        const err = await refused.promise;
        expect((err.cause as Error).message).toMatch(new RegExp(`^${fault.reply}`));
      } finally {
        await fault.heal(admin);
      }
      expect(await held.run).toMatchObject({ role: 'executor', result: 'sent', fence: clockFence });
      expect(await shadow).toMatchObject({ role: 'shadow', result: 'sent', fence: clockFence });
      expect(runs).toBe(0);
      expect(await eu.inspect(id)).toMatchObject({ state: 'done', fence: clockFence });
    });
  }
});

describe('a lease lost is never a failure', () => {
  const redis = useRedis();
  const kit = lockKit(redis);

  it("releases the record under onPeerFailure: 'respect', so the job still completes", async () => {
    const options = { leaseMs: 1_500, heartbeatMs: 300, onPeerFailure: 'respect' } as const;
    const eu = kit.lock({ member: 'eu', ...options }, kit.prefix);
    const us = kit.lock({ member: 'us', ...options }, kit.prefix);
    eu.on('error', () => {});
    const id = taskId();
    const started = deferred<AbortSignal>();
    let runs = 0;
    const run = eu.run(id, async ({ signal, fence }) => {
      runs++;
      if (runs > 1) return { fence };
      started.resolve(signal);
      // A routine that honours its signal: it throws the lease loss.
      await new Promise((_, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason)),
      );
      return { fence };
    });
    const signal = await started.promise;
    // The process's session key vanishes (evicted): its next refresh finds it gone.
    const admin = redis().connect();
    const sessions = await admin.keys(sessionKeyPattern(kit.prefix));
    expect(sessions.length).toBeGreaterThan(0);
    await admin.del(...sessions);
    await new Promise((resolve) => signal.addEventListener('abort', resolve));
    // Before: the record was settled 'failed' with the abort error, and under 'respect' the
    // twin failed too: the job completed nowhere.
    const outcome = await run;
    expect(outcome).toMatchObject({
      role: 'executor',
      result: { fence: clockFence },
      takeover: 'released',
    });
    expect(await us.run(id, () => ({ fence: -1 }))).toMatchObject({
      role: 'shadow',
      result: { fence: clockFence },
    });
  });

  it('grants nothing under a session key that has vanished', async () => {
    const eu = kit.lock({ member: 'eu' }, kit.prefix);
    const us = kit.lock({ member: 'us' }, kit.prefix);
    const lost = deferred<Error>();
    eu.on('error', (err) => {
      if (err.name === 'SessionLostError') lost.resolve(err);
    });
    await eu.run(taskId(), () => 'warm'); // the session exists
    const admin = redis().connect();
    await admin.del(...(await admin.keys(sessionKeyPattern(kit.prefix))));
    const id = taskId();
    const held = heldRun(eu, id, 'sent');
    await held.signal;
    // The grant came only after the session was made anew, so the twin sees a live owner.
    expect((await lost.promise).message).toMatch(/noeviction/);
    const shadow = us.run(id, () => 'ran twice');
    await expect.poll(() => us.inspect(id)).toMatchObject({ owner: 'eu', fence: clockFence });
    await new Promise((resolve) => setTimeout(resolve, 500)); // ten liveness checks
    expect(await us.inspect(id)).toMatchObject({
      state: 'running',
      owner: 'eu',
      fence: clockFence,
    });
    held.release();
    expect(await shadow).toMatchObject({ role: 'shadow', result: 'sent', fence: clockFence });
  });

  it('assertLease throws on a frozen executor before its abort is delivered', async () => {
    const eu = kit.lock({ member: 'eu', leaseMs: 600, heartbeatMs: 200 }, kit.prefix);
    eu.on('error', () => {});
    const seen = await eu.run(taskId(), ({ assertLease, signal }) => {
      assertLease(); // fresh lease: no throw
      const until = Date.now() + 800; // the event loop is blocked past the lease
      while (Date.now() < until) {
        /* frozen */
      }
      const abortedYet = signal.aborted; // no timer has run: the abort is not delivered
      try {
        assertLease();
        return { abortedYet, threw: '' };
      } catch (err) {
        return { abortedYet, threw: (err as Error).name };
      }
    });
    expect(seen.result).toEqual({ abortedYet: false, threw: 'LeaseLostError' });
  });
});

describe('an acquire whose reply is lost', () => {
  const redis = useRedis();
  const kit = lockKit(redis);

  it('keeps the grant it made for the next call, instead of shadowing itself for ever', async () => {
    // A command timeout shorter than a server pause: the acquire runs on the store after its
    // caller gave up on the reply, and the record is granted to a token nobody holds.
    const eu = kit.lock({ member: 'eu' }, kit.prefix, redis().connect({ commandTimeout: 150 }));
    eu.on('error', () => {});
    await eu.run(taskId(), () => 'warm');
    const id = taskId();
    await redis().connect().call('CLIENT', 'PAUSE', '600', 'ALL');
    await expect(eu.run(id, () => 'lost')).rejects.toThrow(/timed out/i);
    await expect.poll(() => eu.inspect(id), { timeout: 5_000 }).toMatchObject({ state: 'running' });
    // Before: a new token found the record busy under this live process: stuck until it exits.
    const again = await eu.run(id, () => 'sent');
    expect(again).toMatchObject({ role: 'executor', result: 'sent', fence: clockFence });
  });
});

describe('a result the record cannot hold', () => {
  const redis = useRedis();
  const kit = lockKit(redis);

  it('fails the pair once: the twin does not run a job that succeeded', async () => {
    const eu = kit.lock({ member: 'eu', maxResultBytes: 100 }, kit.prefix);
    const us = kit.lock({ member: 'us', maxResultBytes: 100 }, kit.prefix);
    const id = taskId();
    await expect(eu.run(id, () => 'x'.repeat(1_000))).rejects.toMatchObject({
      code: 'ERR_PAIRED_RESULT_TOO_LARGE',
    });
    let runs = 0;
    const err = await us
      .run(id, () => {
        runs++;
        return 'again';
      })
      .catch((e: unknown) => e);
    expect(runs).toBe(0);
    expect(err).toBeInstanceOf(PeerFailedError);
    expect(err).toMatchObject({ peerError: { name: 'ResultTooLargeError' } });
  });
});
