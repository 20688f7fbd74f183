/**
 * The `durability` option on a real Redis Cluster (three masters, three replicas). A keyless
 * WAIT sent alone would go to any node, so each grant and settle travels with its own WAIT in
 * one pipeline to the record's master (before: the option was refused on a Cluster). A grant
 * the master's replica does not acknowledge is given back and the run rejects with
 * NotReplicatedError; a settle is retried until the replica holds it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { recordAddress } from '../../src/lock/keys.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import {
  type DurableSetup,
  expectGrantGivenBack,
  expectSettleRetried,
} from '../support/durability-cases.js';
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
  /** A durable lock; the replica of each record's master is frozen on demand. */
  async function setUp(): Promise<DurableSetup> {
    const prefix = uniquePrefix('cdur');
    const lock = durableLock(prefix);
    lock.on('error', () => {});
    await replicaOf(prefix, 'a');
    return {
      lock,
      async freezeReplicaOf(id) {
        const replica = await replicaOf(prefix, id);
        replica.signal('SIGSTOP');
        return async () => {
          replica.signal('SIGCONT');
          await replicaOf(prefix, id); // caught up again
        };
      },
    };
  }

  it("runs when the record master's replica acknowledges; gives the grant back when it does not", {
    timeout: 30_000,
  }, async () => {
    await expectGrantGivenBack(await setUp());
  });

  it('retries a settle until the replica holds it', { timeout: 30_000 }, async () => {
    await expectSettleRetried(await setUp());
  });
});
