/**
 * The `durability` option against a real primary and replica: a grant counts only once the
 * replica holds it (else it is given back and the run rejects with NotReplicatedError), and a
 * settle is retried until the replica holds it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import {
  type DurableSetup,
  expectGrantGivenBack,
  expectSettleRetried,
} from '../support/durability-cases.js';
import { type BinaryRedis, startRedis, type TestRedis, uniquePrefix } from '../support/redis.js';

let primary: TestRedis;
let replica: BinaryRedis;

beforeAll(async () => {
  primary = await startRedis({ killable: true, args: ['--repl-diskless-sync-delay', '0'] });
  replica = (await startRedis({
    killable: true,
    args: ['--replicaof', primary.host, String(primary.port)],
  })) as BinaryRedis;
  const client = primary.connect();
  const deadline = Date.now() + 10_000;
  while ((await client.wait(1, 100)) < 1) {
    if (Date.now() > deadline) throw new Error('the replica did not sync');
  }
  await primary.closeClients();
});

afterEach(async () => {
  await primary.closeClients();
});

afterAll(async () => {
  await replica?.stop();
  await primary?.stop();
});

function durableLock(member: string, prefix: string): PairedLock {
  return new PairedLock(primary.connect(), {
    member,
    prefix,
    // Generous: a loaded 2-core machine can take a while to schedule the replica.
    durability: { replicas: 1, timeoutMs: 1_000 },
  });
}

describe('durability: { replicas: 1 }', () => {
  /** A durable lock; the one replica is frozen for any id. */
  function setUp(): DurableSetup & { close(): Promise<void> } {
    const lock = durableLock('eu', uniquePrefix('durable'));
    lock.on('error', () => {});
    return {
      lock,
      async freezeReplicaOf() {
        replica.signal('SIGSTOP');
        return async () => replica.signal('SIGCONT');
      },
      async close() {
        replica.signal('SIGCONT');
        await lock.close();
      },
    };
  }

  it('runs when the replica acknowledges; gives the grant back when it does not', async () => {
    const setup = setUp();
    try {
      await expectGrantGivenBack(setup);
    } finally {
      await setup.close();
    }
  });

  it('retries a settle until the replica holds it', async () => {
    const setup = setUp();
    try {
      await expectSettleRetried(setup);
    } finally {
      await setup.close();
    }
  });

  it('is refused at construction when malformed', () => {
    const client = primary.connect({ lazyConnect: true });
    const make = (durability: unknown) => () =>
      new PairedLock(client, { member: 'eu', durability } as never);
    expect(make({ replicas: 0, timeoutMs: 100 })).toThrow(
      /option "durability.replicas" must be an integer between 1 and 100, received 0/,
    );
    expect(make({ replicas: 1 })).toThrow(/"durability.timeoutMs" must be an integer/);
    expect(make({ replicas: 1, timeoutMs: 20_000 })).toThrow(
      /"durability.timeoutMs" must be below heartbeatMs \(10000\)/,
    );
    expect(make({ replicas: 1, timeoutMs: 100, wait: true })).toThrow(
      /unknown option "durability.wait"/,
    );
    expect(make(1)).toThrow(/option "durability" must be an object/);
    expect(new PairedLock(client, { member: 'eu' }).options.durability).toBeUndefined();
  });
});
