/**
 * The health check of a Cluster lock store's sharded liveness connections (one per master), as
 * one Redis's subscriber has it (before: none on a Cluster). A connection that stops answering
 * (its socket paused here: the PING reply is never read, as with a stalled or half-open
 * socket) and a subscription the server no longer lists are each reported as
 * LivenessSubscriberError 'unhealthy' and mark the process away (no grants); a dropped
 * subscription is subscribed again, and the process is back once its channels are well. A
 * twin shadowing the stalled process's run does not take it over.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { LivenessSubscriberError, PairedLock } from '../../src/index.js';
import { livenessChannelPattern, recordAddress } from '../../src/lock/keys.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { nextEvent } from '../support/deferred.js';
import { clockFence } from '../support/fences.js';
import { uniquePrefix } from '../support/redis.js';
import { heldRun, taskId } from './lock-test-kit.js';

let cluster: TestCluster;
const locks: PairedLock[] = [];
const clients: (Cluster | Redis)[] = [];

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterEach(async () => {
  await Promise.all(locks.splice(0).map((lock) => lock.close()));
  for (const client of clients.splice(0)) client.disconnect();
});
afterAll(async () => {
  await cluster?.stop();
});

/** A lock on the Cluster, and the Cluster client it made for its subscriber. */
function lockWithSubscriber(member: string, prefix: string) {
  const client = cluster.connect();
  clients.push(client);
  const duplicate = client.duplicate.bind(client);
  let subscriber: Cluster | undefined;
  client.duplicate = ((...args: Parameters<Cluster['duplicate']>) => {
    subscriber = duplicate(...args);
    return subscriber;
  }) as Cluster['duplicate'];
  const lock = new PairedLock(client, { member, prefix });
  locks.push(lock);
  const errors: Error[] = [];
  lock.on('error', (err) => errors.push(err));
  return {
    lock,
    errors,
    /** The sharded subscriber connection on the master that serves `key` (ioredis' private group). */
    connectionFor(key: string): Redis {
      const group = (
        subscriber as unknown as {
          shardedSubscribers: {
            getResponsibleSubscriber(slot: number): { getInstance(): Redis | null } | undefined;
          };
        }
      ).shardedSubscribers;
      const connection = group.getResponsibleSubscriber(calculateSlot(key))?.getInstance();
      if (!connection) throw new Error(`no sharded subscriber for ${key}`);
      return connection;
    },
  };
}

/** eu's liveness channel on the master serving `key`, and its subscriber count there. */
async function liveChannelOn(
  prefix: string,
  key: string,
): Promise<{ channel: string; count: () => Promise<number> }> {
  const master = await cluster.masterOf(key);
  const admin = master.connect();
  clients.push(admin);
  const [channel] = (await admin.call(
    'PUBSUB',
    'SHARDCHANNELS',
    livenessChannelPattern(prefix),
  )) as string[];
  if (channel === undefined) throw new Error(`no liveness channel on ${master.port}`);
  return {
    channel,
    count: async () =>
      Number(((await admin.call('PUBSUB', 'SHARDNUMSUB', channel)) as unknown[])[1]),
  };
}

const isUnhealthy = (err: Error): boolean =>
  err instanceof LivenessSubscriberError && err.state === 'unhealthy';

describe('sharded liveness connections on a Cluster', () => {
  it('a connection that stops answering is reported, takes no grant until it answers again, and its live run is not taken over', {
    timeout: 60_000,
  }, async () => {
    const prefix = uniquePrefix('shealth');
    const eu = lockWithSubscriber('eu', prefix);
    const usClient = cluster.connect();
    clients.push(usClient);
    const us = new PairedLock(usClient, { member: 'us', prefix });
    locks.push(us);
    const id = taskId();
    const held = heldRun(eu.lock, id, 'by eu');
    await held.signal;
    const shadowing = nextEvent(us, 'shadowing');
    const shadow = us.run(id, () => 'by us');
    await shadowing;

    const away = nextEvent<[string]>(eu.lock, 'subscriberAway');
    const back = nextEvent(eu.lock, 'subscriberBack');
    const stalled = eu.connectionFor(recordAddress(prefix, id).key);
    const pausedAt = Date.now();
    stalled.stream.pause(); // replies are no longer read: a PING gets no answer
    const [reason] = await away;
    const detectedMs = Date.now() - pausedAt;
    expect(reason).toMatch(/PING of its sharded subscriber .* got no answer/);
    expect(eu.errors.some(isUnhealthy)).toBe(true);
    // No grant while it lasts: a new run waits.
    let granted = false;
    const next = eu.lock.run(taskId(), () => {
      granted = true;
      return 'later';
    });
    await sleep(1_500);
    expect(granted).toBe(false);
    stalled.stream.resume(); // the stall ends: the PING is answered
    await back;
    console.log(`sharded subscriber stalled: away after ${detectedMs} ms, back when it answered`);
    expect(detectedMs).toBeLessThan(15_000);
    expect(await next).toMatchObject({ role: 'executor', result: 'later' });
    expect(granted).toBe(true);

    held.release();
    expect(await held.run).toMatchObject({ role: 'executor', result: 'by eu', fence: clockFence });
    expect(await shadow).toMatchObject({ role: 'shadow', result: 'by eu', fence: clockFence });
  });

  it('notices when the master no longer lists a sharded subscription, and subscribes again', {
    timeout: 60_000,
  }, async () => {
    const prefix = uniquePrefix('shealth');
    const eu = lockWithSubscriber('eu', prefix);
    expect(await eu.lock.run(taskId(), () => 'warm')).toMatchObject({ role: 'executor' });
    const key = recordAddress(prefix, taskId()).key;
    const live = await liveChannelOn(prefix, key);
    expect(await live.count()).toBe(1);
    const away = nextEvent<[string]>(eu.lock, 'subscriberAway');
    // The socket is fine and PING answers, but the subscription is gone on the server.
    await eu.connectionFor(key).sunsubscribe(live.channel);
    expect(await live.count()).toBe(0);
    expect((await away)[0]).toContain('lists no subscriber');
    await vi.waitFor(async () => expect(await live.count()).toBe(1), { timeout: 15_000 });
    expect(await eu.lock.run(taskId(), () => 'again')).toMatchObject({ role: 'executor' });
  });
});
