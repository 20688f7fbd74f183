/**
 * The two cases of the `durability` option, shared by one Redis with a replica
 * (test/lock/durability.test.ts) and a Cluster (test/lock/cluster-durability.test.ts): a grant
 * the replica does not acknowledge is given back (the run rejects with NotReplicatedError and
 * the next grant takes it over), and a settle is retried until the replica holds it.
 */
import { expect } from 'vitest';
import { NotReplicatedError, type PairedLock } from '../../src/index.js';
import { deferred, nextEvent } from './deferred.js';
import { clockFence } from './fences.js';

export interface DurableSetup {
  /** A lock with `durability: { replicas: 1 }`, its errors reported on 'error'. */
  lock: PairedLock;
  /** Freezes (SIGSTOP) the replica that must acknowledge `id`'s record; resolves a resume. */
  freezeReplicaOf(id: string): Promise<() => Promise<void>>;
}

export async function expectGrantGivenBack({ lock, freezeReplicaOf }: DurableSetup): Promise<void> {
  expect(await lock.run('a', ({ fence }) => fence)).toMatchObject({
    role: 'executor',
    fence: clockFence,
  });
  const resume = await freezeReplicaOf('b');
  let ran = false;
  const error = await lock
    .run('b', () => {
      ran = true;
    })
    .catch((err: unknown) => err);
  await resume();
  expect(error).toBeInstanceOf(NotReplicatedError);
  expect(error).toMatchObject({ code: 'ERR_PAIRED_NOT_REPLICATED', acked: 0, replicas: 1 });
  expect(ran).toBe(false);
  // Given back: the next grant takes it over, with a higher fence.
  expect(await lock.inspect('b')).toMatchObject({ state: 'released', fence: clockFence });
  const outcome = await lock.run('b', ({ fence, takeover }) => ({ fence, takeover }));
  expect(outcome.result).toEqual({ fence: clockFence, takeover: 'released' });
}

export async function expectSettleRetried({ lock, freezeReplicaOf }: DurableSetup): Promise<void> {
  const errors: Error[] = [];
  lock.on('error', (err) => errors.push(err));
  const started = deferred();
  const finish = deferred();
  const run = lock.run('c', async () => {
    started.resolve();
    await finish.promise;
    return 'sent';
  });
  await started.promise;
  const resume = await freezeReplicaOf('c');
  finish.resolve();
  let settled = false;
  void run.then(() => {
    settled = true;
  });
  // Two WAITs time out meanwhile: each is reported, and the run is not settled.
  await nextEvent(lock, 'error');
  await nextEvent(lock, 'error');
  expect(settled).toBe(false);
  await resume();
  expect(await run).toMatchObject({ role: 'executor', result: 'sent', fence: clockFence });
  expect(String(errors[0]?.message)).toMatch(/reached 0 of 1 replica/);
  expect(await lock.inspect('c')).toMatchObject({ state: 'done', fence: clockFence });
}
