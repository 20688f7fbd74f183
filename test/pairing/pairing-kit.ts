import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, expect, vi } from 'vitest';
import { type ExecutorChoice, PairedQueue } from '../../src/index.js';
import { FixtureProcess } from '../support/child.js';
import type { TestRedis } from '../support/redis.js';
import { uniquePrefix } from '../support/redis.js';

export type Twin = 'eu' | 'us';

export interface LedgerEntry {
  id: string;
  twin: Twin;
  fence: number;
  pid: number;
  phase: 'start' | 'end';
  start: number;
  end?: number;
}

export interface WorkData {
  ms?: number;
  failOn?: string;
  /** The run goes on until this ledger key is set (see `release`). */
  holdUntil?: string;
}

export type WorkResult = { by: Twin; fence: number };
export type TestQueue = PairedQueue<WorkData, WorkResult>;

export interface TwinsSetup {
  /** Redis of each twin's queue (the same one, or one each). */
  queueRedis: Record<Twin, () => TestRedis>;
  lockRedis: () => TestRedis;
  /** Where the execution ledger lives. Default: the lock store. */
  ledgerRedis?: () => TestRedis;
}

/**
 * Per test: unique queue names and key prefixes, worker processes per twin, a PairedQueue,
 * and the execution ledger. Everything is closed or killed after the test.
 */
export function twinsKit(setup: TwinsSetup) {
  const children: FixtureProcess[] = [];
  const queues: TestQueue[] = [];
  const clients: Redis[] = [];
  let names = { queue: '', lockPrefix: '', ledger: '' };

  beforeEach(() => {
    const base = uniquePrefix('q');
    names = { queue: base, lockPrefix: `${base}-lock`, ledger: `${base}:ledger` };
  });
  afterEach(async () => {
    await Promise.all(children.splice(0).map((child) => child.kill()));
    await Promise.all(queues.splice(0).map((queue) => queue.close()));
    await Promise.all(
      clients.splice(0).map((client) => client.quit().catch(() => client.disconnect())),
    );
  });

  const ledgerRedis = setup.ledgerRedis ?? setup.lockRedis;
  const sameRedis = (): boolean => setup.queueRedis.eu() === setup.queueRedis.us();
  /** Queue names per twin: `<base>-eu`/`<base>-us` on one Redis, `<base>` on two. */
  const queueName = (twin: Twin): string => (sameRedis() ? `${names.queue}-${twin}` : names.queue);

  return {
    get names() {
      return names;
    },
    async startWorker(twin: Twin, env: Record<string, string> = {}): Promise<FixtureProcess> {
      const child = new FixtureProcess('twin-worker.ts', {
        TWIN: twin,
        QUEUE: queueName(twin),
        GROUP: names.queue,
        QUEUE_URL: setup.queueRedis[twin]().url,
        LOCK_URL: setup.lockRedis().url,
        LEDGER_URL: ledgerRedis().url,
        LEDGER: names.ledger,
        HOLD_PREFIX: `${names.queue}:`,
        LOCK_PREFIX: names.lockPrefix,
        // These tests read the job.log lines of paired decisions (off by default).
        JOB_LOGS: '1',
        ...env,
      });
      children.push(child);
      await child.next('ready');
      return child;
    },
    /**
     * `executor`: PairedQueue's option of that name. 'first' unless given: these tests start
     * one twin before the other to say which one executes ('default': the library's own).
     */
    pairedQueue(executor: ExecutorChoice | 'default' = 'first'): TestQueue {
      // Fail fast rather than queue commands while a test has a Redis killed.
      const connection = (twin: Twin) => {
        const redis = setup.queueRedis[twin]();
        return {
          host: redis.host,
          port: redis.port,
          maxRetriesPerRequest: 1,
          enableOfflineQueue: false,
        };
      };
      const queue: TestQueue = new PairedQueue(names.queue, {
        addTimeoutMs: 1_000,
        ...(executor === 'default' ? {} : { executor }),
        twins: {
          eu: { connection: connection('eu'), queue: queueName('eu') },
          us: { connection: connection('us'), queue: queueName('us') },
        },
      });
      for (const twin of ['eu', 'us'] as const) queue.queue(twin).on('error', () => {});
      queues.push(queue);
      return queue;
    },
    /** Lets runs holding until `key` finish (this test's key: under its unique prefix). */
    async release(key: string): Promise<void> {
      const client = new Redis(ledgerRedis().url);
      clients.push(client);
      await client.set(`${names.queue}:${key}`, '1', 'EX', 600);
    },
    /** Waits until `count` executions of `id` are in the ledger (a run writes it after its event). */
    async waitForExecutions(id: string, count: number): Promise<void> {
      await vi.waitFor(
        async () => {
          expect(executions(await this.ledger(), id).length).toBeGreaterThanOrEqual(count);
        },
        { timeout: 10_000, interval: 50 },
      );
    },
    /**
     * Waits until `twin`'s worker process is listed in the lock store (state, polled), then
     * for its first second to pass: a chosen twin's process claims before it runs what was
     * added within 1 s of its listing (LISTED_MARGIN_MS, a rule of time, hence the wait).
     */
    async pastFirstSecond(twin: Twin): Promise<void> {
      const client = new Redis(setup.lockRedis().url);
      clients.push(client);
      const key = `${names.lockPrefix}:siblings:${twin}:${queueName(twin)}`;
      await vi.waitFor(async () => expect(await client.zcard(key)).toBeGreaterThan(0), {
        timeout: 10_000,
        interval: 20,
      });
      await new Promise((resolve) => setTimeout(resolve, 1_100));
    },
    async ledger(): Promise<LedgerEntry[]> {
      const client = new Redis(ledgerRedis().url);
      clients.push(client);
      return (await client.lrange(names.ledger, 0, -1)).map(
        (raw) => JSON.parse(raw) as LedgerEntry,
      );
    },
  };
}

/** Waits until the given twins' copies of `id` are in `state`, and returns them. */
export async function copiesIn(
  queue: TestQueue,
  id: string,
  twins: readonly Twin[] = ['eu', 'us'],
  state = 'completed',
  timeout = 20_000,
): Promise<Record<Twin, Job<WorkData, WorkResult>>> {
  return vi.waitFor(
    async () => {
      const jobs: Partial<Record<Twin, Job<WorkData, WorkResult>>> = {};
      for (const twin of twins) {
        expect(await queue.queue(twin).getJobState(id), `${twin} copy of ${id}`).toBe(state);
        // Read the job only after its state is reached: a job read earlier keeps the old
        // returnvalue (BullMQ moves state and result together, in one script).
        jobs[twin] = await queue.queue(twin).getJob(id);
      }
      return jobs as Record<Twin, Job<WorkData, WorkResult>>;
    },
    { timeout, interval: 50 },
  );
}

export function executions(ledger: LedgerEntry[], id?: string): LedgerEntry[] {
  return ledger.filter((e) => e.phase === 'start' && (id === undefined || e.id === id));
}
