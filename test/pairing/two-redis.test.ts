import { describe, expect, it } from 'vitest';
import { PartialAddError } from '../../src/index.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { copiesIn, executions, twinsKit } from './pairing-kit.js';

const euRedis = useRedis({ killable: true });
const usRedis = useRedis({ killable: true });
const lockRedis = useRedis({ killable: true, persistence: true });
const kit = twinsKit({ queueRedis: { eu: euRedis, us: usRedis }, lockRedis, ledgerRedis: euRedis });

describe('twins on two Redis servers', () => {
  it('reports a fan-out that reached only one Redis, and the live twin runs the job', async () => {
    await kit.startWorker('eu');
    const queue = kit.pairedQueue();
    await usRedis().kill();
    try {
      const error = await queue
        .add('notify', { ms: 10 }, { jobId: 'half-1' })
        .catch((err: unknown) => err);
      expect(error).toBeInstanceOf(PartialAddError);
      expect(error).toMatchObject({
        code: 'ERR_PAIRED_PARTIAL_ADD',
        jobIds: ['half-1'],
        added: ['eu'],
      });
      expect(Object.keys((error as PartialAddError).failed)).toEqual(['us']);
      expect((error as Error).message).toMatch(/reached only twin\(s\) eu/);
      const { eu } = await copiesIn(queue, 'half-1', ['eu']);
      expect(eu.returnvalue).toEqual({ by: 'eu', fence: clockFence });
    } finally {
      await usRedis().restart();
    }
  });

  it('loses nothing and runs nothing twice when the lock store is killed and restarted mid-run', async () => {
    const [eu, us] = await Promise.all([kit.startWorker('eu'), kit.startWorker('us')]);
    const queue = kit.pairedQueue();
    const added = await queue.addBulk(
      Array.from({ length: 40 }, () => ({ name: 'notify', data: { ms: 300 } })),
    );
    await eu.next('started');
    await lockRedis().kill();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await lockRedis().restart();
    for (const { id } of added) await copiesIn(queue, id, ['eu', 'us'], 'completed', 60_000);
    const ran = executions(await kit.ledger());
    const perJob = new Map<string, number>();
    for (const entry of ran) perJob.set(entry.id, (perJob.get(entry.id) ?? 0) + 1);
    expect(perJob.size).toBe(40);
    expect([...perJob.values()].every((n) => n === 1)).toBe(true);
    const errors = [...eu.lines, ...us.lines].filter((l) => l.event === 'error');
    console.info(`lock store outage: ${errors.length} error events reported by the twins`);
  });
});
