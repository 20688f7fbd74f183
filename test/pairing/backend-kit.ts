/**
 * The pairing checks every twin backend must pass (test/pairing/drivers.test.ts for node-redis
 * and Valkey GLIDE, test/pairing/postgres.test.ts for PostgreSQL): each file builds its own
 * queues and workers and runs these on them.
 */
import type { Job } from 'bullmq';
import { expect } from 'vitest';
import { PairedFlowProducer, type PairedJob, type PairedQueue } from '../../src/index.js';

export type Twin = 'eu' | 'us';
export const TWINS = ['eu', 'us'] as const;

export interface Execution {
  id: string;
  twin: Twin;
  fence: number;
}
export type Run = (job: Job, twin: Twin) => Promise<unknown>;
export interface Workers {
  executions: Execution[];
  errors: Error[];
}

export async function bothCompleted(
  queue: PairedQueue,
  id: string,
  timeout = 30_000,
): Promise<void> {
  await expect
    .poll(() => queue.getJobState(id), { timeout, interval: 50 })
    .toEqual({ eu: 'completed', us: 'completed' });
}

/**
 * Adds `count` jobs and checks each ran once, both copies completed with the executor's
 * result; returns what the add returned.
 */
export async function expectEachRunOnce(
  queue: PairedQueue,
  workers: Workers,
  count: number,
): Promise<PairedJob[]> {
  const added = await queue.addBulk(
    Array.from({ length: count }, (_, n) => ({ name: 'push', data: { n } })),
  );
  for (const { id } of added) await bothCompleted(queue, id);
  for (const { id } of added) {
    const ran = workers.executions.filter((e) => e.id === id);
    expect(ran).toHaveLength(1);
    const copies = await queue.getJob(id);
    for (const twin of TWINS) {
      expect(copies?.jobs[twin]?.returnvalue).toEqual({ by: ran[0]?.twin });
    }
  }
  return added;
}

/** A processor body whose first run of each job fails. */
export function failingFirstRun(): Run {
  const failedOnce = new Set<string>();
  return async (job, twin) => {
    if (!failedOnce.has(job.id as string)) {
      failedOnce.add(job.id as string);
      throw new Error(`first run fails on ${twin}`);
    }
    return { by: twin };
  };
}

/** Adds a job whose first run fails: the twin takes it over, fenced higher, and completes it. */
export async function expectTakenOver(queue: PairedQueue, workers: Workers): Promise<void> {
  const { id } = await queue.add('push', {});
  await expect
    .poll(() => workers.executions.filter((e) => e.id === id).length, { timeout: 30_000 })
    .toBe(2);
  const [first, second] = workers.executions.filter((e) => e.id === id);
  expect(second?.twin).not.toBe(first?.twin);
  expect(second?.fence).toBeGreaterThan(first?.fence ?? Number.POSITIVE_INFINITY);
  await expect
    .poll(() => queue.queue(second?.twin as Twin).getJobState(id), { timeout: 30_000 })
    .toBe('completed');
  const copy = await queue.queue(second?.twin as Twin).getJob(id);
  expect(copy?.returnvalue).toEqual({ by: second?.twin });
}

/**
 * A flow (an order of two items) through PairedFlowProducer: both twins hold the tree, then
 * `start` starts each queue's workers; each job runs once and the parent sees its children.
 */
export async function expectPairedFlow(
  itemsQueue: PairedQueue,
  ordersQueue: PairedQueue,
  start: (which: 'items' | 'orders', run: Run) => Promise<Workers>,
  closers: (() => Promise<void>)[],
): Promise<void> {
  const flows = new PairedFlowProducer();
  closers.push(() => flows.close());
  const flow = await flows.add({
    name: 'order',
    queue: ordersQueue,
    data: {},
    opts: { jobId: 'order-1' },
    children: [1, 2].map((n) => ({
      name: 'item',
      queue: itemsQueue,
      data: { n },
      opts: { jobId: `item-${n}` },
    })),
  });
  for (const twin of TWINS) {
    expect(flow.nodes[twin]?.job.id).toBe('order-1');
    expect(await ordersQueue.queue(twin).getJobState('order-1')).toBe('waiting-children');
  }
  const itemWorkers = await start('items', async (job) => (job.data as { n: number }).n);
  const orderWorkers = await start('orders', async (job) =>
    Object.values(await job.getChildrenValues()).sort(),
  );
  await bothCompleted(ordersQueue, 'order-1');
  expect(itemWorkers.executions.map((e) => e.id).sort()).toEqual(['item-1', 'item-2']);
  expect(orderWorkers.executions.map((e) => e.id)).toEqual(['order-1']);
  const copies = await ordersQueue.getJob('order-1');
  for (const twin of TWINS) expect(copies?.jobs[twin]?.returnvalue).toEqual([1, 2]);
}
