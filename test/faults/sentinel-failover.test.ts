/**
 * A lock store behind Redis Sentinel (primary, one replica, three sentinels) fails over while
 * jobs run: the primary is killed, or frozen (SIGSTOP) until the replica is promoted and then
 * resumed. Two job sets go through the same failover, each with two PairedLocks ('eu', 'us')
 * on Sentinel clients that both run every job: one without `durability`, one with
 * `durability: { replicas: 1 }` (test/support/failover-jobs.ts: the figures each set reports).
 */
import { describe, it } from 'vitest';
import {
  DURABLE,
  expectNothingLost,
  JOBS,
  jobSet,
  runBoth,
  until,
} from '../support/failover-jobs.js';
import { startSentinel } from '../support/sentinel.js';

describe('a lock store behind Sentinel failing over while jobs run', () => {
  it('primary killed mid-run: nothing lost, no (id, fence) runs twice', async () => {
    const sentinel = await startSentinel();
    const plain = jobSet(() => sentinel.connect(), 'kill-plain');
    const durable = jobSet(() => sentinel.connect(), 'kill-durable', DURABLE);
    try {
      const running = runBoth(plain, durable);
      await until(() => plain.ledger.length >= JOBS / 3);
      const old = await sentinel.primaryAddress();
      const oldServer = sentinel.server(old);
      await sentinel.kill(oldServer);
      await sentinel.waitForFailover(old);
      // Back empty, as a replica of the new primary: durable grants need one again.
      await oldServer.restart();
      await sentinel.rejoin(oldServer);
      await running;
      expectNothingLost('sentinel failover, primary killed', plain.figures(), durable.figures());
    } finally {
      await Promise.all([plain.close(), durable.close()]);
      await sentinel.stop();
    }
  }, 120_000);

  it('primary frozen until the replica is promoted, then resumed: no (id, fence) runs twice, with or without durability', async () => {
    const sentinel = await startSentinel();
    const plain = jobSet(() => sentinel.connect(), 'freeze-plain');
    const durable = jobSet(() => sentinel.connect(), 'freeze-durable', DURABLE);
    try {
      const running = runBoth(plain, durable);
      await until(() => plain.ledger.length >= JOBS / 3);
      const old = await sentinel.primaryAddress();
      const oldServer = sentinel.server(old);
      sentinel.freeze(oldServer);
      try {
        await sentinel.waitForFailover(old);
        // us learns of the failover at once (as with ioredis' failoverDetector) and moves to
        // the new primary; eu keeps its connection to the old one, which serves it as if it
        // were still the primary until the sentinels demote it (and disconnect its clients).
        for (const set of [plain, durable]) set.reconnect('us');
      } finally {
        sentinel.resume(oldServer);
      }
      await running;
      expectNothingLost(
        'sentinel failover, primary frozen, then resumed',
        plain.figures(),
        durable.figures(),
      );
    } finally {
      await Promise.all([plain.close(), durable.close()]);
      await sentinel.stop();
    }
  }, 120_000);
});
