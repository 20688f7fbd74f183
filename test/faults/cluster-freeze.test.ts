/**
 * The lock store on a real Redis Cluster (three masters, three replicas), one master frozen
 * (SIGSTOP) while jobs run until its replica is promoted, then resumed: it comes back as a
 * replica of the new master and drops what it took that its replica never got. Two job sets
 * go through the same failover (test/support/failover-jobs.ts): without `durability`, and
 * with `durability: { replicas: 1 }`, which a Cluster used to refuse. With it, no (id, fence)
 * runs twice and nothing is lost or left unfinished.
 */
import { describe, expect, it } from 'vitest';
import { recordAddress } from '../../src/lock/keys.js';
import { startCluster } from '../support/cluster.js';
import {
  DURABLE,
  expectNothingLost,
  JOBS,
  jobSet,
  runBoth,
  until,
} from '../support/failover-jobs.js';

describe('a lock store on a Redis Cluster failing over while jobs run', () => {
  it('master frozen until its replica is promoted, then resumed: no (id, fence) runs twice, with or without durability', {
    timeout: 120_000,
  }, async () => {
    const cluster = await startCluster();
    const plain = jobSet(() => cluster.connect(), 'cfreeze-plain');
    const durable = jobSet(() => cluster.connect(), 'cfreeze-durable', DURABLE);
    try {
      const running = runBoth(plain, durable);
      await until(() => plain.ledger.length >= JOBS / 3);
      // The master of the first job's record: about a third of each set's records are on it.
      const old = await cluster.masterOf(recordAddress(plain.prefix, 'job-0').key);
      cluster.freeze(old);
      try {
        await cluster.waitForFailover(old);
      } finally {
        cluster.resume(old);
      }
      await running;
      const figures = durable.figures();
      expectNothingLost('cluster failover, master frozen, then resumed', plain.figures(), figures);
      // A failover is no misconfiguration (a WAIT cut short by the demotion, UNBLOCKED, was
      // taken for one).
      expect(figures.errors.LockStoreMisconfiguredError ?? 0).toBe(0);
    } finally {
      await Promise.all([plain.close(), durable.close()]);
      await cluster.stop();
    }
  });
});
