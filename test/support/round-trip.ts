import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { PairedLock, PairedProcessor, PairedQueue } from '../../src/index.js';
import { uniquePrefix } from './redis.js';

/**
 * Everything bullmq-paired does on a connection, once: a PairedLock race, then a job through
 * PairedQueue and two paired BullMQ workers until both copies complete. `connect` makes each
 * client (e.g. as a restricted ACL user, or over TLS).
 */
export async function pairedRoundTrip(connect: () => Redis): Promise<void> {
  const [eu, us] = [
    new PairedLock(connect(), { member: 'eu' }),
    new PairedLock(connect(), { member: 'us' }),
  ];
  const id = `round-${uniquePrefix()}`;
  const outcomes = await Promise.all([eu.run(id, () => 'ok'), us.run(id, () => 'ok')]);
  expect(outcomes.map((o) => o.role).sort()).toEqual(['executor', 'shadow']);
  await Promise.all([eu.close(), us.close()]);

  const base = uniquePrefix('round');
  const connection = connect();
  const queue = new PairedQueue(base, {
    twins: { a: { connection, queue: `${base}-a` }, b: { connection, queue: `${base}-b` } },
  });
  const workers = ['a', 'b'].map((twin) => {
    const paired = new PairedProcessor(async () => 'sent', {
      twin,
      lockConnection: connect(),
      group: base,
    });
    const worker = new Worker(`${base}-${twin}`, paired.processor, { connection: connect() });
    paired.attach(worker);
    return { worker, paired };
  });
  try {
    const { id: jobId } = await queue.add('push', {});
    for (const twin of ['a', 'b']) {
      await expect
        .poll(() => queue.queue(twin).getJobState(jobId), { timeout: 10_000, interval: 50 })
        .toBe('completed');
    }
  } finally {
    for (const { worker, paired } of workers) {
      await worker.close();
      await paired.close();
    }
    await queue.close();
  }
}
