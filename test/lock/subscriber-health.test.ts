/**
 * The lock's subscriber connection (settle messages, and this process's liveness channel)
 * going bad while its other connection stays fine. Only the subscriber runs through a fault
 * proxy: the lock's client is built so that its duplicate (the subscriber) connects to the
 * proxy, while the client itself talks to Redis directly.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis, RedisOptions } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ClosedError, LivenessSubscriberError, type PairedLock } from '../../src/index.js';
import { PairCore } from '../../src/lock/core.js';
import { backupLivenessChannel, livenessChannelPattern } from '../../src/lock/keys.js';
import { resolveLockOptions } from '../../src/lock/options.js';
import { ACL_COMMANDS } from '../../src/lock/preflight.js';
import { NO_OWNER, type WakeReason } from '../../src/lock/ticket.js';
import { aborted, nextEvent } from '../support/deferred.js';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { heldRun, lockKit, taskId } from './lock-test-kit.js';

const redis = useRedis();
const kit = lockKit(redis);
let proxy: FaultProxy;

beforeEach(async () => {
  proxy = await startFaultProxy(redis());
});
afterEach(async () => {
  await proxy.close();
});

/** `client`, whose duplicates (the lock's subscriber) connect through the proxy. */
function subscriberViaProxy(client: Redis): { client: Redis; subscriber: () => Redis } {
  const duplicate = client.duplicate.bind(client);
  let made: Redis | undefined;
  client.duplicate = (override?: Partial<RedisOptions>) => {
    const connection = duplicate({ ...override, host: proxy.host, port: proxy.port });
    // The first is the subscriber; the next, the backup liveness connection.
    made ??= connection;
    return connection;
  };
  return {
    client,
    subscriber: () => {
      if (made === undefined) throw new Error('no subscriber yet');
      return made;
    },
  };
}

function nextError(lock: PairedLock, matches: (err: Error) => boolean): Promise<Error> {
  return new Promise((resolve) => {
    const onError = (err: Error): void => {
      if (!matches(err)) return;
      lock.off('error', onError);
      resolve(err);
    };
    lock.on('error', onError);
  });
}

const isLivenessError = (err: Error): boolean => err instanceof LivenessSubscriberError;

/** `promise`'s value, or 'timed out' after `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timed out'> {
  const timer = new AbortController();
  const timedOut = delay(ms, 'timed out' as const, { signal: timer.signal }).catch(
    () => 'timed out' as const,
  );
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    timer.abort();
  }
}

async function liveChannels(prefix: string): Promise<string[]> {
  return (await redis().connect().pubsub('CHANNELS', livenessChannelPattern(prefix))) as string[];
}

async function subscribers(channel: string): Promise<number> {
  const reply = (await redis().connect().pubsub('NUMSUB', channel)) as [string, number];
  return Number(reply[1]);
}

describe('the lock subscriber ends for good', () => {
  it('reports LivenessSubscriberError, grants nothing more (run rejects), and the twin runs the task', async () => {
    // Reconnects off: the subscriber tries once at once (refused), then ends.
    const { client } = subscriberViaProxy(redis().connect({ retryStrategy: () => null }));
    const eu = kit.lock({ member: 'eu' }, kit.prefix, client);
    const us = kit.lock({ member: 'us' }, kit.prefix);
    const lost = nextError(eu, isLivenessError);
    expect(await eu.run(taskId(), () => 'warm')).toMatchObject({ role: 'executor' });
    proxy.cut();
    expect(await lost).toMatchObject({ code: 'ERR_PAIRED_LIVENESS_LOST', state: 'ended' });
    expect((await lost).message).toContain('takes no grants until it is back');

    const id = taskId();
    let ran = false;
    const refused = await eu
      .run(id, () => {
        ran = true;
        return 'eu';
      })
      .catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(LivenessSubscriberError);
    expect(ran).toBe(false);
    expect(await eu.inspect(id)).toBeNull(); // its client still works: nothing was written
    expect(await us.run(id, () => 'us')).toMatchObject({
      role: 'executor',
      result: 'us',
      fence: clockFence,
    });
    // A settled record is still read: the result, without a grant.
    expect(await eu.run(id, () => 'eu')).toMatchObject({ role: 'shadow', result: 'us' });
  });

  it('hands its running tasks over at once (released) instead of letting the twin run them alongside', async () => {
    const { client } = subscriberViaProxy(redis().connect({ retryStrategy: () => null }));
    const eu = kit.lock({ member: 'eu' }, kit.prefix, client);
    const us = kit.lock({ member: 'us' }, kit.prefix);
    eu.on('error', () => {});
    const id = taskId();
    let signal: AbortSignal | undefined;
    const run = eu.run(id, async (ctx) => {
      signal = ctx.signal;
      throw await aborted(ctx.signal);
    });
    await vi.waitFor(() => expect(signal).toBeDefined(), { timeout: 10_000 });
    const shadow = us.run(id, ({ takeover }) => ({ by: 'us', takeover }));
    proxy.cut();
    expect(await run.catch((err: unknown) => err)).toBeInstanceOf(ClosedError);
    expect(await shadow).toMatchObject({
      role: 'executor',
      fence: clockFence,
      result: { by: 'us', takeover: 'released' },
    });
  });
});

describe('a half-open lock subscriber (the socket looks open, nothing flows)', () => {
  it('reports it within a few seconds, grants nothing while it lasts, and grants again once healed', async () => {
    const { client } = subscriberViaProxy(redis().connect());
    const eu = kit.lock({ member: 'eu' }, kit.prefix, client);
    expect(await eu.run(taskId(), () => 'warm')).toMatchObject({ role: 'executor' });
    const unhealthy = nextError(eu, isLivenessError);
    const away = nextEvent(eu, 'subscriberAway');
    proxy.partition();
    expect(await unhealthy).toMatchObject({ code: 'ERR_PAIRED_LIVENESS_LOST', state: 'unhealthy' });
    expect((await away)[0]).toMatch(/PING got no answer/);

    const id = taskId();
    let granted = false;
    const run = eu.run(id, () => {
      granted = true;
      return 'eu';
    });
    await delay(1_500);
    expect(granted).toBe(false);
    expect(await eu.inspect(id)).toBeNull();
    const back = nextEvent(eu, 'subscriberBack');
    proxy.heal();
    await back;
    expect(await run).toMatchObject({ role: 'executor', result: 'eu', fence: clockFence });
  });

  it('notices from the server side when Redis no longer lists its liveness subscription, and resubscribes', async () => {
    const { client, subscriber } = subscriberViaProxy(redis().connect());
    const eu = kit.lock({ member: 'eu' }, kit.prefix, client);
    expect(await eu.run(taskId(), () => 'warm')).toMatchObject({ role: 'executor' });
    const [channel = ''] = await liveChannels(kit.prefix);
    expect(await subscribers(channel)).toBe(1);
    const unhealthy = nextError(eu, isLivenessError);
    // The socket is fine and PING answers, but the subscription is gone on the server.
    await subscriber().unsubscribe(channel);
    expect(await subscribers(channel)).toBe(0);
    const error = await unhealthy;
    expect(error).toMatchObject({ state: 'unhealthy' });
    expect(error.message).toContain('no subscriber');
    await vi.waitFor(async () => expect(await subscribers(channel)).toBe(1), { timeout: 10_000 });
    expect(await eu.run(taskId(), () => 'again')).toMatchObject({ role: 'executor' });
  });
});

describe('while the subscriber is away', () => {
  it('a waiting shadow still learns the settled result, by polling', async () => {
    const { client } = subscriberViaProxy(redis().connect());
    const eu = kit.lock({ member: 'eu', pollIntervalMs: 200 }, kit.prefix, client);
    const us = kit.lock({ member: 'us' }, kit.prefix);
    eu.on('error', () => {});
    expect(await eu.run(taskId(), () => 'warm')).toMatchObject({ role: 'executor' });
    const [channel = ''] = await liveChannels(kit.prefix);
    const id = taskId();
    const held = heldRun(us, id, 'from us');
    await held.signal;
    const shadowing = nextEvent(eu, 'shadowing');
    const shadow = eu.run(id, () => 'eu');
    expect((await shadowing)[0]).toMatchObject({ id, owner: 'us', fence: clockFence });
    proxy.cut(); // reset, and every reconnect refused: the subscriber stays away
    await vi.waitFor(async () => expect(await subscribers(channel)).toBe(0), { timeout: 10_000 });
    held.release();
    await held.run;
    // 25 poll intervals: the settle message is lost, only polling can tell it.
    expect(await within(shadow, 5_000)).toMatchObject({ role: 'shadow', result: 'from us' });
  });

  it("a parked copy's ticket (no timer of its own) wakes when its record settles", async () => {
    const { client } = subscriberViaProxy(redis().connect());
    const core = new PairCore(
      client,
      resolveLockOptions({ member: 'eu', prefix: kit.prefix, pollIntervalMs: 200 }),
      () => {},
    );
    try {
      await core.ready();
      const us = kit.lock({ member: 'us' }, kit.prefix);
      const id = taskId();
      const held = heldRun(us, id, 'from us');
      await held.signal;
      const ticket = core.ticket(core.address(id));
      const woke = new Promise<WakeReason>((resolve) => ticket.onNextWake(NO_OWNER, resolve));
      expect(await liveChannels(kit.prefix)).toHaveLength(2);
      proxy.cut(); // reset, and every reconnect refused: eu's subscriber stays away
      await vi.waitFor(async () => expect(await liveChannels(kit.prefix)).toHaveLength(1), {
        timeout: 10_000,
      });
      held.release();
      await held.run;
      expect(await within(woke, 5_000)).toBe('settled');
    } finally {
      await core.close();
    }
  });
});

describe('the backup liveness connection', () => {
  it("keeps a live executor's run when only its subscriber's connection is cut (a crash closes both: test/lock/crash.test.ts)", async () => {
    // Only the first duplicate (the subscriber) goes through the proxy; the backup liveness
    // connection talks to Redis directly.
    const client = redis().connect();
    const duplicate = client.duplicate.bind(client);
    let made = 0;
    client.duplicate = (override?: Partial<RedisOptions>) =>
      made++ === 0
        ? duplicate({ ...override, host: proxy.host, port: proxy.port })
        : duplicate(override);
    const eu = kit.lock({ member: 'eu' }, kit.prefix, client);
    eu.on('error', () => {});
    const us = kit.lock({ member: 'us' }, kit.prefix);
    await us.waitUntilReady();
    const others = new Set(await liveChannels(kit.prefix));
    const id = taskId();
    const held = heldRun(eu, id, 'by eu');
    await held.signal;
    const channel = (await liveChannels(kit.prefix)).find((c) => !others.has(c)) ?? '';
    const shadowing = nextEvent(us, 'shadowing');
    const shadow = us.run(id, () => 'by us');
    await shadowing;
    proxy.cut(); // reset, and every reconnect refused: eu's subscriber stays away
    await vi.waitFor(async () => expect(await subscribers(channel)).toBe(0), { timeout: 10_000 });
    // Ten times the liveness grace with eu's main liveness channel empty: with one connection
    // the twin took the run over after 100 ms.
    await delay(1_000);
    held.release();
    expect(await held.run).toMatchObject({ role: 'executor', result: 'by eu', fence: clockFence });
    expect(await shadow).toMatchObject({ role: 'shadow', result: 'by eu', fence: clockFence });
  });

  it('subscribes its channel again after its own connection was reset (we resubscribe, not ioredis)', async () => {
    // Only the second duplicate (the backup connection) goes through the proxy.
    const client = redis().connect();
    const duplicate = client.duplicate.bind(client);
    let made = 0;
    client.duplicate = (override?: Partial<RedisOptions>) =>
      made++ === 1
        ? duplicate({ ...override, host: proxy.host, port: proxy.port })
        : duplicate(override);
    const others = new Set(await liveChannels(kit.prefix));
    const eu = kit.lock({ member: 'eu' }, kit.prefix, client);
    eu.on('error', () => {});
    await eu.waitUntilReady();
    const live = (await liveChannels(kit.prefix)).find((c) => !others.has(c)) ?? '';
    const backup = backupLivenessChannel(live) ?? '';
    expect(backup).toContain(':liveb:');
    await vi.waitFor(async () => expect(await subscribers(backup)).toBe(1), { timeout: 10_000 });
    proxy.cut();
    await vi.waitFor(async () => expect(await subscribers(backup)).toBe(0), { timeout: 10_000 });
    proxy.heal();
    await vi.waitFor(async () => expect(await subscribers(backup)).toBe(1), { timeout: 10_000 });
    expect(await subscribers(live)).toBe(1);
  });
});

describe('a resubscribe the lock store refuses', () => {
  it('is tried again on a new connection, so the subscriber comes back once it is allowed (an ACL changed meanwhile)', async () => {
    const admin = redis().connect();
    const user = `sub-${taskId()}`;
    const rules = (channels: string) => [
      'reset',
      'on',
      '>pw',
      `~${kit.prefix}:*`,
      channels,
      ...ACL_COMMANDS.map((c) => `+${c}`),
    ];
    await admin.call('ACL', 'SETUSER', user, ...rules(`&${kit.prefix}:*`));
    const lock = kit.lock(
      { member: 'eu' },
      kit.prefix,
      redis().connect({ username: user, password: 'pw' }),
    );
    lock.on('error', () => {});
    await lock.waitUntilReady();
    await admin.call('ACL', 'LOG', 'RESET');
    const away = nextEvent(lock, 'subscriberAway');
    // Its channels taken away: Redis drops the subscriber; each resubscribe is refused.
    await admin.call('ACL', 'SETUSER', user, ...rules('resetchannels'));
    await away;
    // Refused at least once (a reconnect's SUBSCRIBE answered NOPERM: Redis's ACL log says
    // so) before it is allowed again.
    await vi.waitFor(
      async () => {
        const log = (await admin.call('ACL', 'LOG')) as unknown[][];
        expect(JSON.stringify(log)).toMatch(new RegExp(`"reason","channel".*"username","${user}"`));
      },
      { timeout: 10_000, interval: 100 },
    );
    const back = nextEvent(lock, 'subscriberBack');
    await admin.call('ACL', 'SETUSER', user, ...rules(`&${kit.prefix}:*`));
    // Before: it stayed away for good (ioredis no longer resubscribes, and nothing retried).
    expect(await within(back, 10_000)).not.toBe('timed out');
    await admin.call('ACL', 'DELUSER', user);
  });
});
