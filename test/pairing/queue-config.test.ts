import { type Job, Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import {
  AddRefusedError,
  PairedProcessor,
  type PairedProcessorOptions,
  PairedQueue,
  PairingMismatchError,
} from '../../src/index.js';
import { useClosers } from '../support/closers.js';
import { useRedis } from '../support/file-redis.js';
import { type TestRedis, uniquePrefix } from '../support/redis.js';

// Two servers of our own (REDIS_URL would give both the same one).
const redis = useRedis({ killable: true });
const other = useRedis({ killable: true });
const closers = useClosers();

type Twin = 'eu' | 'us';
const TWINS = ['eu', 'us'] as const;

/** A PairedQueue over `<base>-eu` and `<base>-us` on one Redis (or the given queue names and servers). */
function pairedQueue(
  base: string,
  setup: { name?: string; queue?: (twin: Twin) => string; on?: (twin: Twin) => TestRedis } = {},
): PairedQueue {
  const queue = new PairedQueue(setup.name ?? base, {
    addTimeoutMs: 2_000,
    twins: Object.fromEntries(
      TWINS.map((twin) => {
        const server = setup.on?.(twin) ?? redis();
        return [
          twin,
          {
            connection: { host: server.host, port: server.port },
            queue: setup.queue?.(twin) ?? `${base}-${twin}`,
          },
        ];
      }),
    ),
  });
  closers.push(() => queue.close());
  return queue;
}

/**
 * One paired worker per twin in this process, paused until `start()`; every execution, every
 * `error` event and every failed copy is recorded.
 */
function pairedWorkers(
  base: string,
  setup: {
    options?: (twin: Twin) => Partial<PairedProcessorOptions>;
    queue?: (twin: Twin) => string;
    on?: (twin: Twin) => TestRedis;
  } = {},
) {
  const executions: { id: string; twin: Twin }[] = [];
  const errors: Record<Twin, Error[]> = { eu: [], us: [] };
  const failed: { id: string; twin: Twin; reason: string }[] = [];
  const workers: Worker[] = [];
  for (const twin of TWINS) {
    const server = setup.on?.(twin) ?? redis();
    const paired = new PairedProcessor(
      async (job: Job) => {
        executions.push({ id: job.id as string, twin });
        return { by: twin };
      },
      { twin, lockConnection: redis().connect(), ...setup.options?.(twin) },
    );
    paired.on('error', (err) => errors[twin].push(err));
    const worker = new Worker(setup.queue?.(twin) ?? `${base}-${twin}`, paired.processor, {
      connection: server.connect({ maxRetriesPerRequest: null }),
      autorun: false,
    });
    worker.on('error', () => {});
    worker.on('failed', (job, err) =>
      failed.push({ id: job?.id as string, twin, reason: err.message }),
    );
    paired.attach(worker);
    workers.push(worker);
    closers.push(async () => {
      await worker.close();
      await paired.close();
    });
  }
  return {
    executions,
    errors,
    failed,
    start(): void {
      for (const worker of workers) void worker.run();
    },
  };
}

async function stateOf(queue: PairedQueue, twin: Twin, id: string): Promise<string> {
  return queue.queue(twin).getJobState(id);
}

async function settled(queue: PairedQueue, id: string, states: Record<Twin, string>) {
  for (const twin of TWINS) {
    await expect
      .poll(() => stateOf(queue, twin, id), { timeout: 20_000, interval: 50 })
      .toBe(states[twin]);
  }
}

describe('twins with different queue names and no group option', () => {
  it('runs every job once: the workers take the group PairedQueue recorded in each queue', async () => {
    const base = uniquePrefix('nogroup');
    const queue = pairedQueue(base);
    const added = await queue.addBulk(
      Array.from({ length: 6 }, () => ({ name: 'push', data: {} })),
    );
    const twins = pairedWorkers(base);
    twins.start();
    for (const { id } of added) await settled(queue, id, { eu: 'completed', us: 'completed' });
    expect(twins.executions).toHaveLength(6);
    expect(new Set(twins.executions.map((e) => e.id)).size).toBe(6);
    expect([...twins.errors.eu, ...twins.errors.us]).toEqual([]);
    const record = JSON.parse((await redis().connect().get(`bull:${base}-eu:paired`)) as string);
    expect(record).toEqual({
      pairedQueue: base,
      group: base,
      twin: 'eu',
      twins: {
        eu: { queue: `${base}-eu`, prefix: 'bull' },
        us: { queue: `${base}-us`, prefix: 'bull' },
      },
    });
    expect(queue.group).toBe(base);
  });

  it('refuses the copies of a twin whose group contradicts the record, and says so before any job runs', async () => {
    const base = uniquePrefix('badgroup');
    const queue = pairedQueue(base);
    const { id } = await queue.add('push', {});
    const twins = pairedWorkers(base, {
      options: (twin) => (twin === 'eu' ? { group: 'push-typo' } : {}),
    });
    // The workers have not run: attach() read the record at startup.
    await expect.poll(() => twins.errors.eu.length, { timeout: 10_000 }).toBe(1);
    const [startup] = twins.errors.eu;
    expect(startup).toBeInstanceOf(PairingMismatchError);
    expect(startup).toMatchObject({
      code: 'ERR_PAIRED_MISCONFIGURED_GROUP',
      recorded: base,
      configured: 'push-typo',
      queue: `${base}-eu`,
    });
    expect(startup?.message).toContain(`group: '${base}'`);
    expect(twins.executions).toEqual([]);
    twins.start();
    await settled(queue, id, { eu: 'failed', us: 'completed' });
    expect(twins.executions).toEqual([{ id, twin: 'us' }]);
    expect(twins.failed).toEqual([{ id, twin: 'eu', reason: startup?.message }]);
    expect(twins.errors.eu).toHaveLength(1); // once per queue, not once per job
    expect(twins.errors.us).toEqual([]);
  });

  it("reports a twin option that names another twin than the queue's (the job still runs once)", async () => {
    const base = uniquePrefix('badtwin');
    const queue = pairedQueue(base);
    const { id } = await queue.add('push', {});
    const twins = pairedWorkers(base, { options: () => ({ twin: 'us' }) });
    twins.start();
    await settled(queue, id, { eu: 'completed', us: 'completed' });
    expect(twins.executions).toHaveLength(1);
    await expect.poll(() => twins.errors.eu.length, { timeout: 10_000 }).toBe(1);
    expect(twins.errors.eu[0]).toMatchObject({
      code: 'ERR_PAIRED_MISCONFIGURED_TWIN',
      recorded: 'eu',
      configured: 'us',
    });
    expect(twins.errors.us).toEqual([]);
  });

  for (const servers of ['one Redis', 'two Redis'] as const) {
    it(`refuses to re-pair the queues under another group, adding nothing (${servers})`, async () => {
      const base = uniquePrefix('repair');
      const on = (twin: Twin) => (servers === 'two Redis' && twin === 'us' ? other() : redis());
      await pairedQueue(base, { on }).add('push', {});
      const renamed = pairedQueue(base, { name: `${base}-renamed`, on });
      const error = await renamed.add('push', {}, { jobId: 'n-2' }).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(PairingMismatchError);
      expect(error).toMatchObject({
        code: 'ERR_PAIRED_MISCONFIGURED_GROUP',
        by: 'PairedQueue',
        recorded: base,
        configured: `${base}-renamed`,
      });
      for (const twin of TWINS) expect(await renamed.queue(twin).getJob('n-2')).toBeUndefined();
    });
  }
});

describe('twin connections', () => {
  /** The shape of a client BullMQ adapts but whose server PairedQueue cannot read (Bun's). */
  class BunRedisLike {
    async send(): Promise<unknown> {
      return null;
    }
    close(): void {}
  }

  it('refuses node-redis options (the client is taken) and clients whose server it cannot read, with a TypeError', () => {
    const good = { host: redis().host, port: redis().port };
    for (const [connection, problem] of [
      [{ socket: { host: '10.0.0.2', port: 6379 } }, /node-redis client options .*createClient/],
      [new BunRedisLike(), /a client of another Redis driver/],
    ] as const) {
      const make = () =>
        new PairedQueue('push', {
          twins: {
            eu: { connection: good, queue: 'push-eu' },
            us: { connection: connection as never, queue: 'push-us' },
          },
        });
      expect(make).toThrow(
        /PairedQueue: option "twins.us.connection" must be ioredis options, an ioredis Redis\/Cluster instance, a node-redis client \(createClient\) or a Valkey GLIDE client/,
      );
      expect(make).toThrow(problem);
    }
    // No connection was opened for the valid twin: the leak check after the test says so.
  });

  it('tells two servers given as urls apart: each holds its copy', async () => {
    const base = uniquePrefix('urls');
    const servers = { eu: redis(), us: other() };
    const queue = new PairedQueue(base, {
      twins: {
        eu: { connection: { url: servers.eu.url } },
        us: { connection: { url: servers.us.url } },
      },
    });
    closers.push(() => queue.close());
    const { id } = await queue.add('push', {});
    for (const twin of TWINS) {
      expect(await servers[twin].connect().exists(`bull:${base}:${id}`)).toBe(1);
    }
  });
});

describe('add returns what BullMQ did', () => {
  for (const servers of ['one Redis', 'two Redis'] as const) {
    it(`rejects a job whose parent does not exist with BullMQ's reason, adding nothing (${servers})`, async () => {
      const base = uniquePrefix('orphan');
      const queue =
        servers === 'one Redis'
          ? pairedQueue(base)
          : pairedQueue(base, {
              queue: () => base,
              on: (twin) => (twin === 'eu' ? redis() : other()),
            });
      const error = await queue
        .add(
          'push',
          {},
          { jobId: 'child-1', parent: { id: 'nope', queue: `bull:${base}-parents` } },
        )
        .catch((err: unknown) => err);
      expect(error).toBeInstanceOf(AddRefusedError);
      expect(error).toMatchObject({
        code: 'ERR_PAIRED_ADD_REFUSED',
        jobIds: ['child-1'],
        added: [],
        cause: { code: -5 },
      });
      const reason = `Missing key for parent job bull:${base}-parents:nope. addJob`;
      expect((error as AddRefusedError).cause).toHaveProperty('message', reason);
      expect((error as Error).message).toContain(reason);
      expect(Object.keys((error as AddRefusedError).refused)).toEqual(['eu', 'us']);
      for (const twin of TWINS) expect(await queue.queue(twin).getJob('child-1')).toBeUndefined();
    });
  }

  it("returns the existing job's id for a deduplicated add, and the pair runs once", async () => {
    const base = uniquePrefix('dedup');
    const queue = pairedQueue(base);
    const first = await queue.add('push', {}, { jobId: 'n-1', deduplication: { id: 'device-7' } });
    const second = await queue.add('push', {}, { jobId: 'n-2', deduplication: { id: 'device-7' } });
    expect(first.id).toBe('n-1');
    expect(second.id).toBe('n-1');
    expect(second.jobs.eu?.id).toBe('n-1');
    expect(second.jobs.us?.id).toBe('n-1');
    for (const twin of TWINS) expect(await queue.queue(twin).getJob('n-2')).toBeUndefined();
    const twins = pairedWorkers(base);
    twins.start();
    await settled(queue, 'n-1', { eu: 'completed', us: 'completed' });
    expect(twins.executions).toHaveLength(1);
    expect(twins.executions[0]?.id).toBe('n-1');
  });

  it('adds the job to both twins when only one of them deduplicates it', async () => {
    const base = uniquePrefix('dedup-half');
    const queue = pairedQueue(base);
    await queue.add('push', {}, { jobId: 'n-1', deduplication: { id: 'device-7' } });
    // As when n-1 finished on eu first: eu's deduplication key is gone, us's is not.
    await redis().connect().del(`bull:${base}-eu:de:device-7`);
    const added = await queue.add('push', {}, { jobId: 'n-2', deduplication: { id: 'device-7' } });
    expect(added.id).toBe('n-2');
    for (const twin of TWINS) expect(await stateOf(queue, twin, 'n-2')).toBe('waiting');
    const twins = pairedWorkers(base);
    twins.start();
    await settled(queue, 'n-2', { eu: 'completed', us: 'completed' });
    await settled(queue, 'n-1', { eu: 'completed', us: 'completed' });
    expect(twins.executions.map((e) => e.id).sort()).toEqual(['n-1', 'n-2']);
  });

  it("returns the existing job's id on two Redis servers too", async () => {
    const base = uniquePrefix('dedup-two');
    const queue = pairedQueue(base, {
      queue: () => base,
      on: (twin) => (twin === 'eu' ? redis() : other()),
    });
    await queue.add('push', {}, { jobId: 'n-1', deduplication: { id: 'device-7' } });
    const second = await queue.add('push', {}, { jobId: 'n-2', deduplication: { id: 'device-7' } });
    expect(second.id).toBe('n-1');
    for (const twin of TWINS) expect(await queue.queue(twin).getJob('n-2')).toBeUndefined();
  });
});
