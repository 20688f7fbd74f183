import { setTimeout as sleep } from 'node:timers/promises';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import {
  PairedProcessor,
  type PairedProcessorFunction,
  PairedQueue,
  PairedQueueEvents,
} from '../../src/index.js';
import { useClosers } from '../support/closers.js';
import { aborted, deferred } from '../support/deferred.js';
import { useRedis } from '../support/file-redis.js';
import { type TestRedis, uniquePrefix } from '../support/redis.js';

type Twin = 'eu' | 'us';
const TWINS = ['eu', 'us'] as const;

const redisA = useRedis();
const redisB = useRedis();
const closers = useClosers();

interface Setup {
  label: string;
  queueRedis: Record<Twin, () => TestRedis>;
  lockRedis: () => TestRedis;
}

const SETUPS: Setup[] = [
  {
    label: 'one Redis, two queue names',
    queueRedis: { eu: redisA, us: redisA },
    lockRedis: redisA,
  },
  {
    label: 'two Redis servers',
    queueRedis: { eu: redisA, us: redisB },
    lockRedis: redisA,
  },
];

/**
 * Twin workers in this process, each started on demand (so the test decides which twin
 * executes), a PairedQueue over them and, on request, PairedQueueEvents.
 */
function pair(setup: Setup, run: (twin: Twin) => PairedProcessorFunction<unknown, unknown>) {
  const base = uniquePrefix('wf');
  const same = setup.queueRedis.eu() === setup.queueRedis.us();
  const queueName = (twin: Twin) => (same ? `${base}-${twin}` : base);
  const queue = new PairedQueue(base, {
    twins: {
      eu: { connection: setup.queueRedis.eu().connect(), queue: queueName('eu') },
      us: { connection: setup.queueRedis.us().connect(), queue: queueName('us') },
    },
  });
  closers.push(() => queue.close());
  const processors = {} as Record<Twin, PairedProcessor>;
  const workers = {} as Record<Twin, Worker>;
  for (const twin of TWINS) {
    const paired = new PairedProcessor(run(twin), {
      twin,
      lockConnection: setup.lockRedis().connect(),
      group: queue.group,
      jobLogs: true, // a test reads the cancel line
    });
    paired.on('error', () => {});
    const worker = new Worker(queueName(twin), paired.processor, {
      connection: setup.queueRedis[twin]().connect({ maxRetriesPerRequest: null }),
      autorun: false,
    });
    worker.on('error', () => {});
    paired.attach(worker);
    processors[twin] = paired;
    workers[twin] = worker;
    closers.push(async () => {
      await worker.close();
      await paired.close();
    });
  }
  return {
    queue,
    processors,
    workers,
    start(twin: Twin): void {
      void workers[twin].run();
    },
    events(): PairedQueueEvents {
      const events = new PairedQueueEvents(base, {
        twins: {
          eu: { connection: setup.queueRedis.eu().connect(), queue: queueName('eu') },
          us: { connection: setup.queueRedis.us().connect(), queue: queueName('us') },
        },
        lockConnection: setup.lockRedis().connect(),
        // This test's queues are new: read their whole streams, nothing is missed.
        lastEventId: '0-0',
      });
      events.on('error', () => {});
      closers.push(() => events.close());
      return events;
    },
    async state(twin: Twin, id: string, state: string): Promise<Job> {
      await expect
        .poll(() => queue.queue(twin).getJobState(id), { timeout: 20_000, interval: 50 })
        .toBe(state);
      const job = await queue.queue(twin).getJob(id);
      if (!job) throw new Error(`copy ${id} on ${twin} vanished`);
      return job;
    },
  };
}

describe.each(SETUPS)('BullMQ worker features across twins ($label)', (setup) => {
  it('cancels the pair: a cancelled executor fails both copies and the twin never runs it', async () => {
    const runs: Twin[] = [];
    const started = deferred();
    const twins = pair(setup, (twin) => async (_job, _token, signal) => {
      runs.push(twin);
      started.resolve();
      // A processor that honours BullMQ's cancel: it stops (throws) when its signal aborts.
      const reason = await aborted(signal);
      throw new Error(`stopped: ${String(reason)}`);
    });
    twins.start('eu');
    const { id } = await twins.queue.add('work', {}, { jobId: 'cancel-1' });
    await started.promise;
    const shadowed = deferred();
    twins.processors.us.once('shadowed', () => shadowed.resolve());
    twins.start('us');
    await shadowed.promise;

    expect(twins.workers.eu.cancelJob(id, 'user asked')).toBe(true);

    const eu = await twins.state('eu', id, 'failed');
    const us = await twins.state('us', id, 'failed');
    expect(eu.failedReason).toBe(
      'job "cancel-1" was cancelled on twin eu (user asked): neither twin runs it again',
    );
    // The twin's copy failed without running, with the same clear reason.
    expect(us.failedReason).toBe(eu.failedReason);
    // BullMQ retries neither: no attempt could run the job again.
    expect(eu.attemptsMade).toBe(1);
    expect((await twins.queue.queue('eu').getJobLogs(id)).logs).toContainEqual(
      expect.stringMatching(
        /^bullmq-paired: run on eu \(fence (1|\d{13})\) cancelled \(user asked\); neither twin runs it again$/,
      ),
    );
    await sleep(1_000);
    expect(runs).toEqual(['eu']);
    expect(await twins.queue.queue('us').getJobState(id)).toBe('failed');
  });

  it('cancels before the processor starts its work (cancelled during acquire) as well', async () => {
    const runs: Twin[] = [];
    const twins = pair(setup, (twin) => async (job, _token, signal) => {
      runs.push(twin);
      // Honours a cancel that came before it looked at its signal.
      if (signal.aborted) throw new UnrecoverableError('cancelled before start');
      await job.updateProgress(1);
      await aborted(signal);
      throw new Error('stopped');
    });
    const started = deferred();
    twins.workers.eu.on('progress', () => started.resolve());
    twins.start('eu');
    const { id } = await twins.queue.add('work', {}, { jobId: 'cancel-2' });
    await started.promise;
    expect(twins.workers.eu.cancelJob(id)).toBe(true);
    const eu = await twins.state('eu', id, 'failed');
    expect(eu.failedReason).toMatch(/^job "cancel-2" was cancelled on twin eu \(.+\): neither/);
    // The twin starts late: its copy finds the pair cancelled and fails at once.
    twins.start('us');
    const us = await twins.state('us', id, 'failed');
    expect(us.failedReason).toBe(eu.failedReason);
    expect(runs).toEqual(['eu']);
  });

  it("gives the twin's copy the executor's last job.updateProgress when it completes", async () => {
    const gate = deferred();
    const twins = pair(setup, (twin) => async (job) => {
      await job.updateProgress(10);
      await gate.promise;
      await job.updateProgress({ pct: 100, step: 'sent' });
      return { by: twin };
    });
    twins.start('eu');
    const started = deferred();
    twins.workers.eu.once('progress', () => started.resolve());
    const { id } = await twins.queue.add('work', {}, { jobId: 'progress-1' });
    await started.promise;
    const shadowed = deferred();
    twins.processors.us.once('shadowed', () => shadowed.resolve());
    twins.start('us');
    await shadowed.promise;
    // Not live: the parked copy keeps its own progress while the executor runs.
    expect((await twins.queue.queue('us').getJob(id))?.progress).toBe(0);
    gate.resolve();
    const eu = await twins.state('eu', id, 'completed');
    const us = await twins.state('us', id, 'completed');
    expect(us.returnvalue).toEqual({ by: 'eu' });
    expect(eu.progress).toEqual({ pct: 100, step: 'sent' });
    expect(us.progress).toEqual({ pct: 100, step: 'sent' });
  });

  it('PairedQueueEvents: one completed per pair naming the executor, copies and progress per twin', async () => {
    const gate = deferred();
    const twins = pair(setup, (twin) => async (job) => {
      await job.updateProgress(50);
      await gate.promise;
      return { by: twin };
    });
    const events = twins.events();
    const completed: unknown[] = [];
    const perId: unknown[] = [];
    const copies: string[] = [];
    const progress: unknown[] = [];
    const failed: unknown[] = [];
    events.on('completed', (args) => completed.push(args));
    events.on('completed:events-1', (args) => perId.push(args));
    events.on('copyCompleted', ({ twin }) => copies.push(twin));
    events.on('progress', ({ jobId, data, twin }) => progress.push({ jobId, data, twin }));
    events.on('failed', (args) => failed.push(args));
    twins.start('eu');
    const started = deferred();
    twins.workers.eu.once('progress', () => started.resolve());
    const { id } = await twins.queue.add('work', {}, { jobId: 'events-1' });
    await started.promise;
    const shadowed = deferred();
    twins.processors.us.once('shadowed', () => shadowed.resolve());
    twins.start('us');
    await shadowed.promise;
    gate.resolve();
    await expect.poll(() => copies.length, { timeout: 20_000 }).toBe(2);
    await expect.poll(() => completed.length, { timeout: 5_000 }).toBe(1);
    await sleep(500);
    expect(completed).toEqual([
      expect.objectContaining({ jobId: id, returnvalue: { by: 'eu' }, executor: 'eu' }),
    ]);
    expect(perId).toEqual(completed);
    expect(copies.sort()).toEqual(['eu', 'us']);
    expect(failed).toEqual([]);
    // Live progress comes from the executor's twin; the shadow's copy gets it at completion.
    expect(progress).toEqual([
      { jobId: id, data: 50, twin: 'eu' },
      { jobId: id, data: 50, twin: 'us' },
    ]);
  });

  it('PairedQueueEvents: a takeover is one completed by the twin; a cancel is one failed', async () => {
    const twins = pair(setup, (twin) => async (job, _token, signal) => {
      if (job.name === 'takeover' && twin === 'eu') throw new Error('eu fails');
      if (job.name === 'cancel') {
        await job.updateProgress(1);
        await aborted(signal);
        throw new Error('stopped');
      }
      return { by: twin };
    });
    const events = twins.events();
    const completed: { jobId: string; executor: string | undefined; twin: string }[] = [];
    const failed: {
      jobId: string;
      executor: string | undefined;
      failedReason: string;
      failedReasons: Record<string, string>;
    }[] = [];
    const copyFailed: string[] = [];
    events.on('completed', (args) => completed.push(args));
    events.on('failed', (args) => failed.push(args));
    events.on('copyFailed', ({ jobId, twin }) => copyFailed.push(`${jobId}@${twin}`));
    // eu alone: it fails the first job and starts the second, then us starts.
    twins.start('eu');
    await twins.queue.add('takeover', {}, { jobId: 'takeover-1' });
    await twins.state('eu', 'takeover-1', 'failed');
    const started = deferred();
    twins.workers.eu.once('progress', () => started.resolve());
    await twins.queue.add('cancel', {}, { jobId: 'cancel-3' });
    await started.promise;
    twins.start('us');
    await twins.state('us', 'takeover-1', 'completed');
    twins.workers.eu.cancelJob('cancel-3', 'stop it');
    await twins.state('us', 'cancel-3', 'failed');

    await expect.poll(() => failed.length, { timeout: 10_000 }).toBe(1);
    await sleep(500);
    expect(completed).toEqual([
      expect.objectContaining({ jobId: 'takeover-1', executor: 'us', twin: 'us' }),
    ]);
    expect(copyFailed.sort()).toEqual(['cancel-3@eu', 'cancel-3@us', 'takeover-1@eu']);
    const reason = 'job "cancel-3" was cancelled on twin eu (stop it): neither twin runs it again';
    expect(failed).toEqual([
      expect.objectContaining({
        jobId: 'cancel-3',
        executor: 'eu',
        failedReason: reason,
        failedReasons: { eu: reason, us: reason },
      }),
    ]);
  });
});

describe('PairedQueueEvents options', () => {
  it('refuses anything but two twins, and closes both QueueEvents', async () => {
    expect(() => new PairedQueueEvents('x', { twins: {} })).toThrow(/two or more twins/);
    const redis = redisA();
    const events = new PairedQueueEvents('opt', {
      twins: {
        eu: { connection: redis.connect(), queue: 'opt-eu' },
        us: { connection: redis.connect(), queue: 'opt-us' },
      },
    });
    expect(events.group).toBe('opt');
    await events.waitUntilReady();
    await events.close();
    for (const twin of ['eu', 'us']) {
      expect((events.events(twin) as unknown as { closing: unknown }).closing).toBeTruthy();
    }
  });
});
