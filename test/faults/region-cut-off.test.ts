/**
 * At default options (lease 30 s, the session kept by a thread with a 3 s key): a process
 * cut off from the lock store is taken over within seconds, a process whose main thread is
 * busy for longer than the key lives is not, and one stuck for longer than the lease is.
 * The executor is a PairedLock in a child process (test/fixtures/lock-executor.ts) whose
 * lock connection runs through a fault proxy; the twin runs here, next to the store.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { FixtureProcess } from '../support/child.js';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const lockRedis = useRedis();
const closers: (() => Promise<unknown>)[] = [];
let proxy: FaultProxy;

beforeEach(async () => {
  proxy = await startFaultProxy(lockRedis());
});
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
  await proxy.close();
});

const IDS = ['task-a', 'task-b'];

/** eu executes IDS (held until aborted) through the proxy; us waits on each, next to the store. */
async function executorAndTwin(env: Record<string, string> = {}, leaseMs?: number) {
  const prefix = uniquePrefix('cutoff');
  const eu = new FixtureProcess('lock-executor.ts', {
    REDIS_URL: proxy.url,
    PREFIX: prefix,
    MEMBER: 'eu',
    TASK_IDS: IDS.join(','),
    ...(leaseMs === undefined ? {} : { LEASE_MS: String(leaseMs) }),
    ...env,
  });
  closers.push(() => eu.kill());
  await Promise.all(IDS.map((id) => eu.next('executing', (l) => l.id === id)));
  const us = new PairedLock(lockRedis().connect(), {
    member: 'us',
    prefix,
    ...(leaseMs === undefined ? {} : { leaseMs }),
  });
  closers.push(() => us.close());
  const starts = new Map<string, number>();
  let settled = 0;
  const runs = IDS.map((id) =>
    us
      .run(id, ({ fence, takeover }) => {
        starts.set(id, Date.now());
        return { fence, takeover };
      })
      .finally(() => settled++),
  );
  // us waits as a shadow: the record is eu's.
  for (const id of IDS) expect(await us.inspect(id)).toMatchObject({ owner: 'eu' });
  return { eu, us, runs, starts, settledCount: () => settled };
}

describe('a region cut off, a region busy (default options)', () => {
  it('partitioned from the lock store (connections open, packets lost): taken over within seconds, each run aborted before its twin starts', async () => {
    const { eu, runs, starts } = await executorAndTwin();
    const partitionedAt = Date.now();
    proxy.partition();
    const outcomes = await Promise.all(runs);
    const aborted = await Promise.all(IDS.map((id) => eu.next('aborted', (l) => l.id === id)));
    proxy.heal();
    const rel = (t: unknown) => (t as number) - partitionedAt;
    console.info(
      `partition at default options: ${IDS.map((id, i) => `${id} abort +${rel(aborted[i]?.at)} ms, twin start +${rel(starts.get(id))} ms`).join('; ')}`,
    );
    for (const [i, id] of IDS.entries()) {
      expect(outcomes[i]).toMatchObject({
        role: 'executor',
        result: { fence: clockFence, takeover: 'expired' },
      });
      expect(aborted[i]).toMatchObject({ reason: 'expired' });
      expect(aborted[i]?.at as number).toBeLessThanOrEqual(starts.get(id) ?? 0);
      // The 30 s lease is not waited out: the session key lives 3 s past its last refresh.
      expect(rel(starts.get(id))).toBeLessThan(10_000);
    }
  });

  it('a main thread busy for 5 s (longer than the 3 s key): not taken over, since the thread keeps the key', async () => {
    const { eu, runs, settledCount } = await executorAndTwin({ STALL_MS: '5000' });
    eu.child.kill('SIGUSR2');
    const stalled = await eu.next('stalled');
    expect((stalled.to as number) - (stalled.from as number)).toBeGreaterThanOrEqual(5_000);
    // The key would have run out 3 s into the stall, and us looks every 50 ms.
    expect(settledCount()).toBe(0);
    expect(eu.lines.filter((l) => l.event === 'aborted')).toEqual([]);
    // Now eu dies for real: us takes over from its closed connections.
    eu.child.kill('SIGKILL');
    const outcomes = await Promise.all(runs);
    for (const outcome of outcomes) {
      expect(outcome).toMatchObject({ role: 'executor', result: { takeover: 'disconnected' } });
    }
  });

  it('a main thread stuck for longer than the lease: taken over during the stall, and the run aborts when the loop comes back', async () => {
    const { eu, runs, starts } = await executorAndTwin({ STALL_MS: '9000' }, 6_000);
    const stallAt = Date.now();
    eu.child.kill('SIGUSR2');
    const outcomes = await Promise.all(runs);
    const stalled = await eu.next('stalled');
    const aborted = await Promise.all(IDS.map((id) => eu.next('aborted', (l) => l.id === id)));
    for (const [i, id] of IDS.entries()) {
      expect(outcomes[i]).toMatchObject({ role: 'executor', result: { takeover: 'expired' } });
      const start = starts.get(id) ?? 0;
      // After the main thread was silent for leaseMs − ttl (3 s) and the key ran out (3 s more,
      // less up to a refresh interval), before the stall ended.
      expect(start - stallAt).toBeGreaterThanOrEqual(4_000);
      expect(start).toBeLessThan(stalled.to as number);
      expect(aborted[i]).toMatchObject({ reason: 'expired' });
    }
  });
});
