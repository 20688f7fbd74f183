import { type Job, Worker, type WorkerOptions } from 'bullmq';
import { describe, expect, it } from 'vitest';
import {
  EXECUTOR_OPTION,
  JobSchedulerNotPairedError,
  PairedFlowProducer,
  PairedProcessor,
  PairedQueue,
  PartialTwinOperationError,
} from '../../src/index.js';
import { useClosers } from '../support/closers.js';
import { useRedis } from '../support/file-redis.js';
import { type TestRedis, uniquePrefix } from '../support/redis.js';

// Two servers of our own: the twins' Redis in the "two Redis" cases (REDIS_URL would give one).
const redis = useRedis({ killable: true });
const other = useRedis({ killable: true });
const closers = useClosers();

type Twin = 'eu' | 'us';
const TWINS = ['eu', 'us'] as const;
const SETUPS = ['one Redis', 'two Redis'] as const;
type Setup = (typeof SETUPS)[number];

/**
 * Where each twin's queue lives: on one Redis, `<base>-eu` and `<base>-us`; on two Redis,
 * `<base>` on each server. The lock store is the first server.
 */
function layout(setup: Setup, base = uniquePrefix('feat')) {
  const server = (twin: Twin): TestRedis =>
    setup === 'two Redis' && twin === 'us' ? other() : redis();
  const queueName = (twin: Twin): string => (setup === 'one Redis' ? `${base}-${twin}` : base);
  return { base, server, queueName };
}

function pairedQueue(where: ReturnType<typeof layout>, addTimeoutMs = 5_000): PairedQueue {
  const queue = new PairedQueue(where.base, {
    addTimeoutMs,
    twins: Object.fromEntries(
      TWINS.map((twin) => [
        twin,
        {
          connection: { host: where.server(twin).host, port: where.server(twin).port },
          queue: where.queueName(twin),
        },
      ]),
    ),
  });
  for (const twin of TWINS) queue.queue(twin).on('error', () => {});
  closers.push(() => queue.close());
  return queue;
}

/** One paired worker per twin in this process; every execution and every completed copy is recorded. */
function pairedWorkers(
  where: ReturnType<typeof layout>,
  setup: {
    worker?: (twin: Twin) => Partial<WorkerOptions>;
    ms?: number;
    twins?: readonly Twin[];
    run?: (job: Job, twin: Twin) => Promise<unknown>;
  } = {},
) {
  const executions: { id: string; twin: Twin; at: number }[] = [];
  const completed: { id: string; twin: Twin; at: number }[] = [];
  const errors: Error[] = [];
  for (const twin of setup.twins ?? TWINS) {
    const paired = new PairedProcessor(
      async (job: Job) => {
        executions.push({ id: job.id as string, twin, at: Date.now() });
        if (setup.ms) await new Promise((resolve) => setTimeout(resolve, setup.ms));
        return setup.run ? setup.run(job, twin) : { by: twin };
      },
      { twin, lockConnection: redis().connect() },
    );
    paired.on('error', (err) => errors.push(err));
    const worker = new Worker(where.queueName(twin), paired.processor, {
      connection: where.server(twin).connect({ maxRetriesPerRequest: null }),
      ...setup.worker?.(twin),
    });
    worker.on('error', (err) => errors.push(err));
    worker.on('completed', (job) => completed.push({ id: job.id as string, twin, at: Date.now() }));
    paired.attach(worker);
    closers.push(async () => {
      await worker.close();
      await paired.close();
    });
  }
  return { executions, completed, errors };
}

async function bothCompleted(queue: PairedQueue, id: string, timeout = 20_000): Promise<void> {
  await expect
    .poll(() => queue.getJobState(id), { timeout, interval: 50 })
    .toEqual({ eu: 'completed', us: 'completed' });
}

function count<T>(items: T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

/** Both copies of `id` name one chosen executor (the default `executor`), and it ran the job. */
async function expectChosenRan(
  queue: PairedQueue,
  id: string,
  executions: { id: string; twin: Twin }[],
): Promise<void> {
  const copies = await queue.getJob(id);
  const chosen = TWINS.map(
    (twin) => (copies?.jobs[twin]?.opts as Record<string, unknown> | undefined)?.[EXECUTOR_OPTION],
  );
  expect(chosen[0]).toBeTypeOf('string');
  expect(chosen[1]).toBe(chosen[0]);
  expect(executions.filter((e) => e.id === id).map((e) => e.twin)).toEqual([chosen[0]]);
}

describe('job schedulers across twins', () => {
  for (const setup of SETUPS) {
    it(`runs each iteration of an "every" scheduler once, both copies completing (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      const twins = pairedWorkers(where, { ms: 20 });
      const next = await queue.upsertJobScheduler('tick', { every: 500 }, { name: 'tick' });
      // The same first iteration on both twins: one id, on the grid BullMQ names it by.
      expect(next.eu?.id).toMatch(/^repeat:tick:\d+$/);
      expect(next.us?.id).toBe(next.eu?.id);
      // ~2 s of iterations: four of them.
      await expect
        .poll(() => new Set(twins.executions.map((e) => e.id)).size, {
          timeout: 10_000,
          interval: 20,
        })
        .toBeGreaterThanOrEqual(4);
      // Once both copies of the latest iteration completed, both twins scheduled the next one
      // (BullMQ does so when a worker picks an iteration up): it sits delayed until removed.
      const latest = [...twins.executions].sort((a, b) => b.at - a.at)[0]?.id as string;
      await bothCompleted(queue, latest);
      expect(await queue.removeJobScheduler('tick')).toEqual({ eu: true, us: true });
      const ids = [...new Set(twins.executions.map((e) => e.id))];
      for (const id of ids) await bothCompleted(queue, id);
      // Each iteration ran once in total (never on both twins) ...
      expect([...count(twins.executions, (e) => e.id).values()].every((n) => n === 1)).toBe(true);
      // ... on the twin the default executor chose for the scheduler, stamped on every copy.
      for (const id of ids) await expectChosenRan(queue, id, twins.executions);
      // ... and both twins hold the same iterations, all completed.
      const held = await Promise.all(
        TWINS.map(async (twin) =>
          (await queue.queue(twin).getJobs(['completed', 'active', 'waiting', 'delayed']))
            .map((job) => job.id)
            .sort(),
        ),
      );
      expect(held[0]).toEqual(held[1]);
      expect(held[0]).toEqual([...ids].sort());
      const millis = ids.map((id) => Number(id.split(':')[2])).sort((a, b) => a - b);
      for (let i = 1; i < millis.length; i++) {
        expect((millis[i] as number) - (millis[i - 1] as number)).toBe(500);
      }
      expect(twins.errors).toEqual([]);
    });
  }

  for (const setup of SETUPS) {
    it(`keeps the slots when upserted again, and replaces a scheduler on another grid (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      const first = await queue.upsertJobScheduler('report', { every: 60_000 });
      const again = await queue.upsertJobScheduler('report', { every: 60_000 }, { data: { v: 2 } });
      expect(again.eu?.id).toBe(first.eu?.id);
      expect(again.us?.id).toBe(first.eu?.id);
      // eu's scheduler made anew by plain BullMQ: named after eu's clock, off the grid.
      await queue.queue('eu').removeJobScheduler('report');
      const plain = await queue.queue('eu').upsertJobScheduler('report', { every: 60_000 });
      expect(plain.id).not.toBe(first.eu?.id);
      const repaired = await queue.upsertJobScheduler('report', { every: 60_000 });
      expect(repaired.eu?.id).toMatch(/^repeat:report:\d+$/);
      expect(repaired.us?.id).toBe(repaired.eu?.id);
      const schedulers = await queue.getJobScheduler('report');
      expect(schedulers.eu).toMatchObject({ key: 'report', every: 60_000 });
      expect(schedulers.eu?.next).toBe(schedulers.us?.next);
      // A new interval starts both twins on its own grid.
      const faster = await queue.upsertJobScheduler('report', { every: 30_000 });
      expect(faster.us?.id).toBe(faster.eu?.id);
      expect(faster.eu?.id).not.toBe(repaired.eu?.id);
      expect(await queue.removeJobScheduler('report')).toEqual({ eu: true, us: true });
      expect(await queue.getJobScheduler('report')).toEqual({ eu: undefined, us: undefined });
    });
  }

  it('pairs the iterations of a cron pattern: the same instants on both twins', async () => {
    const where = layout('two Redis');
    const queue = pairedQueue(where);
    const next = await queue.upsertJobScheduler('nightly', { pattern: '0 3 * * *', tz: 'UTC' });
    expect(next.eu?.id).toMatch(/^repeat:nightly:\d+$/);
    expect(next.us?.id).toBe(next.eu?.id);
    const at = new Date(Number(next.eu?.id?.split(':')[2]));
    expect(at.getUTCHours()).toBe(3);
  });

  it('refuses what cannot pair, before writing anything', async () => {
    const where = layout('one Redis');
    const queue = pairedQueue(where);
    const refusals = [
      queue.upsertJobScheduler('daily:report', { every: 1_000 }),
      queue.upsertJobScheduler('now', { pattern: '* * * * *', immediately: true } as never),
      queue.upsertJobScheduler('both', { every: 1_000, pattern: '* * * * *' }),
    ];
    for (const refusal of refusals) {
      const error = await refusal.catch((err: unknown) => err);
      expect(error).toBeInstanceOf(JobSchedulerNotPairedError);
      expect(error).toHaveProperty('code', 'ERR_PAIRED_SCHEDULER_NOT_PAIRED');
    }
    const colon = await refusals[0]?.catch((err: Error) => err);
    expect((colon as Error).message).toContain('"daily-report"');
    for (const twin of TWINS) {
      expect(await queue.queue(twin).getJobSchedulersCount()).toBe(0);
    }
  });

  it('names the twin that did not answer, and completes on a second call', async () => {
    const where = layout('two Redis');
    const queue = pairedQueue(where, 1_000);
    await queue.getJobState('warm-up'); // both clients connected
    await other().kill();
    try {
      const error = await queue
        .upsertJobScheduler('tick', { every: 60_000 })
        .catch((err: unknown) => err);
      expect(error).toBeInstanceOf(PartialTwinOperationError);
      expect(error).toMatchObject({ code: 'ERR_PAIRED_PARTIAL_OPERATION', done: ['eu'] });
      expect(Object.keys((error as PartialTwinOperationError).failed)).toEqual(['us']);
    } finally {
      await other().restart();
    }
    await expect
      .poll(
        async () => {
          const next = await queue.upsertJobScheduler('tick', { every: 60_000 }).catch(() => ({}));
          return 'eu' in next && next.eu?.id !== undefined && next.eu.id === next.us?.id;
        },
        { timeout: 20_000, interval: 500 },
      )
      .toBe(true);
  });
});

describe('add refuses BullMQ 5 repeat options', () => {
  it('throws a TypeError naming upsertJobScheduler, adding nothing', async () => {
    const queue = pairedQueue(layout('one Redis'));
    for (const opts of [{ repeat: { every: 1_000 } }, { repeatJobKey: 'tick' }]) {
      await expect(queue.add('push', {}, { jobId: 'r-1', ...opts } as never)).rejects.toThrow(
        /option "opts\.(repeat|repeatJobKey)" must be absent: .*upsertJobScheduler/,
      );
    }
    expect(await queue.getJob('r-1')).toBeUndefined();
  });
});

describe('getJob and getJobState across twins', () => {
  for (const setup of SETUPS) {
    it(`returns each twin's copy and state (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      await queue.add('push', { n: 1 }, { jobId: 'n-1' });
      const found = await queue.getJob('n-1');
      expect(found?.id).toBe('n-1');
      expect(found?.jobs.eu?.data).toEqual({ n: 1 });
      expect(found?.jobs.us?.data).toEqual({ n: 1 });
      expect(await queue.getJobState('n-1')).toEqual({ eu: 'waiting', us: 'waiting' });
      // A copy on one twin only (added there by plain BullMQ).
      await queue.queue('us').add('push', { n: 2 }, { jobId: 'n-2', delay: 60_000 });
      const half = await queue.getJob('n-2');
      expect(half?.jobs.eu).toBeUndefined();
      expect(half?.jobs.us?.data).toEqual({ n: 2 });
      expect(await queue.getJobState('n-2')).toEqual({ eu: 'unknown', us: 'delayed' });
      expect(await queue.getJob('nowhere')).toBeUndefined();
      // After the pair ran: completed on both, one with the other's result.
      pairedWorkers(where);
      await bothCompleted(queue, 'n-1');
      const done = await queue.getJob('n-1');
      expect(done?.jobs.eu?.returnvalue).toEqual(done?.jobs.us?.returnvalue);
    });
  }
});

describe('rate limiting (a Worker limiter on each twin)', () => {
  for (const setup of SETUPS) {
    it(`still runs every job once, both copies completing (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      const added = await queue.addBulk(
        Array.from({ length: 12 }, (_, i) => ({ name: 'push', data: { i } })),
      );
      const twins = pairedWorkers(where, {
        ms: 20,
        worker: () => ({ limiter: { max: 4, duration: 500 }, concurrency: 4 }),
      });
      for (const { id } of added) await bothCompleted(queue, id, 30_000);
      const perJob = count(twins.executions, (e) => e.id);
      expect(perJob.size).toBe(12);
      expect([...perJob.values()].every((n) => n === 1)).toBe(true);
      expect(twins.errors).toEqual([]);
    });
  }

  it("counts a twin's completed-by-twin copies against its own limit", async () => {
    const where = layout('one Redis');
    const queue = pairedQueue(where);
    const added = await queue.addBulk(
      Array.from({ length: 8 }, (_, i) => ({ name: 'push', data: { i } })),
    );
    // eu (no limiter) runs every job first.
    const eu = pairedWorkers(where, { twins: ['eu'] });
    await expect.poll(() => eu.executions.length, { timeout: 20_000 }).toBe(8);
    for (const { id } of added) {
      await expect
        .poll(() => queue.queue('eu').getJobState(id), { timeout: 20_000 })
        .toBe('completed');
    }
    // us, limited to 2 copies per 500 ms, only completes its copies from the records ...
    const started = Date.now();
    const us = pairedWorkers(where, {
      twins: ['us'],
      worker: () => ({ limiter: { max: 2, duration: 500 }, concurrency: 8 }),
    });
    for (const { id } of added) await bothCompleted(queue, id);
    expect(us.executions).toEqual([]);
    // ... yet at most 2 per 500 ms: 8 copies take at least three more windows.
    const last = Math.max(...us.completed.map((c) => c.at));
    expect(us.completed).toHaveLength(8);
    expect(last - started).toBeGreaterThanOrEqual(1_400);
  });
});

describe('flows across twins (PairedFlowProducer)', () => {
  for (const setup of SETUPS) {
    it(`adds the tree to both twins: each job runs once, each twin's parent after its children (${setup})`, async () => {
      const orders = layout(setup, uniquePrefix('orders'));
      const items = layout(setup, uniquePrefix('items'));
      const ordersQueue = pairedQueue(orders);
      const itemsQueue = pairedQueue(items);
      const flows = new PairedFlowProducer();
      closers.push(() => flows.close());
      const flow = await flows.add({
        name: 'order',
        queue: ordersQueue,
        data: {},
        opts: { jobId: 'order-1' },
        children: [1, 2, 3].map((n) => ({
          name: 'item',
          queue: itemsQueue,
          data: { n },
          opts: { jobId: `item-${n}` },
        })),
      });
      expect(flow.id).toBe('order-1');
      for (const twin of TWINS) {
        expect(flow.nodes[twin]?.job.id).toBe('order-1');
        expect(flow.nodes[twin]?.children?.map((c) => c.job.id).sort()).toEqual([
          'item-1',
          'item-2',
          'item-3',
        ]);
        expect(await ordersQueue.queue(twin).getJobState('order-1')).toBe('waiting-children');
      }
      const itemWorkers = pairedWorkers(items, {
        run: async (job) => ({ value: (job.data as { n: number }).n * 10 }),
      });
      const orderWorkers = pairedWorkers(orders, {
        run: async (job) => {
          const values = Object.values(await job.getChildrenValues()) as { value: number }[];
          return { sum: values.reduce((total, v) => total + v.value, 0), children: values.length };
        },
      });
      for (const n of [1, 2, 3]) await bothCompleted(itemsQueue, `item-${n}`);
      await bothCompleted(ordersQueue, 'order-1');
      const items1 = count(itemWorkers.executions, (e) => e.id);
      expect([...items1.keys()].sort()).toEqual(['item-1', 'item-2', 'item-3']);
      expect([...items1.values()]).toEqual([1, 1, 1]);
      expect(orderWorkers.executions.map((e) => e.id)).toEqual(['order-1']);
      // Every job of the tree had its executor chosen (the default), and that twin ran it.
      await expectChosenRan(ordersQueue, 'order-1', orderWorkers.executions);
      for (const n of [1, 2, 3])
        await expectChosenRan(itemsQueue, `item-${n}`, itemWorkers.executions);
      const order = await ordersQueue.getJob('order-1');
      for (const twin of TWINS) {
        expect(order?.jobs[twin]?.returnvalue).toEqual({ sum: 60, children: 3 });
      }
      expect([...itemWorkers.errors, ...orderWorkers.errors]).toEqual([]);
    });
  }

  for (const setup of SETUPS) {
    it(`fails each twin's parent copy when the child fails on both twins (failParentOnFailure, ${setup})`, async () => {
      const orders = layout(setup, uniquePrefix('orders'));
      const items = layout(setup, uniquePrefix('items'));
      const ordersQueue = pairedQueue(orders);
      const itemsQueue = pairedQueue(items);
      const flows = new PairedFlowProducer();
      closers.push(() => flows.close());
      await flows.add({
        name: 'order',
        queue: ordersQueue,
        opts: { jobId: 'order-f' },
        children: [
          { name: 'item', queue: itemsQueue, opts: { jobId: 'item-f', failParentOnFailure: true } },
        ],
      });
      const itemWorkers = pairedWorkers(items, {
        run: async () => {
          throw new Error('out of stock');
        },
      });
      const orderWorkers = pairedWorkers(orders);
      await expect
        .poll(() => ordersQueue.getJobState('order-f'), { timeout: 20_000, interval: 50 })
        .toEqual({ eu: 'failed', us: 'failed' });
      expect(await itemsQueue.getJobState('item-f')).toEqual({ eu: 'failed', us: 'failed' });
      // The child ran once per twin (the twin took the failed execution over), the parent never.
      expect(count(itemWorkers.executions, (e) => e.twin)).toEqual(
        new Map([
          ['eu', 1],
          ['us', 1],
        ]),
      );
      expect(orderWorkers.executions).toEqual([]);
    });
  }

  it("refuses a tree whose children are not on their parent's Redis, and opts.parent", async () => {
    const orders = layout('one Redis', uniquePrefix('orders'));
    const items = layout('two Redis', uniquePrefix('items'));
    const ordersQueue = pairedQueue(orders);
    const itemsQueue = pairedQueue(items);
    const flows = new PairedFlowProducer();
    closers.push(() => flows.close());
    await expect(
      flows.add({
        name: 'order',
        queue: ordersQueue,
        children: [{ name: 'item', queue: itemsQueue }],
      }),
    ).rejects.toThrow(/not on the server of the root queue .* one Redis/);
    await expect(
      flows.add({
        name: 'order',
        queue: ordersQueue,
        opts: { parent: { id: 'p', queue: 'bull:elsewhere' } } as never,
      }),
    ).rejects.toThrow(/opts\.parent/);
    for (const twin of TWINS) {
      expect(await ordersQueue.queue(twin).getJobCounts()).toMatchObject({ waiting: 0 });
    }
  });

  it("refuses PairedQueue.add with a parent that is one twin's copy (one Redis)", async () => {
    const orders = layout('one Redis', uniquePrefix('orders'));
    const items = layout('one Redis', uniquePrefix('items'));
    const ordersQueue = pairedQueue(orders);
    const itemsQueue = pairedQueue(items);
    await ordersQueue.add('order', {}, { jobId: 'order-1' });
    const parent = { id: 'order-1', queue: `bull:${orders.queueName('eu')}` };
    const error = await itemsQueue
      .add('item', {}, { jobId: 'item-1', parent })
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(
      /"opts\.parent" of job "item-1" names .*twin eu's copy .* PairedFlowProducer/,
    );
    expect(await itemsQueue.getJob('item-1')).toBeUndefined();
  });

  it("takes a parent of the same queue name on two Redis: each copy under its own twin's parent", async () => {
    const orders = layout('two Redis', uniquePrefix('orders'));
    const items = layout('two Redis', uniquePrefix('items'));
    const ordersQueue = pairedQueue(orders);
    const itemsQueue = pairedQueue(items);
    await ordersQueue.add('order', {}, { jobId: 'order-1' });
    const parent = { id: 'order-1', queue: `bull:${orders.base}` };
    const added = await itemsQueue.add('item', {}, { jobId: 'item-1', parent });
    for (const twin of TWINS) {
      expect(added.jobs[twin]?.parentKey).toBe(`bull:${orders.base}:order-1`);
      const child = await itemsQueue.queue(twin).getJob('item-1');
      expect(child?.parentKey).toBe(`bull:${orders.base}:order-1`);
    }
  });
});

describe('job options on both copies', () => {
  for (const setup of SETUPS) {
    it(`passes BullMQ's options to both copies, and the pair runs once (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      const started = Date.now();
      const passed = {
        delay: 400,
        attempts: 2,
        backoff: { type: 'fixed', delay: 100 },
        keepLogs: 5,
        stackTraceLimit: 3,
        removeOnFail: 5,
        sizeLimit: 1_000,
      };
      await queue.add('push', { n: 1 }, { jobId: 'opts-1', ...passed });
      await queue.add('push', { n: 2 }, { jobId: 'prio-1', priority: 5 });
      await queue.add('push', { n: 3 }, { jobId: 'lifo-1', lifo: true });
      // BullMQ counts a delay from the job's timestamp.
      await queue.add('push', { n: 4 }, { jobId: 'stamp-1', timestamp: started - 1_000 });
      for (const twin of TWINS) {
        const copy = await queue.queue(twin).getJob('opts-1');
        expect(copy?.opts).toMatchObject(passed);
        expect((await queue.queue(twin).getJob('stamp-1'))?.timestamp).toBe(started - 1_000);
        expect((await queue.queue(twin).getJob('lifo-1'))?.opts.lifo).toBe(true);
      }
      expect(await queue.getJobState('opts-1')).toEqual({ eu: 'delayed', us: 'delayed' });
      expect(await queue.getJobState('prio-1')).toEqual({ eu: 'prioritized', us: 'prioritized' });
      const twins = pairedWorkers(where);
      const ids = ['opts-1', 'prio-1', 'lifo-1', 'stamp-1'];
      for (const id of ids) await bothCompleted(queue, id);
      expect([...count(twins.executions, (e) => e.id).values()]).toEqual([1, 1, 1, 1]);
      const delayed = twins.executions.find((e) => e.id === 'opts-1');
      expect((delayed?.at ?? 0) - started).toBeGreaterThanOrEqual(400);
    });

    it(`removes both copies with removeOnComplete / removeOnFail (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      await queue.add('push', { fail: false }, { jobId: 'gone-1', removeOnComplete: true });
      await queue.add('push', { fail: true }, { jobId: 'gone-2', removeOnFail: true });
      const twins = pairedWorkers(where, {
        run: async (job) => {
          if ((job.data as { fail: boolean }).fail) throw new Error('refused by the gateway');
          return { ok: true };
        },
      });
      await expect
        .poll(() => twins.completed.filter((c) => c.id === 'gone-1').length, { timeout: 20_000 })
        .toBe(2);
      await expect
        .poll(() => queue.getJobState('gone-2'), { timeout: 20_000 })
        .toEqual({ eu: 'unknown', us: 'unknown' });
      expect(await queue.getJob('gone-1')).toBeUndefined();
      expect(await queue.getJob('gone-2')).toBeUndefined();
      const ran = count(twins.executions, (e) => e.id);
      expect(ran.get('gone-1')).toBe(1);
      // A job that always throws runs once per twin: the twin takes over a failed execution.
      expect(ran.get('gone-2')).toBe(2);
    });
  }

  it('refuses data over sizeLimit on both twins before writing either copy', async () => {
    const queue = pairedQueue(layout('two Redis'));
    await expect(
      queue.add('push', { text: 'x'.repeat(200) }, { jobId: 'big-1', sizeLimit: 100 }),
    ).rejects.toThrow(/exceeds the limit 100 bytes/);
    expect(await queue.getJob('big-1')).toBeUndefined();
  });
});

describe('queue-wide operations on both twins', () => {
  for (const setup of SETUPS) {
    it(`pause and resume both twins (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      await queue.pause();
      expect(await queue.isPaused()).toEqual({ eu: true, us: true });
      const { id } = await queue.add('push', {});
      const twins = pairedWorkers(where);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(twins.executions).toEqual([]);
      await queue.resume();
      expect(await queue.isPaused()).toEqual({ eu: false, us: false });
      await bothCompleted(queue, id);
      expect(twins.executions).toHaveLength(1);
    });

    it(`obliterate empties both twins and keeps the pairing: the next job still runs once (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      await queue.addBulk([1, 2, 3].map((n) => ({ name: 'push', data: { n } })));
      await queue.upsertJobScheduler('tick', { every: 60_000 });
      await queue.obliterate();
      for (const twin of TWINS) {
        const counts = await queue.queue(twin).getJobCounts('waiting', 'delayed', 'completed');
        expect(counts).toEqual({ waiting: 0, delayed: 0, completed: 0 });
        const key = `bull:${where.queueName(twin)}:paired`;
        expect(await where.server(twin).connect().exists(key)).toBe(1);
      }
      expect(await queue.getJobScheduler('tick')).toEqual({ eu: undefined, us: undefined });
      // Workers without a group option meet on one record per job only through that pairing.
      const { id } = await queue.add('push', {});
      const twins = pairedWorkers(where);
      await bothCompleted(queue, id);
      expect(twins.executions).toHaveLength(1);
    });

    it(`clean and drain act on both twins (${setup})`, async () => {
      const where = layout(setup);
      const queue = pairedQueue(where);
      const { id } = await queue.add('push', {});
      const twins = pairedWorkers(where);
      await bothCompleted(queue, id);
      expect(await queue.clean(0, 100, 'completed')).toEqual({ eu: [id], us: [id] });
      expect(await queue.getJob(id)).toBeUndefined();
      expect(twins.executions).toHaveLength(1);
      await queue.pause();
      await queue.addBulk([1, 2].map((n) => ({ name: 'push', data: { n } })));
      await queue.add('push', {}, { delay: 60_000 });
      await queue.drain(true);
      for (const twin of TWINS) {
        expect(await queue.queue(twin).getJobCounts('waiting', 'delayed')).toEqual({
          waiting: 0,
          delayed: 0,
        });
      }
    });
  }
});
