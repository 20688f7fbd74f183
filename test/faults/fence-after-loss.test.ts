/**
 * Fences never repeat for a task, even when the lock store loses its records: here it is
 * restarted without AOF while runs are in flight (the same as a failover to a replica that
 * never got the writes). Before fences were taken from the store's clock, every task started
 * again at fence 1 and a sink that keeps the highest fence took the second run for the first.
 */
import { describe, expect, it } from 'vitest';
import { lockKit, taskId } from '../lock/lock-test-kit.js';
import { aborted } from '../support/deferred.js';
import { isClockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis({ killable: true }); // no AOF: a restart comes back empty
const kit = lockKit(redis);

describe('a lock store restarted without AOF mid-run', () => {
  it('fences every later run of a task above every run of it before', async () => {
    const prefix = uniquePrefix('fence-loss');
    const eu = kit.lock({ member: 'eu', leaseMs: 3_000 }, prefix);
    const us = kit.lock({ member: 'us', leaseMs: 3_000 }, prefix);
    for (const lock of [eu, us]) lock.on('error', () => {}); // the restart is reported there
    const fences = new Map<string, { before: number[]; after: number[] }>();
    const note = (id: string, fence: number, phase: 'before' | 'after') => {
      const seen = fences.get(id) ?? { before: [], after: [] };
      seen[phase].push(fence);
      fences.set(id, seen);
    };
    // Half the tasks done before the restart, half still running on eu when it comes.
    const done = Array.from({ length: 10 }, () => taskId());
    for (const id of done) await eu.run(id, ({ fence }) => note(id, fence, 'before'));
    const inFlight = Array.from({ length: 10 }, () => taskId());
    const started: Promise<void>[] = [];
    const runs = inFlight.map((id) => {
      let began!: () => void;
      started.push(new Promise((resolve) => (began = resolve)));
      return eu
        .run(id, async ({ fence, signal }) => {
          note(id, fence, 'before');
          began();
          throw await aborted(signal); // its grant is lost with the store's data
        })
        .catch((err: unknown) => err);
    });
    await Promise.all(started);
    await redis().kill();
    await redis().restart();
    for (const err of await Promise.all(runs)) expect(err).toBeInstanceOf(Error);
    // Every task runs again: the store has no record of any (a repeat, never a loss).
    for (const id of [...done, ...inFlight]) {
      const outcome = await us.run(id, ({ fence }) => note(id, fence, 'after'));
      expect(outcome.role).toBe('executor');
    }
    for (const [id, { before, after }] of fences) {
      expect(after, id).toHaveLength(1);
      expect(before.every(isClockFence) && after.every(isClockFence), id).toBe(true);
      expect(Math.min(...after), id).toBeGreaterThan(Math.max(...before));
    }
  }, 60_000);
});
