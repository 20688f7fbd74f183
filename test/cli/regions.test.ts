import { createPostgresBackend, Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import type { InspectReport } from '../../src/cli/inspect.js';
import type { StatsReport } from '../../src/cli/stats.js';
import { PairedProcessor, PairedQueue } from '../../src/index.js';
import { recordKey } from '../../src/lock/keys.js';
import { recordId } from '../../src/pairing/keys.js';
import { useClosers } from '../support/closers.js';
import { firstRunFence } from '../support/fences.js';
import { usePostgres } from '../support/file-postgres.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { parseJson, runCli } from './run-cli.js';

// Two distinct servers (one queue name on each), never a shared REDIS_URL for both.
const eu = useRedis({ killable: true });
const us = useRedis({ killable: true });
const lockStore = useRedis();
const postgres = usePostgres();
const closers = useClosers();

/**
 * Both twins' paired workers (records under `lockPrefix`, no group: named after the queue),
 * one job added through `queue` and completed on both; its id.
 */
async function sentOnBoth(
  queue: PairedQueue,
  lockPrefix: string,
  workerFor: (twin: 'eu' | 'us', paired: PairedProcessor) => Worker,
): Promise<string> {
  closers.push(() => queue.close());
  for (const twin of ['eu', 'us'] as const) {
    const paired = new PairedProcessor<unknown, unknown>(async () => ({ sent: true }), {
      twin,
      lockConnection: lockStore().connect(),
      prefix: lockPrefix,
    });
    const worker = workerFor(twin, paired);
    worker.on('error', () => {});
    paired.attach(worker);
    closers.push(async () => {
      await worker.close();
      await paired.close();
    });
  }
  const { id } = await queue.add('notify', {});
  for (const twin of ['eu', 'us'] as const) {
    await expect
      .poll(() => queue.queue(twin).getJobState(id), { timeout: 20_000, interval: 50 })
      .toBe('completed');
  }
  return id;
}

/** The CLI's arguments for twin queues `name` on `eu` and `twin`, records on the lock store. */
const targetOf = (euUrl: string, twinUrl: string, name: string, lockPrefix: string) => [
  '--redis',
  euUrl,
  '--twin-redis',
  twinUrl,
  '--lock-redis',
  lockStore().url,
  '--queue',
  name,
  '--lock-prefix',
  lockPrefix,
  '--json',
];

describe('bullmq-paired across two Redis servers', () => {
  it('finds one queue name on two servers and the record on a third (group = queue name)', async () => {
    const name = uniquePrefix('push');
    const lockPrefix = `${name}-lock`;
    const regions = { eu: eu(), us: us() };
    const queue = new PairedQueue(name, {
      twins: {
        eu: { connection: regions.eu.connect() },
        us: { connection: regions.us.connect() },
      },
    });
    // No group: PairedProcessor names records after the queue, the same on both servers.
    const id = await sentOnBoth(
      queue,
      lockPrefix,
      (twin, paired) => new Worker(name, paired.processor, { connection: regions[twin].connect() }),
    );
    const target = targetOf(regions.eu.url, regions.us.url, name, lockPrefix);
    const [inspected, stats] = await Promise.all([
      runCli(['inspect', ...target, id]),
      runCli(['stats', ...target]),
    ]);
    expect(inspected.code).toBe(0);
    const report = parseJson<InspectReport>(inspected);
    expect(report.lockStore).toBe(lockStore().url);
    expect(report.record).toMatchObject({
      key: recordKey(lockPrefix, recordId(name, id)),
      state: 'done',
      fence: firstRunFence,
      result: { sent: true },
    });
    expect(['eu', 'us']).toContain(report.record?.owner);
    expect(report.copies.map((c) => [c.redis, c.queue, c.state, c.returnvalue])).toEqual([
      [regions.eu.url, name, 'completed', { sent: true }],
      [regions.us.url, name, 'completed', { sent: true }],
    ]);

    expect(stats.code).toBe(0);
    const counts = parseJson<StatsReport>(stats);
    expect(counts.records).toMatchObject({ done: 1, total: 1 });
    expect(counts.queues.map((q) => [q.redis, q.counts.completed])).toEqual([
      [regions.eu.url, 1],
      [regions.us.url, 1],
    ]);
  });

  it('reads a twin on PostgreSQL (--twin-redis postgres://…) beside one on Redis', async () => {
    const name = uniquePrefix('pgcli');
    const lockPrefix = `${name}-lock`;
    const pg = { connectionString: postgres().url, migrate: true };
    const queue = new PairedQueue(name, {
      twins: {
        eu: { connection: eu().connect() },
        us: { connection: pg, backend: createPostgresBackend },
      },
    });
    const id = await sentOnBoth(queue, lockPrefix, (twin, paired) =>
      twin === 'eu'
        ? new Worker(name, paired.processor, { connection: eu().connect() })
        : (new Worker(
            name,
            paired.processor,
            { connection: pg } as never,
            createPostgresBackend,
          ) as unknown as Worker),
    );
    const target = targetOf(eu().url, postgres().url, name, lockPrefix);
    const [inspected, stats] = await Promise.all([
      runCli(['inspect', ...target, id]),
      runCli(['stats', ...target]),
    ]);
    expect(inspected.code).toBe(0);
    const report = parseJson<InspectReport>(inspected);
    expect(report.record).toMatchObject({ state: 'done', result: { sent: true } });
    expect(report.copies.map((c) => [c.queue, c.state, c.returnvalue])).toEqual([
      [name, 'completed', { sent: true }],
      [name, 'completed', { sent: true }],
    ]);
    expect(stats.code).toBe(0);
    const counted = parseJson<StatsReport>(stats);
    expect(JSON.stringify(counted)).toContain('"completed":1');
  });
});
