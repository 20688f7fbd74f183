import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { InspectReport } from '../../src/cli/inspect.js';
import type { StatsReport } from '../../src/cli/stats.js';
import { PairedLock } from '../../src/index.js';
import { recordHashKey, recordHashPattern, recordKeyPattern } from '../../src/lock/keys.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { parseJson, runCli } from './run-cli.js';

const redis = useRedis();

/** Every key under these patterns with its serialized value: equal snapshots, nothing written. */
async function snapshot(client: Redis, patterns: string[]): Promise<Map<string, string>> {
  const values = new Map<string, string>();
  for (const pattern of patterns) {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      for (const key of keys)
        values.set(key, (await client.dumpBuffer(key))?.toString('hex') ?? '');
    } while (cursor !== '0');
  }
  return values;
}

describe('bullmq-paired on PairedLock records (key and hash mode)', () => {
  it('counts both modes, skips hash fields past retention, inspects a field, and writes nothing', async () => {
    const client = redis().connect();
    const prefix = uniquePrefix('lockcli');
    const emptyQueue = uniquePrefix('empty');
    const lock = new PairedLock(client, { member: 'eu', prefix });
    const shortLived = new PairedLock(client, {
      member: 'us',
      prefix,
      leaseMs: 100,
      retentionMs: 1_000,
    });
    try {
      await lock.run('k-done', () => 'sent');
      await expect(
        lock.run('k-fail', () => {
          throw new Error('gateway refused');
        }),
      ).rejects.toThrow('gateway refused');
      await lock.run('h-done', () => 1, { hash: 'h1' });
      // h-old's own retention ends in 1 s; h-new, written after it, keeps the hash alive.
      await shortLived.run('h-old', () => 2, { hash: 'h2' });
      await lock.run('h-new', () => ({ ok: true }), { hash: 'h2' });
    } finally {
      await Promise.all([lock.close(), shortLived.close()]);
    }
    await expect
      .poll(() => lock.inspect('h-old', { hash: 'h2' }), { timeout: 10_000, interval: 50 })
      .toBeNull();
    // Still stored (no write has pruned it since): only the expiry index says it is gone.
    expect(await client.hexists(recordHashKey(prefix, 'h2'), 'h-old')).toBe(1);

    const watched = [`${prefix}*`, `bull:${emptyQueue}*`];
    const before = await snapshot(client, watched);
    const base = ['--redis', redis().url, '--lock-prefix', prefix];
    const [all, oneHash, field, expired, failed, failedText, withQueue] = await Promise.all([
      runCli(['stats', ...base, '--json', '--count', '2']),
      runCli(['stats', ...base, '--hash', 'h2', '--json']),
      runCli(['inspect', ...base, '--hash', 'h2', 'h-new', '--json']),
      runCli(['inspect', ...base, '--hash', 'h2', 'h-old']),
      runCli(['inspect', ...base, 'k-fail', '--json']),
      runCli(['inspect', ...base, 'k-fail']),
      runCli(['stats', ...base, '--queue', emptyQueue, '--json']),
    ]);
    expect(
      [all, oneHash, field, expired, failed, failedText, withQueue].map((r) => r.code),
    ).toEqual([0, 0, 0, 1, 0, 0, 0]);

    const stats = parseJson<StatsReport>(all);
    expect(stats.patterns).toEqual([recordKeyPattern(prefix), recordHashPattern(prefix)]);
    expect(stats.records).toEqual({
      waiting: 0,
      running: 0,
      done: 3,
      failed: 1,
      released: 0,
      corrupt: 0,
      total: 4,
    });
    expect(stats.queues).toEqual([]);
    expect(parseJson<StatsReport>(oneHash).records).toMatchObject({ done: 1, total: 1 });

    const hashed = parseJson<InspectReport>(field);
    expect(hashed.recordId).toBe('h-new');
    expect(hashed.record).toMatchObject({
      key: recordHashKey(prefix, 'h2'),
      field: 'h-new',
      state: 'done',
      owner: 'eu',
      result: { ok: true },
    });
    expect(expired.stdout).toContain('none (never run, or past retention)');

    expect(parseJson<InspectReport>(failed).record).toMatchObject({
      state: 'failed',
      owner: 'eu',
      fence: clockFence,
      error: { name: 'Error', message: 'gateway refused' },
    });
    expect(failedText.stdout).toMatch(/error\s+Error: gateway refused/);

    const queued = parseJson<StatsReport>(withQueue);
    expect(queued.group).toBe(emptyQueue);
    expect(queued.records.total).toBe(0);
    expect(queued.queues[0]?.counts).toMatchObject({ waiting: 0, completed: 0 });

    // Read-only: no record, index or BullMQ key (not even the queue's meta) was written.
    expect(await snapshot(client, watched)).toEqual(before);
  });
});
