/**
 * Three twins (three regions' queues, here three queue names on one Redis): one executes, the
 * other two shadow it; each takeover goes to exactly one of the survivors with the fence one
 * higher, and the last twin standing finishes the job. Real processes, real SIGKILL. And a
 * flow (PairedFlowProducer) across three twins.
 */
import { type Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PairedFlowProducer, PairedProcessor, PairedQueue } from '../../src/index.js';
import { FixtureProcess } from '../support/child.js';
import { fenceAbove, firstRunFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { executions, type LedgerEntry } from './pairing-kit.js';

const redis = useRedis();
const apRedis = useRedis();
const usRedis = useRedis();
const TWINS = ['eu', 'us', 'ap'] as const;
type Region = (typeof TWINS)[number];

const children: FixtureProcess[] = [];
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill()));
  for (const close of closers.splice(0)) await close().catch(() => {});
});

function setUp() {
  const base = uniquePrefix('three');
  const ledgerKey = `${base}:ledger`;
  const start = async (twin: Region): Promise<FixtureProcess> => {
    const child = new FixtureProcess('twin-worker.ts', {
      TWIN: twin,
      QUEUE: `${base}-${twin}`,
      GROUP: base,
      QUEUE_URL: redis().url,
      LOCK_URL: redis().url,
      LEDGER_URL: redis().url,
      LEDGER: ledgerKey,
      HOLD_PREFIX: `${base}:`,
      LOCK_PREFIX: `${base}-lock`,
      QUIET: '0',
    });
    children.push(child);
    await child.next('ready');
    return child;
  };
  const connection = { host: redis().host, port: redis().port };
  const queue = new PairedQueue(base, {
    twins: Object.fromEntries(TWINS.map((t) => [t, { connection, queue: `${base}-${t}` }])),
  });
  closers.push(() => queue.close());
  const client = new Redis(redis().url);
  closers.push(() => client.quit());
  const ledger = async (): Promise<LedgerEntry[]> =>
    (await client.lrange(ledgerKey, 0, -1)).map((raw) => JSON.parse(raw) as LedgerEntry);
  return { base, start, queue, client, ledger };
}

describe('three twins', () => {
  it('runs a job once while all three live, each twin completing with the one result', async () => {
    const { start, queue, ledger } = setUp();
    await Promise.all(TWINS.map(start));
    const { id } = await queue.add('n', { ms: 5 });
    await vi.waitFor(
      async () => {
        for (const t of TWINS) expect(await queue.queue(t).getJobState(id)).toBe('completed');
      },
      { timeout: 20_000, interval: 50 },
    );
    const ran = executions(await ledger(), id);
    expect(ran).toHaveLength(1);
    const results = await Promise.all(
      TWINS.map(async (t) => (await queue.queue(t).getJob(id))?.returnvalue),
    );
    for (const result of results)
      expect(result).toEqual({ by: ran[0]?.twin, fence: firstRunFence });
  });

  it('two successive SIGKILLs: each takeover goes to one survivor with a higher fence, and the last twin finishes', async () => {
    const { base, start, queue, client, ledger } = setUp();
    const processes = Object.fromEntries(
      await Promise.all(TWINS.map(async (t) => [t, await start(t)] as const)),
    ) as Record<Region, FixtureProcess>;
    const { id } = await queue.add('n', { holdUntil: 'go' });
    const runner = async (count: number): Promise<LedgerEntry> => {
      await vi.waitFor(
        async () => expect(executions(await ledger(), id).length).toBeGreaterThanOrEqual(count),
        { timeout: 20_000, interval: 50 },
      );
      return executions(await ledger(), id)[count - 1] as LedgerEntry;
    };
    const first = await runner(1);
    expect(first.fence).toEqual(firstRunFence); // the chosen twin's claim
    await processes[first.twin as Region].kill('SIGKILL');
    const second = await runner(2);
    expect(second.fence).toEqual(fenceAbove(Number(first.fence)));
    expect(second.twin).not.toBe(first.twin);
    await processes[second.twin as Region].kill('SIGKILL');
    const third = await runner(3);
    expect(third.fence).toEqual(fenceAbove(Number(second.fence)));
    const last = TWINS.find((t) => t !== first.twin && t !== second.twin) as Region;
    expect(third.twin).toBe(last);
    await client.set(`${base}:go`, '1', 'EX', 600);
    await vi.waitFor(
      async () => expect(await queue.queue(last).getJobState(id)).toBe('completed'),
      { timeout: 20_000, interval: 50 },
    );
    expect((await queue.queue(last).getJob(id))?.returnvalue).toEqual({
      by: last,
      fence: Number(third.fence),
    });
    // Exactly three runs: never two survivors at once.
    expect(executions(await ledger(), id).map((e) => [e.twin, e.fence])).toEqual([
      [first.twin, first.fence],
      [second.twin, second.fence],
      [last, third.fence],
    ]);
  });
});

describe('flows across three twins (PairedFlowProducer)', () => {
  for (const setup of ['one Redis', 'three Redis'] as const) {
    it(`adds the tree to every twin: each job runs once, each twin's parent after its children (${setup})`, async () => {
      const serverOf = (twin: Region) =>
        setup === 'one Redis' ? redis() : { eu: redis(), us: usRedis(), ap: apRedis() }[twin];
      const pairedQueue = (base: string): PairedQueue => {
        const queue = new PairedQueue(base, {
          twins: Object.fromEntries(
            TWINS.map((t) => {
              const server = serverOf(t);
              return [
                t,
                { connection: { host: server.host, port: server.port }, queue: `${base}-${t}` },
              ];
            }),
          ),
        });
        closers.push(() => queue.close());
        return queue;
      };
      const orders = pairedQueue(uniquePrefix('orders'));
      const items = pairedQueue(uniquePrefix('items'));
      const flows = new PairedFlowProducer();
      closers.push(() => flows.close());
      const flow = await flows.add({
        name: 'order',
        queue: orders,
        opts: { jobId: 'order-1' },
        children: [1, 2].map((n) => ({
          name: 'item',
          queue: items,
          data: { n },
          opts: { jobId: `item-${n}` },
        })),
      });
      expect(Object.keys(flow.nodes).sort()).toEqual(['ap', 'eu', 'us']);
      const executions: string[] = [];
      for (const twin of TWINS) {
        for (const [queue, run] of [
          [items, async (job: Job) => ({ value: (job.data as { n: number }).n * 10 })],
          [
            orders,
            async (job: Job) => {
              const values = Object.values(await job.getChildrenValues()) as { value: number }[];
              return { sum: values.reduce((total, v) => total + v.value, 0) };
            },
          ],
        ] as const) {
          const paired = new PairedProcessor(
            async (job: Job) => {
              executions.push(job.id as string);
              return run(job);
            },
            { twin, lockConnection: redis().connect(), group: queue.name },
          );
          const worker = new Worker(`${queue.name}-${twin}`, paired.processor, {
            connection: serverOf(twin).connect({ maxRetriesPerRequest: null }),
          });
          worker.on('error', () => {});
          paired.attach(worker);
          closers.push(async () => {
            await worker.close();
            await paired.close();
          });
        }
      }
      await vi.waitFor(
        async () => {
          const states = await orders.getJobState('order-1');
          expect(states).toEqual({ eu: 'completed', us: 'completed', ap: 'completed' });
        },
        { timeout: 30_000, interval: 100 },
      );
      // Each job of the tree ran once across the three twins.
      expect(executions.sort()).toEqual(['item-1', 'item-2', 'order-1']);
      const order = await orders.getJob('order-1');
      for (const twin of TWINS) expect(order?.jobs[twin]?.returnvalue).toEqual({ sum: 30 });
    });
  }
});
