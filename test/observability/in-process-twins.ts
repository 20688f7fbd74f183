import { type Job, Worker, type WorkerOptions } from 'bullmq';
import { expect } from 'vitest';
import {
  PairedProcessor,
  type PairedProcessorFunction,
  type PairedProcessorOptions,
  PairedQueue,
} from '../../src/index.js';
import { type TestRedis, uniquePrefix } from '../support/redis.js';

export type Twin = 'eu' | 'us';

/**
 * Two twin workers in this process on one Redis (two queue names), for tests that look
 * at what a processor reports rather than at crashes. Each twin gets its own processor
 * function and options; `close()` closes workers, processors and the queue.
 */
export function inProcessTwins(
  redis: TestRedis,
  setup: {
    run: (twin: Twin) => PairedProcessorFunction<unknown, unknown>;
    options?: (twin: Twin) => Partial<PairedProcessorOptions>;
    worker?: Partial<WorkerOptions>;
  },
) {
  const base = uniquePrefix('obs');
  const name = (twin: Twin) => `${base}-${twin}`;
  const queue = new PairedQueue(base, {
    twins: {
      eu: { connection: redis.connect(), queue: name('eu') },
      us: { connection: redis.connect(), queue: name('us') },
    },
  });
  const processors = {} as Record<Twin, PairedProcessor>;
  const workers: Worker[] = [];
  for (const twin of ['eu', 'us'] as const) {
    const paired = new PairedProcessor(setup.run(twin), {
      twin,
      lockConnection: redis.connect(),
      group: base,
      ...setup.options?.(twin),
    });
    processors[twin] = paired;
    // Workers start paused: the test attaches listeners first, then calls start().
    const worker = new Worker(name(twin), paired.processor, {
      connection: redis.connect({ maxRetriesPerRequest: null }),
      autorun: false,
      ...setup.worker,
    });
    paired.attach(worker);
    workers.push(worker);
  }
  return {
    queue,
    processors,
    name,
    start(): void {
      for (const worker of workers) void worker.run();
    },
    /** Waits until both copies of `id` are completed (or `state`) and returns them. */
    async settled(id: string, state = 'completed'): Promise<Record<Twin, Job>> {
      const jobs = {} as Record<Twin, Job>;
      for (const twin of ['eu', 'us'] as const) {
        await expect
          .poll(() => queue.queue(twin).getJobState(id), { timeout: 20_000, interval: 50 })
          .toBe(state);
        const job = await queue.queue(twin).getJob(id);
        if (!job) throw new Error(`copy ${id} on ${twin} vanished`);
        jobs[twin] = job;
      }
      return jobs;
    },
    async close(): Promise<void> {
      await Promise.all(workers.map((w) => w.close()));
      await Promise.all(Object.values(processors).map((p) => p.close()));
      await queue.close();
    },
  };
}
