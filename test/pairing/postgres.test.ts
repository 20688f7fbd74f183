/**
 * A twin on PostgreSQL (BullMQ 6's `createPostgresBackend`), paired with a twin on Redis or
 * on PostgreSQL; the lock store stays on ioredis (Redis). The pairing tests the Redis twins
 * have: an add on both, each job run once, a takeover after the executor fails, job
 * schedulers and paired events.
 */
import { createPostgresBackend, type Job, Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { PairedProcessor, PairedQueue, PairedQueueEvents, PairedWorker } from '../../src/index.js';
import { useClosers } from '../support/closers.js';
import { usePostgres } from '../support/file-postgres.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import {
  bothCompleted,
  expectEachRunOnce,
  expectPairedFlow,
  expectTakenOver,
  failingFirstRun,
  TWINS,
  type Twin,
} from './backend-kit.js';

const redis = useRedis();
const postgres = usePostgres();
const closers = useClosers();

const PAIRS = ['Redis + PostgreSQL', 'PostgreSQL + PostgreSQL'] as const;
type Pair = (typeof PAIRS)[number];

/**
 * Where each twin lives: `us` always on PostgreSQL; `eu` on Redis, or on the same PostgreSQL
 * under its own queue name. The lock store is the Redis.
 */
function layout(pair: Pair, base = uniquePrefix('pg')) {
  const onPostgres = (twin: Twin): boolean => twin === 'us' || pair === 'PostgreSQL + PostgreSQL';
  const queueName = (twin: Twin): string =>
    pair === 'PostgreSQL + PostgreSQL' ? `${base}-${twin}` : base;
  const twin = (t: Twin) =>
    onPostgres(t)
      ? {
          connection: { connectionString: postgres().url, migrate: true },
          queue: queueName(t),
          backend: createPostgresBackend,
        }
      : { connection: { host: redis().host, port: redis().port }, queue: queueName(t) };
  return { base, onPostgres, queueName, twin };
}

function pairedQueue(where: ReturnType<typeof layout>): PairedQueue {
  const queue = new PairedQueue(where.base, {
    twins: Object.fromEntries(TWINS.map((t) => [t, where.twin(t)])) as never,
  });
  closers.push(() => queue.close());
  return queue;
}

function pairedWorkers(
  where: ReturnType<typeof layout>,
  run: (job: Job, twin: Twin) => Promise<unknown> = async (_job, twin) => ({ by: twin }),
) {
  const executions: { id: string; twin: Twin; fence: number }[] = [];
  const errors: Error[] = [];
  for (const twin of TWINS) {
    const paired = new PairedProcessor(
      async (job: Job, _token, _signal, pair) => {
        executions.push({ id: job.id as string, twin, fence: pair.fence });
        return run(job, twin);
      },
      { twin, lockConnection: redis().connect() },
    );
    paired.on('error', (err) => errors.push(err));
    const { connection, backend } = where.twin(twin) as {
      connection: unknown;
      backend?: typeof createPostgresBackend;
    };
    const worker =
      backend === undefined
        ? new Worker(where.queueName(twin), paired.processor, {
            connection: redis().connect({ maxRetriesPerRequest: null }),
          })
        : new Worker(
            where.queueName(twin),
            paired.processor,
            { connection: connection as never },
            backend,
          );
    worker.on('error', (err) => errors.push(err));
    paired.attach(worker as Worker);
    closers.push(async () => {
      await worker.close();
      await paired.close();
    });
  }
  return { executions, errors };
}

describe.each(PAIRS)('twins on %s', (pair) => {
  it('adds each job to both twins and runs it once, the twin’s copy completed with its result', async () => {
    const where = layout(pair);
    const queue = pairedQueue(where);
    const workers = pairedWorkers(where);
    await expectEachRunOnce(queue, workers, 20);
    // Both twins ran their share (the default executor is chosen per job).
    expect(new Set(workers.executions.map((e) => e.twin))).toEqual(new Set(TWINS));
    expect(workers.errors).toEqual([]);
  });

  it('takes a failed execution over on the twin, with a higher fence', async () => {
    const where = layout(pair);
    const queue = pairedQueue(where);
    await expectTakenOver(queue, pairedWorkers(where, failingFirstRun()));
  });

  it('pairs a flow: parent and children on both twins, each run once', async () => {
    const items = layout(pair);
    const orders = layout(pair);
    const [itemsQueue, ordersQueue] = [pairedQueue(items), pairedQueue(orders)];
    await expectPairedFlow(
      itemsQueue,
      ordersQueue,
      async (which, run) => pairedWorkers(which === 'items' ? items : orders, run),
      closers,
    );
  });
});

describe('a PostgreSQL twin', () => {
  it('runs as a PairedWorker given the backend factory, as BullMQ’s Worker takes it', async () => {
    const where = layout('PostgreSQL + PostgreSQL');
    const queue = pairedQueue(where);
    const ran: string[] = [];
    for (const twin of TWINS) {
      const worker = new PairedWorker(
        where.queueName(twin),
        async (job: Job) => {
          ran.push(`${job.id}@${twin}`);
          return { by: twin };
        },
        {
          connection: { connectionString: postgres().url, migrate: true } as never,
          paired: { twin, lockConnection: redis().connect() },
        },
        createPostgresBackend,
      );
      worker.on('error', () => {});
      closers.push(() => worker.close());
    }
    const { id } = await queue.add('push', {});
    await bothCompleted(queue, id);
    expect(ran).toHaveLength(1);
    const copies = await queue.getJob(id);
    for (const twin of TWINS)
      expect(copies?.jobs[twin]?.returnvalue).toMatchObject({ by: expect.any(String) });
  });

  it("pairs a job scheduler's iterations: one id on both twins, each run once", async () => {
    const where = layout('Redis + PostgreSQL');
    const queue = pairedQueue(where);
    const workers = pairedWorkers(where);
    const next = await queue.upsertJobScheduler('tick', { every: 500 }, { name: 'tick' });
    expect(next.eu?.id).toMatch(/^repeat:tick:\d+$/);
    expect(next.us?.id).toBe(next.eu?.id);
    await expect
      .poll(() => new Set(workers.executions.map((e) => e.id)).size, { timeout: 20_000 })
      .toBeGreaterThanOrEqual(2);
    expect(await queue.removeJobScheduler('tick')).toEqual({ eu: true, us: true });
    const ids = [...new Set(workers.executions.map((e) => e.id))];
    for (const id of ids) await bothCompleted(queue, id);
    for (const id of ids) expect(workers.executions.filter((e) => e.id === id)).toHaveLength(1);
  });

  it('tells one paired completion per job through PairedQueueEvents', async () => {
    const where = layout('Redis + PostgreSQL');
    const queue = pairedQueue(where);
    const events = new PairedQueueEvents(where.base, {
      twins: Object.fromEntries(TWINS.map((t) => [t, where.twin(t)])) as never,
      lockConnection: redis().connect(),
      // No lastEventId: it is a stream id on Redis ('0-0') and a number on PostgreSQL. Both
      // read from now on, and listen before the add below.
    });
    events.on('error', () => {});
    closers.push(() => events.close());
    const completed: { jobId: string }[] = [];
    const copies: string[] = [];
    events.on('completed', (args) => completed.push(args));
    events.on('copyCompleted', ({ twin }) => copies.push(twin));
    await events.waitUntilReady();
    pairedWorkers(where);
    const { id } = await queue.add('push', {});
    await bothCompleted(queue, id);
    await expect.poll(() => copies.length, { timeout: 20_000 }).toBe(2);
    await expect.poll(() => completed.length, { timeout: 5_000 }).toBe(1);
    expect(completed[0]).toMatchObject({ jobId: id });
  });
});
