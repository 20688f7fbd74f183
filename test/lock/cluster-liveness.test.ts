/**
 * Sessions and liveness on a real Redis Cluster (three masters, three replicas:
 * test/support/cluster.ts). Each process keeps a session key and a sharded liveness channel
 * on every master (src/lock/shards.ts), so a record's owner is judged on the record's own
 * node: a SIGKILLed executor is taken over as soon as its channels empty, not when a 30 s
 * lease runs out, and a master's failover does not make a live executor look dead.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  LeaseLostError,
  LockStoreMisconfiguredError,
  LockStoreUnavailableError,
  PairedLock,
} from '../../src/index.js';
import { epochKey, recordAddress } from '../../src/lock/keys.js';
import { ACL_COMMANDS } from '../../src/lock/preflight.js';
import { heartbeat } from '../../src/lock/scripts.js';
import { FixtureProcess } from '../support/child.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { deferred } from '../support/deferred.js';
import { clockFence } from '../support/fences.js';
import { uniquePrefix } from '../support/redis.js';

let cluster: TestCluster;
const children: FixtureProcess[] = [];
const locks: PairedLock[] = [];
const clients: Cluster[] = [];

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill()));
  await Promise.all(locks.splice(0).map((lock) => lock.close()));
  await Promise.all(clients.splice(0).map((client) => client.quit()));
});
afterAll(async () => {
  await cluster?.stop();
});

/** One task id whose record sits on each master. */
async function idsOnEveryMaster(prefix: string): Promise<string[]> {
  const byMaster = new Map<number, string>();
  for (let i = 0; byMaster.size < 3; i++) {
    const id = `t${i}`;
    const master = await cluster.masterOf(recordAddress(prefix, id).key);
    if (!byMaster.has(master.port)) byMaster.set(master.port, id);
  }
  return [...byMaster.values()];
}

/** A PairedLock executor process holding every id, its lock store on the Cluster. */
async function holder(prefix: string, ids: string[], leaseMs = 30_000): Promise<FixtureProcess> {
  const child = new FixtureProcess('lock-executor.ts', {
    LOCK_CLUSTER: cluster.nodes.map((n) => `${n.host}:${n.port}`).join(','),
    MEMBER: 'eu',
    PREFIX: prefix,
    TASK_IDS: ids.join(','),
    LEASE_MS: String(leaseMs),
  });
  children.push(child);
  for (const _ of ids) expect(await child.next('executing')).toMatchObject({ fence: clockFence });
  return child;
}

/** This test's member shadows every id; `started` notes when each run began. */
function shadow(prefix: string, ids: string[], leaseMs = 30_000) {
  const client = cluster.connect();
  clients.push(client);
  const lock = new PairedLock(client, { member: 'us', prefix, leaseMs });
  lock.on('error', () => {});
  locks.push(lock);
  const started = new Map<string, number>();
  // As a caller would: a run the lock store could not answer (a master failing over) is
  // asked again.
  const run = async (
    id: string,
  ): ReturnType<typeof lock.run<{ fence: number; takeover: unknown }>> => {
    for (;;) {
      try {
        return await lock.run(id, ({ fence, takeover }) => {
          started.set(id, performance.now());
          return { fence, takeover };
        });
      } catch (err) {
        if (!(err instanceof LockStoreUnavailableError)) throw err;
        await sleep(200);
      }
    }
  };
  const runs = ids.map(run);
  return { started, runs };
}

/**
 * SIGKILLs the executor, waits for every shadow's run, and checks each took over with fence 2
 * (`takeover` when given); resolves with the slowest start after the kill, ms.
 */
async function killAndTakeOver(
  child: FixtureProcess,
  { started, runs }: ReturnType<typeof shadow>,
  takeover?: string,
): Promise<number> {
  const killedAt = performance.now();
  await child.kill('SIGKILL');
  const result = takeover === undefined ? { fence: clockFence } : { fence: clockFence, takeover };
  for (const outcome of await Promise.all(runs)) {
    expect(outcome).toMatchObject({ role: 'executor', result });
  }
  return Math.max(
    ...[...started.values()].map((at) => at - killedAt),
    started.size < runs.length ? Infinity : 0,
  );
}

/** An executor process holding one task per master, and this test's member shadowing them. */
async function heldOnEveryMaster(name: string) {
  const prefix = uniquePrefix(name);
  const ids = await idsOnEveryMaster(prefix);
  const child = await holder(prefix, ids);
  return { prefix, ids, child, shadows: shadow(prefix, ids) };
}

describe('liveness on a Redis Cluster lock store', () => {
  it('takes over from a SIGKILLed executor on every master within seconds despite a 30 s lease', {
    timeout: 60_000,
  }, async () => {
    const { child, shadows } = await heldOnEveryMaster('cl-kill');
    // While the executor lives, its runs are left to it.
    await sleep(1_000);
    expect(shadows.started.size).toBe(0);
    // Before sessions and liveness worked on a Cluster, only the 30 s lease revealed the
    // death ('expired', ~30 s). Generous: the grace is 100 ms here.
    expect(await killAndTakeOver(child, shadows, 'disconnected')).toBeLessThan(10_000);
  });

  it("keeps a live executor's runs through a master's failover, then takes over at its death", {
    timeout: 90_000,
  }, async () => {
    const { prefix, ids, child, shadows } = await heldOnEveryMaster('cl-failover');
    const victim = await cluster.masterOf(recordAddress(prefix, ids[0] as string).key);
    await cluster.kill(victim);
    await cluster.waitForFailover(victim);
    // The promoted replica counts the executor's channel once ioredis has moved its sharded
    // subscriber there; the epoch warm-up covers the moments before.
    await sleep(3_000);
    expect(shadows.started.size).toBe(0);
    expect(child.lines.filter((line) => line.event === 'aborted')).toEqual([]);
    expect(await killAndTakeOver(child, shadows)).toBeLessThan(15_000);
  });
});

describe('a resharding on a Redis Cluster lock store', () => {
  it("keeps a live executor's run when its record's slot moves to another master, then takes over at its death", {
    timeout: 120_000,
  }, async () => {
    const prefix = uniquePrefix('cl-reshard');
    const [id] = await idsOnEveryMaster(prefix);
    if (id === undefined) throw new Error('no task id');
    const leaseMs = 12_000;
    const child = await holder(prefix, [id], leaseMs);
    const shadows = shadow(prefix, [id], leaseMs);
    const key = recordAddress(prefix, id).key;
    const from = await cluster.masterOf(key);
    const to = (await cluster.masters()).find((m) => m !== from);
    if (to === undefined) throw new Error('no other master');
    await cluster.moveSlotOf(key, to);
    expect(await cluster.masterOf(key)).toBe(to);
    // The record is now on a master where the executor's session key and channel are not:
    // the twin gives it one lease from when it first sees that. Before the executor re-stamped
    // the record with its keys on the new master, that lease ran out and the twin took the
    // live run over ('expired', fence 2, ~12 s after the move).
    await sleep(leaseMs + 6_000);
    expect(shadows.started.size).toBe(0);
    expect(child.lines.filter((line) => line.event === 'aborted')).toEqual([]);
    // Judged on the new master by the executor's channel there, not by a lease.
    expect(await killAndTakeOver(child, shadows, 'disconnected')).toBeLessThan(leaseMs / 2);
  });
});

describe('ACL on a Redis Cluster lock store', () => {
  /** A Cluster client as a user with `rules`, set on every node (ACLs are per node; a node an
   * earlier test killed is left out). */
  async function userCluster(rules: string[]): Promise<Cluster> {
    const username = uniquePrefix('user');
    await Promise.all(
      cluster.running().map(async (server) => {
        const admin = server.connect();
        await admin.call('ACL', 'SETUSER', username, 'reset', 'on', '>pw', ...rules);
        await admin.quit();
      }),
    );
    // Seeded from the running nodes only: a client dialling a node an earlier test killed
    // keeps reconnect timers going (a test leaked one Timeout in CI, once).
    const seeds = cluster.running().map((server) => ({ host: server.host, port: server.port }));
    const client = new Cluster(seeds, {
      redisOptions: { username, password: 'pw' },
      clusterRetryStrategy: () => 100,
    });
    client.on('error', () => {});
    clients.push(client);
    return client;
  }

  it('pairs runs as a user granted exactly ACL_COMMANDS, and names +ssubscribe when it is missing', {
    timeout: 60_000,
  }, async () => {
    const prefix = uniquePrefix('cl-acl');
    const rules = (without: string[] = []) => [
      `~${prefix}:*`,
      'resetchannels',
      `&${prefix}:*`,
      ...ACL_COMMANDS.filter((c) => !without.includes(c)).map((c) => `+${c}`),
    ];
    const lockAs = async (member: string, client: Promise<Cluster>) => {
      const lock = new PairedLock(await client, { member, prefix });
      const errors: Error[] = [];
      lock.on('error', (err) => errors.push(err));
      locks.push(lock);
      return { lock, errors };
    };
    const eu = await lockAs('eu', userCluster(rules()));
    const us = await lockAs('us', userCluster(rules()));
    await Promise.all([eu.lock.waitUntilReady(), us.lock.waitUntilReady()]);
    const ids = await idsOnEveryMaster(prefix);
    let release = (): void => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const firsts = ids.map((id) => eu.lock.run(id, () => gate.then(() => `by eu ${id}`)));
    await sleep(300);
    // us shadows on every master: the owners script, SHARDNUMSUB, the session keys.
    const seconds = ids.map((id) => us.lock.run(id, () => 'by us'));
    await sleep(500);
    release();
    for (const [i, id] of ids.entries()) {
      expect(await firsts[i]).toMatchObject({ role: 'executor', result: `by eu ${id}` });
      expect(await seconds[i]).toMatchObject({ role: 'shadow', result: `by eu ${id}` });
    }
    expect([...eu.errors, ...us.errors]).toEqual([]);

    const without = await lockAs('ap', userCluster(rules(['ssubscribe'])));
    const refused = await without.lock.waitUntilReady().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(LockStoreMisconfiguredError);
    expect((refused as Error).message).toContain('+ssubscribe');
  });
});

describe('a sharded subscriber that comes back', () => {
  it('makes its process check its runs: one taken over meanwhile aborts (superseded)', {
    timeout: 60_000,
  }, async () => {
    const prefix = uniquePrefix('cl-resub');
    const [id] = await idsOnEveryMaster(prefix);
    if (id === undefined) throw new Error('no task id');
    const client = cluster.connect();
    clients.push(client);
    const lock = new PairedLock(client, { member: 'eu', prefix });
    lock.on('error', () => {});
    locks.push(lock);
    let aborted: unknown;
    const started = deferred();
    const run = lock.run(id, ({ signal }) => {
      started.resolve();
      return new Promise((resolve) => {
        signal.addEventListener('abort', () => {
          aborted = signal.reason;
          resolve('aborted');
        });
      });
    });
    await started.promise;
    // A twin took the record over while this process's channel on its master was empty (as
    // it would during the blip below), written here directly: fence 2, another owner.
    const key = recordAddress(prefix, id).key;
    const record = JSON.parse((await client.get(key)) ?? '{}') as Record<string, unknown>;
    await client.set(
      key,
      JSON.stringify({ ...record, owner: 'us', token: 'us-token', fence: 2 }),
      'PX',
      600_000,
    );
    // The blip: Redis drops the pub/sub connections on that master; ioredis makes them anew.
    const master = await cluster.masterOf(key);
    const admin = master.connect();
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await admin.quit();
    // Under a session the record is otherwise refreshed only every retention / 3 (hours):
    // before, the run went on as if nothing happened.
    await vi.waitFor(() => expect(aborted).toBeInstanceOf(LeaseLostError), {
      timeout: 15_000,
      interval: 100,
    });
    expect(aborted).toMatchObject({ reason: 'superseded', currentFence: 2 });
    await run.catch(() => {});
  });
});

describe('keys a stale slot map puts on another node', () => {
  it('a heartbeat skips an epoch key on another node and still refreshes the record', {
    timeout: 30_000,
  }, async () => {
    const prefix = uniquePrefix('cl-epoch');
    const [id] = await idsOnEveryMaster(prefix);
    if (id === undefined) throw new Error('no task id');
    const address = recordAddress(prefix, id);
    const here = await cluster.masterOf(address.key);
    let far = '';
    for (let n = 0; far === ''; n++) {
      const candidate = epochKey(prefix, String(n));
      if ((await cluster.masterOf(candidate)) !== here) far = candidate;
    }
    const client = cluster.connect();
    clients.push(client);
    const now = Date.now();
    const record = { state: 'running', owner: 'eu', token: 't', fence: 1, attempts: 1 };
    await client.set(
      address.key,
      JSON.stringify({ ...record, leaseUntil: now + 1_000, grantedAt: now, createdAt: now }),
      'PX',
      60_000,
    );
    // As after a resharding moved that master's lowest slot, before the map was read again.
    // Before: the script failed on the key ("non local key") at every beat, and the run was
    // aborted once its lease ran out on the executor's clock.
    const beat = await heartbeat(client, address, { token: 't', fence: 1 }, 30_000, 60_000, {
      epochKey: far,
      sharded: true,
    });
    expect(beat).toEqual({ kind: 'ok' });
    const after = JSON.parse((await client.get(address.key)) ?? '{}') as { leaseUntil: number };
    expect(after.leaseUntil).toBeGreaterThan(now + 20_000);
  });
});

describe('a re-stamp after a resharding', () => {
  it("names the owner's keys on the new master and forgets an absence noted on the old one", {
    timeout: 30_000,
  }, async () => {
    const prefix = uniquePrefix('cl-restamp');
    const [id] = await idsOnEveryMaster(prefix);
    if (id === undefined) throw new Error('no task id');
    const address = recordAddress(prefix, id);
    const client = cluster.connect();
    clients.push(client);
    const now = Date.now();
    const old = { skey: `${prefix}:session:{old}:eu`, live: `${prefix}:live:{old}:eu` };
    await client.set(
      address.key,
      JSON.stringify({
        ...{ state: 'running', owner: 'eu', token: 't', fence: 1, attempts: 1 },
        ...{ leaseUntil: now + 30_000, grantedAt: now, createdAt: now, ...old },
        ...{ movedSince: now, goneSince: now },
      }),
      'PX',
      60_000,
    );
    const fresh = {
      sessionKey: `${prefix}:session:{new}:eu`,
      liveChannel: `${prefix}:live:{new}:eu`,
    };
    const beat = await heartbeat(client, address, { token: 't', fence: 1 }, 30_000, 60_000, {
      sharded: true,
      ...fresh,
    });
    expect(beat).toEqual({ kind: 'ok' });
    const after = JSON.parse((await client.get(address.key)) ?? '{}') as Record<string, unknown>;
    expect(after).toMatchObject({ skey: fresh.sessionKey, live: fresh.liveChannel });
    // The empty channel was the old one's: counting it against the new one would turn the
    // next look into a takeover of a live owner.
    expect(after.goneSince).toBeUndefined();
    expect(after.movedSince).toBeUndefined();
  });
});

describe('closing while this process is still making its places', () => {
  it('leaves no session key refreshed behind', { timeout: 30_000 }, async () => {
    const prefix = uniquePrefix('cl-close');
    const client = cluster.connect();
    clients.push(client);
    const lock = new PairedLock(client, { member: 'eu', prefix });
    lock.on('error', () => {});
    // The start-up (sessions and channels on every master) is still under way at the close.
    const ready = lock.waitUntilReady().catch(() => {});
    await lock.close();
    await ready;
    const sessions = async () => {
      let found = 0;
      for (const master of await cluster.masters()) {
        const admin = master.connect();
        found += (await admin.keys(`${prefix}:session:*`)).length;
        await admin.quit();
      }
      return found;
    };
    // Before: a session made after the close kept its key alive (and its timer the process).
    await vi.waitFor(async () => expect(await sessions()).toBe(0), { timeout: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await sessions()).toBe(0);
  });
});
