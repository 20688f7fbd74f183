/**
 * The `durability` option against a real primary and replica: a grant counts only once the
 * replica holds it (else it is given back and the run rejects with NotReplicatedError), and a
 * settle is retried until the replica holds it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NotReplicatedError, PairedLock } from '../../src/index.js';
import { deferred } from '../support/deferred.js';
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
  it('runs when the replica acknowledges; gives the grant back when it does not', async () => {
    const prefix = uniquePrefix('durable');
    const eu = durableLock('eu', prefix);
    try {
      expect(await eu.run('a', ({ fence }) => fence)).toMatchObject({ role: 'executor', fence: 1 });
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
      // Given back: the next grant takes it over at once, with a higher fence.
      expect(await eu.inspect('b')).toMatchObject({ state: 'released', fence: 1 });
      const outcome = await eu.run('b', ({ fence, takeover }) => ({ fence, takeover }));
      expect(outcome.result).toEqual({ fence: 2, takeover: 'released' });
    } finally {
      replica.signal('SIGCONT');
      await eu.close();
    }
  });

  it('retries a settle until the replica holds it', async () => {
    const prefix = uniquePrefix('durable');
    const eu = durableLock('eu', prefix);
    const errors: Error[] = [];
    eu.on('error', (err) => errors.push(err));
    const started = deferred();
    const finish = deferred();
    try {
      const run = eu.run('c', async () => {
        started.resolve();
        await finish.promise;
        return 'sent';
      });
      await started.promise;
      replica.signal('SIGSTOP');
      finish.resolve();
      await sleep(2_500); // two WAITs time out meanwhile
      let settled = false;
      void run.then(() => {
        settled = true;
      });
      expect(settled).toBe(false);
      replica.signal('SIGCONT');
      expect(await run).toMatchObject({ role: 'executor', result: 'sent', fence: 1 });
      expect(errors.length).toBeGreaterThan(0);
      expect(String(errors[0]?.message)).toMatch(/reached 0 of 1 replica/);
      expect(await eu.inspect('c')).toMatchObject({ state: 'done', fence: 1 });
    } finally {
      replica.signal('SIGCONT');
      await eu.close();
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
