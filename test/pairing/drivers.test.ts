/**
 * Twins whose queues, workers, events and flows run on BullMQ 6's other Redis drivers:
 * node-redis clients (BullMQ adapts them itself) and Valkey GLIDE clients (wrapped by
 * bullmq's createValkeyGlideClient); the lock store stays on ioredis. The same pairing the
 * ioredis tests check: an add on both twins, each job run once, a takeover after the executor
 * fails, flows, job schedulers and paired events, on one Redis and on two.
 */
import { GlideClient, Logger } from '@valkey/valkey-glide';
import { createValkeyGlideClient, type Job, Worker } from 'bullmq';
import { createClient } from 'redis';
import { describe, expect, it } from 'vitest';
import {
  EXECUTOR_OPTION,
  PairedProcessor,
  PairedQueue,
  PairedQueueEvents,
} from '../../src/index.js';
import { useClosers } from '../support/closers.js';
import { useRedis } from '../support/file-redis.js';
import { type TestRedis, uniquePrefix } from '../support/redis.js';
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
const other = useRedis();
const closers = useClosers();

const SETUPS = ['one Redis', 'two Redis'] as const;
type Setup = (typeof SETUPS)[number];

// GLIDE's core logs every closed connection as a warning on stdout: errors only.
Logger.setLoggerConfig('error');

const DRIVERS = ['node-redis', 'valkey-glide'] as const;
type Driver = (typeof DRIVERS)[number];

/** A connected client of `driver` to `server`, as BullMQ takes it; closed after the test. */
async function driverClient(driver: Driver, server: TestRedis): Promise<unknown> {
  if (driver === 'valkey-glide') {
    const raw = await GlideClient.createClient({
      addresses: [{ host: server.host, port: server.port }],
    });
    closers.push(async () => raw.close());
    return createValkeyGlideClient(raw);
  }
  const client = createClient({ url: server.url });
  client.on('error', () => {});
  await client.connect();
  closers.push(async () => {
    if (client.isOpen) await client.close();
  });
  return client;
}

/**
 * Queue `<base>-eu`/`<base>-us` on one Redis, or `<base>` on each of two; the lock store is
 * the first. Every twin on `driver`, or (`ioredisTwin`) that one on ioredis.
 */
function layout(driver: Driver, setup: Setup, base = uniquePrefix('dr'), ioredisTwin?: Twin) {
  const server = (twin: Twin): TestRedis =>
    setup === 'two Redis' && twin === 'us' ? other() : redis();
  const queueName = (twin: Twin): string => (setup === 'one Redis' ? `${base}-${twin}` : base);
  const connection = async (twin: Twin): Promise<unknown> =>
    twin === ioredisTwin
      ? server(twin).connect({ maxRetriesPerRequest: null })
      : driverClient(driver, server(twin));
  return { base, server, queueName, connection };
}

async function pairedQueue(where: ReturnType<typeof layout>): Promise<PairedQueue> {
  const twins: Record<string, { connection: unknown; queue: string }> = {};
  for (const twin of TWINS) {
    twins[twin] = { connection: await where.connection(twin), queue: where.queueName(twin) };
  }
  const queue = new PairedQueue(where.base, { twins: twins as never });
  closers.push(() => queue.close());
  return queue;
}

/** One paired worker per twin, on node-redis; every execution is recorded. */
async function pairedWorkers(
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
    const worker = new Worker(where.queueName(twin), paired.processor, {
      connection: (await where.connection(twin)) as never,
    });
    worker.on('error', (err) => errors.push(err));
    paired.attach(worker);
    closers.push(async () => {
      await worker.close();
      await paired.close();
    });
  }
  return { executions, errors };
}

function chosenOf(job: Job | undefined): unknown {
  return (job?.opts as Record<string, unknown> | undefined)?.[EXECUTOR_OPTION];
}

describe.each(DRIVERS)('twins on %s clients', (driver) => {
  it('tells its server from its options: one queue name for two twins on that server is refused', async () => {
    const base = uniquePrefix('same');
    const client = await driverClient(driver, redis());
    const make = (eu: unknown) => () =>
      new PairedQueue(base, {
        twins: { eu: { connection: eu as never }, us: { connection: client as never } },
      });
    // The same server as ioredis options name it: both copies would be one job.
    expect(make({ host: redis().host, port: redis().port })).toThrow(
      /different queues: on one server give each twin its own `queue` name/,
    );
    // Another server under the same queue name: two twins, high availability.
    const apart = make({ host: other().host, port: other().port })();
    closers.push(() => apart.close());
    expect(apart.twins).toEqual(['eu', 'us']);
  });

  for (const setup of SETUPS) {
    it(`adds each job to both twins and runs it once, the twin's copy completed with its result (${setup})`, async () => {
      const where = layout(driver, setup);
      const queue = await pairedQueue(where);
      const workers = await pairedWorkers(where);
      const added = await expectEachRunOnce(queue, workers, 20);
      for (const { id } of added) {
        const ran = workers.executions.filter((e) => e.id === id);
        const copies = await queue.getJob(id);
        // The chosen executor (default 'balanced') is stamped on both copies, and it ran.
        expect(chosenOf(copies?.jobs.eu)).toBe(ran[0]?.twin);
        expect(chosenOf(copies?.jobs.us)).toBe(ran[0]?.twin);
      }
      // On one Redis the copies were written together (one MULTI): both are in that server.
      if (setup === 'one Redis') {
        const [first] = added;
        const client = redis().connect();
        for (const twin of TWINS) {
          expect(await client.exists(`bull:${where.queueName(twin)}:${first?.id}`)).toBe(1);
        }
      }
      expect(workers.errors).toEqual([]);
    });

    it(`takes a failed execution over on the twin, with a higher fence (${setup})`, async () => {
      const where = layout(driver, setup);
      const queue = await pairedQueue(where);
      const workers = await pairedWorkers(where, failingFirstRun());
      await expectTakenOver(queue, workers);
    });
  }

  it('pairs a twin on ioredis with a twin on this driver (two Redis)', async () => {
    const where = layout(driver, 'two Redis', uniquePrefix('mixed'), 'eu');
    const queue = await pairedQueue(where);
    const workers = await pairedWorkers(where);
    const added = await queue.addBulk(
      Array.from({ length: 10 }, (_, n) => ({ name: 'push', data: { n } })),
    );
    for (const { id } of added) await bothCompleted(queue, id);
    for (const { id } of added) {
      expect(workers.executions.filter((e) => e.id === id)).toHaveLength(1);
    }
    // Each twin ran its share: the chosen executor is spread over both drivers.
    expect(new Set(workers.executions.map((e) => e.twin))).toEqual(new Set(TWINS));
  });

  it('pairs a flow: parent and children on both twins, each run once (two Redis)', async () => {
    const items = layout(driver, 'two Redis');
    const orders = layout(driver, 'two Redis');
    const [itemsQueue, ordersQueue] = [await pairedQueue(items), await pairedQueue(orders)];
    await expectPairedFlow(
      itemsQueue,
      ordersQueue,
      (which, run) => pairedWorkers(which === 'items' ? items : orders, run),
      closers,
    );
  });

  it("pairs a job scheduler's iterations: one id on both twins, each run once (two Redis)", async () => {
    const where = layout(driver, 'two Redis');
    const queue = await pairedQueue(where);
    const workers = await pairedWorkers(where);
    const next = await queue.upsertJobScheduler('tick', { every: 500 }, { name: 'tick' });
    expect(next.eu?.id).toMatch(/^repeat:tick:\d+$/);
    expect(next.us?.id).toBe(next.eu?.id);
    await expect
      .poll(() => new Set(workers.executions.map((e) => e.id)).size, { timeout: 15_000 })
      .toBeGreaterThanOrEqual(2);
    expect(await queue.removeJobScheduler('tick')).toEqual({ eu: true, us: true });
    const ids = [...new Set(workers.executions.map((e) => e.id))];
    for (const id of ids) await bothCompleted(queue, id);
    for (const id of ids) expect(workers.executions.filter((e) => e.id === id)).toHaveLength(1);
  });

  it('tells one paired completion per job through PairedQueueEvents (two Redis)', async () => {
    const where = layout(driver, 'two Redis');
    const queue = await pairedQueue(where);
    const events = new PairedQueueEvents(where.base, {
      twins: Object.fromEntries(
        await Promise.all(
          TWINS.map(async (twin) => [
            twin,
            {
              connection: (await where.connection(twin)) as never,
              queue: where.queueName(twin),
            },
          ]),
        ),
      ),
      lockConnection: redis().connect(),
      lastEventId: '0-0',
    });
    events.on('error', () => {});
    closers.push(() => events.close());
    const completed: { jobId: string; executor: string | undefined }[] = [];
    const copies: string[] = [];
    events.on('completed', (args) => completed.push(args));
    events.on('copyCompleted', ({ twin }) => copies.push(twin));
    await events.waitUntilReady();
    await pairedWorkers(where);
    const { id } = await queue.add('push', {});
    await bothCompleted(queue, id);
    await expect.poll(() => copies.length, { timeout: 20_000 }).toBe(2);
    await expect.poll(() => completed.length, { timeout: 5_000 }).toBe(1);
    expect(completed[0]).toMatchObject({ jobId: id, executor: expect.stringMatching(/^(eu|us)$/) });
  });
});
