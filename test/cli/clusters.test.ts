/**
 * The CLI on Redis Clusters and with three twins: twin queues on two Clusters and one Redis,
 * the pair records on a Cluster (spread over its three masters), all read by one `inspect`
 * and one `stats`.
 */
import { Worker } from 'bullmq';
import { Cluster, type Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectReport } from '../../src/cli/inspect.js';
import type { StatsReport } from '../../src/cli/stats.js';
import { PairedProcessor, PairedQueue } from '../../src/index.js';
import { useClosers } from '../support/closers.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { firstRunFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { parseJson, runCli } from './run-cli.js';

const ap = useRedis();
const closers = useClosers();
let eu: TestCluster;
let us: TestCluster;

beforeAll(async () => {
  [eu, us] = await Promise.all([startCluster(), startCluster()]);
}, 90_000);
afterAll(async () => {
  await Promise.all([eu?.stop(), us?.stop()]);
});

/** A client of `cluster` for BullMQ (which needs maxRetriesPerRequest: null). */
function clientOf(cluster: TestCluster): Cluster {
  const client = new Cluster([...cluster.nodes], {
    redisOptions: { maxRetriesPerRequest: null },
    clusterRetryStrategy: () => 100,
  });
  client.on('error', () => {});
  closers.push(async () => {
    await client.quit();
  });
  return client;
}

const clusterUrl = (cluster: TestCluster) =>
  `redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;

/** The three twins' servers as the CLI takes them: eu's Cluster, then us's, then ap's Redis. */
const servers = (): string[] => [
  '--redis',
  clusterUrl(eu),
  '--twin-redis',
  clusterUrl(us),
  '--twin-redis',
  ap().url,
];

describe('bullmq-paired on Redis Clusters, three twins', () => {
  it('reads twin queues on two Clusters and a Redis, and records spread over a Cluster', {
    timeout: 90_000,
  }, async () => {
    const name = uniquePrefix('push');
    // BullMQ on a Cluster: a prefix with a hash tag keeps each queue's keys in one slot.
    const prefix = `{${name}}`;
    const lockPrefix = `${name}-lock`;
    const connections: Record<'eu' | 'us' | 'ap', Cluster | Redis> = {
      eu: clientOf(eu),
      us: clientOf(us),
      ap: ap().connect(),
    };
    const queue = new PairedQueue(name, {
      twins: {
        eu: { connection: connections.eu, prefix },
        us: { connection: connections.us, prefix },
        ap: { connection: connections.ap, prefix },
      },
    });
    closers.push(() => queue.close());
    for (const twin of ['eu', 'us', 'ap'] as const) {
      const paired = new PairedProcessor(async () => ({ sent: twin }), {
        twin,
        lockConnection: clientOf(eu),
        prefix: lockPrefix,
      });
      const worker = new Worker(name, paired.processor, { connection: connections[twin], prefix });
      worker.on('error', () => {});
      paired.attach(worker);
      closers.push(async () => {
        await worker.close();
        await paired.close();
      });
    }
    const jobs = await queue.addBulk(
      Array.from({ length: 12 }, (_, i) => ({
        name: 'notify',
        data: {},
        opts: { jobId: `n${i}` },
      })),
    );
    for (const twin of ['eu', 'us', 'ap'] as const) {
      await expect
        .poll(() => queue.queue(twin).getCompletedCount(), { timeout: 30_000, interval: 100 })
        .toBe(jobs.length);
    }

    const target = [
      ...servers(),
      '--queue',
      name,
      '--prefix',
      prefix,
      '--lock-prefix',
      lockPrefix,
      '--json',
    ];
    const [inspected, stats] = await Promise.all([
      runCli(['inspect', ...target, 'n0']),
      runCli(['stats', ...target]),
    ]);
    expect(inspected.stderr).toBe('');
    expect(inspected.code).toBe(0);
    const report = parseJson<InspectReport>(inspected);
    expect(report.record).toMatchObject({ state: 'done', fence: firstRunFence });
    expect(report.copies.map((c) => [c.redis, c.queue, c.state])).toEqual([
      [clusterUrl(eu), name, 'completed'],
      [clusterUrl(us), name, 'completed'],
      [ap().url, name, 'completed'],
    ]);
    expect(stats.code).toBe(0);
    const counts = parseJson<StatsReport>(stats);
    // Every record, on whichever master its slot put it.
    expect(counts.records).toMatchObject({ done: jobs.length, total: jobs.length });
    expect(counts.queues.map((q) => q.counts.completed)).toEqual([12, 12, 12]);
  });

  it('refuses a Cluster URL without seeds, and as many names as servers or one', async () => {
    const runs = await Promise.all([
      runCli(['stats', '--redis', 'redis+cluster://']),
      runCli(['stats', ...servers(), '--queue', 'a', '--queue', 'b']),
    ]);
    expect(runs.map((run) => run.code)).toEqual([2, 2]);
    expect(runs[0]?.stderr).toContain('is not a Cluster URL; use redis+cluster://host:port');
    expect(runs[1]?.stderr).toContain('3 servers (--redis and 2 --twin-redis) but 2 queue names');
  });
});
