/**
 * The `durability` option on a real Redis Cluster (three masters, three replicas). A keyless
 * WAIT sent alone would go to any node, so each grant and settle travels with its own WAIT in
 * one pipeline to the record's master (before: the option was refused on a Cluster). A grant
 * the master's replica does not acknowledge is given back and the run rejects with
 * NotReplicatedError; a settle is retried until the replica holds it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NotReplicatedError, PairedLock } from '../../src/index.js';
import { recordAddress } from '../../src/lock/keys.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { deferred } from '../support/deferred.js';
import type { BinaryRedis } from '../support/redis.js';
import { uniquePrefix } from '../support/redis.js';

let cluster: TestCluster;
const locks: PairedLock[] = [];
const clients: Cluster[] = [];

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterEach(async () => {
  for (const server of cluster.running()) server.signal('SIGCONT');
  await Promise.all(locks.splice(0).map((lock) => lock.close()));
  await Promise.all(clients.splice(0).map((client) => client.quit()));
});
afterAll(async () => {
  await cluster?.stop();
});

function durableLock(prefix: string): PairedLock {
  const client = cluster.connect();
  clients.push(client);
  // Generous: a loaded 2-core machine can take a while to schedule the replica.
  const lock = new PairedLock(client, {
    member: 'eu',
    prefix,
    durability: { replicas: 1, timeoutMs: 1_000 },
  });
  locks.push(lock);
  return lock;
}

/** The replica of the master that holds `id`'s record, once it has caught up. */
async function replicaOf(prefix: string, id: string): Promise<BinaryRedis> {
  const master = await cluster.masterOf(recordAddress(prefix, id).key);
  const admin = master.connect();
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const info = await admin.info('replication');
      const port = Number(/^slave0:.*?port=(\d+)/m.exec(info)?.[1]);
      const replica = cluster.running().find((server) => server.port === port);
      if (replica !== undefined && (await admin.wait(1, 200)) >= 1) return replica;
      if (Date.now() > deadline) throw new Error(`no replica of ${master.port} caught up`);
      await sleep(100);
    }
  } finally {
    admin.disconnect();
  }
}

describe('durability: { replicas: 1 } on a Cluster', () => {
  it('runs when the record master’s replica acknowledges; gives the grant back when it does not', {
    timeout: 30_000,
  }, async () => {
    const prefix = uniquePrefix('cdur');
    const eu = durableLock(prefix);
    await replicaOf(prefix, 'a');
    expect(await eu.run('a', ({ fence }) => fence)).toMatchObject({ role: 'executor', fence: 1 });
    const replica = await replicaOf(prefix, 'b');
    replica.signal('SIGSTOP');
    let ran = false;
    const error = await eu
      .run('b', () => {
        ran = true;
      })
      .catch((err: unknown) => err);
    replica.signal('SIGCONT');
    expect(error).toBeInstanceOf(NotReplicatedError);
    expect(error).toMatchObject({ code: 'ERR_PAIRED_NOT_REPLICATED', acked: 0, replicas: 1 });
    expect(ran).toBe(false);
    // Given back: the next grant takes it over, with a higher fence.
    expect(await eu.inspect('b')).toMatchObject({ state: 'released', fence: 1 });
    await replicaOf(prefix, 'b');
    const outcome = await eu.run('b', ({ fence, takeover }) => ({ fence, takeover }));
    expect(outcome.result).toEqual({ fence: 2, takeover: 'released' });
  });

  it('retries a settle until the replica holds it', { timeout: 30_000 }, async () => {
    const prefix = uniquePrefix('cdur');
    const eu = durableLock(prefix);
    const errors: Error[] = [];
    eu.on('error', (err) => errors.push(err));
    const replica = await replicaOf(prefix, 'c');
    const started = deferred();
    const finish = deferred();
    const run = eu.run('c', async () => {
      started.resolve();
      await finish.promise;
      return 'sent';
    });
    await started.promise;
    replica.signal('SIGSTOP');
    finish.resolve();
    let settled = false;
    void run.then(() => {
      settled = true;
    });
    // Two WAITs time out meanwhile: each is reported, and the run is not settled.
    const deadline = Date.now() + 10_000;
    while (errors.length < 2 && Date.now() < deadline) await sleep(100);
    expect(settled).toBe(false);
    replica.signal('SIGCONT');
    expect(await run).toMatchObject({ role: 'executor', result: 'sent', fence: 1 });
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(String(errors[0]?.message)).toMatch(/reached 0 of 1 replica/);
    expect(await eu.inspect('c')).toMatchObject({ state: 'done', fence: 1 });
  });
});
