import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { luaScripts } from '../../src/lock/lua/scripts.generated.js';
import { useRedis } from '../support/file-redis.js';
import { copiesIn, executions, twinsKit } from './pairing-kit.js';

/**
 * What a standby copy (its job chosen for the other twin) asks the lock store: nothing when its
 * executor's settle message comes within its hold or came before it was picked up. Counted by
 * MONITOR on a lock store of its own (the queues and the ledger are on another Redis).
 */
const queues = useRedis();
const lock = useRedis();
const kit = twinsKit({
  queueRedis: { eu: queues, us: queues },
  lockRedis: lock,
  ledgerRedis: queues,
});

const SHA = Object.fromEntries(
  (['acquire', 'inspect'] as const).map((name) => [
    createHash('sha1').update(luaScripts[name].lua).digest('hex'),
    name,
  ]),
);

const monitors: Redis[] = [];
afterEach(() => {
  for (const monitor of monitors.splice(0)) monitor.disconnect();
});

/** Counts the acquire and inspect scripts the lock store runs from now on (EVAL or EVALSHA). */
async function countScripts(): Promise<Record<'acquire' | 'inspect', number>> {
  const counts = { acquire: 0, inspect: 0 };
  const monitor = await lock().connect().monitor();
  monitors.push(monitor);
  monitor.on('monitor', (_time: string, args: string[]) => {
    const [command, script] = args;
    const name =
      command?.toLowerCase() === 'evalsha'
        ? SHA[script ?? '']
        : Object.entries(luaScripts).find(([, s]) => s.lua === script)?.[0];
    if (name === 'acquire' || name === 'inspect') counts[name]++;
  });
  return counts;
}

function addJobs(queue: ReturnType<typeof kit.pairedQueue>, count: number, prefix: string) {
  return queue.addBulk(
    Array.from({ length: count }, (_, i) => ({
      name: 'n',
      data: { ms: 2 },
      opts: { jobId: `${prefix}${i}` },
    })),
  );
}

describe('a standby copy and the lock store', () => {
  it('completes without a lock-store read when its executor finishes within its hold', async () => {
    await kit.startWorker('eu');
    await kit.startWorker('us');
    await kit.pastFirstSecond('eu');
    const queue = kit.pairedQueue('eu');
    const counts = await countScripts();
    const added = await addJobs(queue, 40, 'h');
    for (const { id } of added) {
      const copies = await copiesIn(queue, id);
      expect(copies.us.returnvalue).toEqual(copies.eu.returnvalue);
    }
    expect(executions(await kit.ledger()).map((e) => e.twin)).toEqual(Array(40).fill('eu'));
    // One claim per job (eu's). Before, each of us's copies read the record first: 40 reads.
    // A copy whose executor took longer than the hold (a slow machine) still reads: a few.
    expect(counts.inspect).toBeLessThan(10);
    expect(counts.acquire).toBeLessThanOrEqual(40 + 4);
  });

  it('completes from the settle message it heard before it was picked up: no lock-store call', async () => {
    await kit.startWorker('eu');
    await kit.startWorker('us');
    await kit.pastFirstSecond('eu');
    const queue = kit.pairedQueue('eu');
    // us's copies wait in a paused queue while eu runs every job; us's process hears each settle.
    await queue.queue('us').pause();
    const added = await addJobs(queue, 30, 'p');
    for (const { id } of added) await copiesIn(queue, id, ['eu']);
    const counts = await countScripts();
    await queue.queue('us').resume();
    for (const { id } of added) {
      const copies = await copiesIn(queue, id);
      expect(copies.us.returnvalue).toEqual(copies.eu.returnvalue);
    }
    await vi.waitFor(async () => expect(await executions(await kit.ledger())).toHaveLength(30));
    expect(executions(await kit.ledger()).map((e) => e.twin)).toEqual(Array(30).fill('eu'));
    // Before: a read of the record for each of us's copies (30).
    expect(counts).toEqual({ acquire: 0, inspect: 0 });
  });

  it('is picked up once when the settle was heard first, even with no hold (a far store, long jobs)', async () => {
    await kit.startWorker('eu');
    // No hold: the standby parks at once unless it already knows the outcome.
    await kit.startWorker('us', { SHADOW_HOLD_MS: '0' });
    await kit.pastFirstSecond('eu');
    const queue = kit.pairedQueue('eu');
    await queue.queue('us').pause();
    const added = await addJobs(queue, 20, 'z');
    for (const { id } of added) await copiesIn(queue, id, ['eu']);
    await queue.queue('us').resume();
    for (const { id } of added) {
      const copies = await copiesIn(queue, id);
      expect(copies.us.returnvalue).toEqual(copies.eu.returnvalue);
      // Before: parked (a delayed move), promoted once its watch saw the result, picked up again.
      expect(copies.us.attemptsStarted).toBe(1);
    }
  });
});
