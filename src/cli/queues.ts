import type { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { TIMED_OUT, within } from '../lock/bounded.js';
import { CliError, EXIT } from './exit-codes.js';
import type { RedisPool } from './redis.js';
import { isUnavailable, redactUrl, unavailable } from './redis.js';
import { isPostgresUrl, type TwinQueue } from './target.js';

/** One twin's BullMQ copy of a job, as `inspect` reports it. */
export interface CopyReport {
  queue: string;
  redis: string;
  prefix: string;
  found: boolean;
  /** BullMQ's state: completed, failed, delayed, active, waiting, prioritized, …; null if absent. */
  state: string | null;
  attemptsMade: number | null;
  attemptsStarted: number | null;
  processedOn: number | null;
  finishedOn: number | null;
  failedReason: string | null;
  returnvalue: unknown;
  /** When a delayed copy comes back by itself (ms since the epoch), else null. */
  delayedUntil: number | null;
  /** Delayed after it was picked up and a pair record exists: parked by `PairedProcessor`. */
  parked: boolean;
}

let bullmq: Promise<typeof import('bullmq')> | undefined;

/** bullmq is an optional peer: only commands that read twin queues need it. */
function loadBullmq(): Promise<typeof import('bullmq')> {
  bullmq ??= import('bullmq').catch((err: unknown) => {
    throw new CliError(
      `reading twin queues needs the bullmq package (npm install bullmq): ${err instanceof Error ? err.message : String(err)}`,
      EXIT.failed,
    );
  });
  return bullmq;
}

/**
 * Runs `fn` on a read-only BullMQ `Queue` of `twin` (no meta write, no version probe); its
 * Redis client too, or undefined for a twin on PostgreSQL (BullMQ's PostgreSQL backend).
 */
export async function withQueue<T>(
  pool: RedisPool,
  twin: TwinQueue,
  fn: (queue: Queue, client: Redis | Cluster | undefined) => Promise<T>,
): Promise<T> {
  const { Queue, createPostgresBackend } = await loadBullmq();
  if (isPostgresUrl(twin.url)) {
    // The same deadline as a Redis twin's: a CLI answers or fails within seconds.
    const connection = { connectionString: twin.url, connectionTimeoutMillis: pool.timeoutMs };
    const queue = new Queue(
      twin.queue,
      { connection, skipVersionCheck: true } as never,
      createPostgresBackend as never,
    ) as unknown as Queue;
    queue.on('error', () => {});
    try {
      const answer = await within(fn(queue, undefined), pool.timeoutMs);
      if (answer === TIMED_OUT) throw new Error(`no answer within ${pool.timeoutMs} ms`);
      return answer;
    } catch (err) {
      throw isUnavailable(err) ? unavailable(twin.url, err, 'PostgreSQL') : err;
    } finally {
      await queue.close().catch(() => {});
    }
  }
  return pool.use(twin.url, async (client) => {
    const queue = new Queue(twin.queue, {
      connection: client,
      prefix: twin.prefix,
      skipMetasUpdate: true,
      skipVersionCheck: true,
    });
    queue.on('error', () => {}); // the failing call rejects with the same error
    try {
      return await fn(queue, client);
    } finally {
      await queue.close();
    }
  });
}

export function readCopy(
  pool: RedisPool,
  twin: TwinQueue,
  jobId: string,
  paired: boolean,
): Promise<CopyReport> {
  return withQueue(pool, twin, async (queue, client) => {
    const base = { queue: twin.queue, redis: redactUrl(twin.url), prefix: twin.prefix };
    const job = await queue.getJob(jobId);
    if (job === undefined) {
      return {
        ...base,
        found: false,
        state: null,
        attemptsMade: null,
        attemptsStarted: null,
        processedOn: null,
        finishedOn: null,
        failedReason: null,
        returnvalue: null,
        delayedUntil: null,
        parked: false,
      };
    }
    const state = await queue.getJobState(jobId);
    // BullMQ scores delayed jobs as (due time × 4096 + a sequence number).
    // On PostgreSQL the due time is not read (null): the state still says delayed.
    const score =
      state === 'delayed' && client !== undefined
        ? await client.zscore(queue.toKey('delayed'), jobId)
        : null;
    const delayedUntil = score === null ? null : Math.floor(Number(score) / 0x1000);
    return {
      ...base,
      found: true,
      state,
      attemptsMade: job.attemptsMade,
      attemptsStarted: job.attemptsStarted,
      processedOn: job.processedOn ?? null,
      finishedOn: job.finishedOn ?? null,
      failedReason: job.failedReason || null,
      returnvalue: job.returnvalue ?? null,
      delayedUntil,
      parked: state === 'delayed' && paired && job.attemptsStarted > 0,
    };
  });
}

export interface QueueCounts {
  queue: string;
  redis: string;
  prefix: string;
  counts: Record<string, number>;
}

export function countJobs(pool: RedisPool, twin: TwinQueue): Promise<QueueCounts> {
  return withQueue(pool, twin, async (queue) => ({
    queue: twin.queue,
    redis: redactUrl(twin.url),
    prefix: twin.prefix,
    counts: await queue.getJobCounts(),
  }));
}
