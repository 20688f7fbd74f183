/**
 * The lock store on a real Redis Cluster (three masters, three replicas: test/support/cluster.ts)
 * and a master SIGKILLed mid-run: its replica is promoted after cluster-node-timeout (1 s),
 * the slots it served answer CLUSTERDOWN or drop their connections meanwhile (transient to
 * bullmq-paired: copies park and retry, settles retry), and nothing is lost. On a Cluster the
 * records keep leases of their own (no sessions, no liveness), so a short lease here.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PairedQueue } from '../../src/index.js';
import { recordAddress } from '../../src/lock/keys.js';
import { FixtureProcess } from '../support/child.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { startRedis, type TestRedis, uniquePrefix } from '../support/redis.js';

interface Entry {
  id: string;
  twin: string;
  fence: number;
  phase: 'start' | 'end';
  start: number;
}

let cluster: TestCluster;
let queueRedis: TestRedis;
beforeAll(async () => {
  [cluster, queueRedis] = await Promise.all([
    startCluster(),
    startRedis({ killable: true, purpose: 'the Cluster failover test' }),
  ]);
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
  await queueRedis?.stop();
});

/** A twin's worker process: its queue on `queueRedis`, its pair records on the Cluster. */
function twinWorker(base: string, twin: string, extra: Record<string, string>): FixtureProcess {
  return new FixtureProcess('twin-worker.ts', {
    TWIN: twin,
    QUEUE: `${base}-${twin}`,
    GROUP: base,
    QUEUE_URL: queueRedis.url,
    LOCK_URL: queueRedis.url,
    LOCK_CLUSTER: cluster.nodes.map((n) => `${n.host}:${n.port}`).join(','),
    LEDGER_URL: queueRedis.url,
    LEDGER: `${base}:ledger`,
    LOCK_PREFIX: `${base}-lock`,
    ...extra,
  });
}

describe('lock store on a Redis Cluster', () => {
  it('loses nothing when a master is SIGKILLed mid-run and its replica takes over', {
    timeout: 180_000,
  }, async () => {
    const base = uniquePrefix('cluster');
    const lockPrefix = `${base}-lock`;
    const children: FixtureProcess[] = [];
    const connection = { host: queueRedis.host, port: queueRedis.port };
    const queue = new PairedQueue(base, {
      twins: {
        eu: { connection, queue: `${base}-eu` },
        us: { connection, queue: `${base}-us` },
      },
    });
    const client = new Redis(queueRedis.url);
    try {
      for (const twin of ['eu', 'us']) {
        const child = twinWorker(base, twin, {
          LEASE_MS: '3000',
          CONCURRENCY: '10',
          // BullMQ's own stall recovery, shortened, for a copy whose completion was lost.
          LOCK_DURATION: '3000',
          STALLED_INTERVAL: '1000',
        });
        children.push(child);
        await child.next('ready');
      }
      const jobs = 200;
      const added = await queue.addBulk(
        Array.from({ length: jobs }, (_, i) => ({
          name: 'n',
          data: { ms: 100 + (i % 5) * 50 },
          opts: { jobId: `c${i}` },
        })),
      );
      // Mid-run: the master serving the first job's record.
      const ledgerLength = async () => client.llen(`${base}:ledger`);
      while ((await ledgerLength()) < 60) await new Promise((r) => setTimeout(r, 50));
      const victim = await cluster.masterOf(recordAddress(lockPrefix, `${base}:c0`).key);
      await cluster.kill(victim);
      await cluster.waitForFailover(victim);
      const deadline = Date.now() + 120_000;
      for (;;) {
        const [eu, us] = await Promise.all([
          queue.queue('eu').getCompletedCount(),
          queue.queue('us').getCompletedCount(),
        ]);
        if (eu >= jobs && us >= jobs) break;
        if (Date.now() > deadline) throw new Error(`only ${eu}/${us} of ${jobs} copies completed`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const entries = (await client.lrange(`${base}:ledger`, 0, -1)).map(
        (raw) => JSON.parse(raw) as Entry,
      );
      const starts = entries.filter((e) => e.phase === 'start');
      const byJob = new Map<string, Entry[]>();
      for (const e of starts) byJob.set(e.id, [...(byJob.get(e.id) ?? []), e]);
      const repeats = [...byJob.values()].filter((runs) => runs.length > 1);
      const sameFence = repeats.filter(
        (runs) => new Set(runs.map((r) => r.fence)).size < runs.length,
      ).length;
      console.info(
        `cluster failover: ${jobs} jobs, ${starts.length} executions, ${repeats.length} run again (${sameFence} with a fence already used)`,
      );
      expect(added).toHaveLength(jobs);
      // Nothing lost: every job ran and both twins completed every copy.
      expect(byJob.size).toBe(jobs);
    } finally {
      await Promise.all(children.map((child) => child.kill()));
      await queue.close();
      await client.quit();
    }
  });

  it("runs twin queues on a Cluster (BullMQ's {hash tag} prefix), each job once, both copies completing", {
    timeout: 60_000,
  }, async () => {
    const base = uniquePrefix('cq');
    // BullMQ on a Cluster: a prefix with a hash tag keeps each queue's keys in one slot; one
    // prefix for both twins keeps both queues in that slot, so PairedQueue adds both copies in
    // one MULTI.
    const prefix = `{${base}}`;
    const seeds = cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',');
    const children: FixtureProcess[] = [];
    const producer = cluster.connect();
    const queue = new PairedQueue(base, {
      twins: {
        eu: { connection: producer, queue: `${base}-eu`, prefix },
        us: { connection: producer, queue: `${base}-us`, prefix },
      },
    });
    const client = new Redis(queueRedis.url);
    try {
      for (const twin of ['eu', 'us']) {
        const child = twinWorker(base, twin, { QUEUE_PREFIX: prefix, QUEUE_CLUSTER: seeds });
        children.push(child);
        await child.next('ready');
      }
      const jobs = 30;
      await queue.addBulk(
        Array.from({ length: jobs }, (_, i) => ({
          name: 'n',
          data: { ms: 20 },
          opts: { jobId: `q${i}` },
        })),
      );
      const deadline = Date.now() + 45_000;
      for (;;) {
        const counts = await Promise.all(
          (['eu', 'us'] as const).map((t) => queue.queue(t).getCompletedCount()),
        );
        if (counts.every((c) => c >= jobs)) break;
        if (Date.now() > deadline) throw new Error(`only ${counts.join('/')} of ${jobs} completed`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const starts = (await client.lrange(`${base}:ledger`, 0, -1))
        .map((raw) => JSON.parse(raw) as Entry)
        .filter((e) => e.phase === 'start');
      expect(starts).toHaveLength(jobs);
      expect(new Set(starts.map((e) => e.id)).size).toBe(jobs);
    } finally {
      await Promise.all(children.map((child) => child.kill()));
      await queue.close();
      await client.quit();
      await producer.quit();
    }
  });
});
