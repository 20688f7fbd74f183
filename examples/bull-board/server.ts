/**
 * Bull Board over both twin queues: every paired decision is a `job.log` line, so each job's
 * page tells which twin ran it, which one completed with the twin's result, and who took over.
 *   npx tsx examples/bull-board/server.ts        (PORT=3000 by default; Ctrl-C stops it)
 * test/examples/bull-board.test.ts opens these pages in a headless Chromium.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { type Job, type Queue, Worker } from 'bullmq';
import express from 'express';
import { Redis } from 'ioredis';
import { PairedProcessor, PairedQueue, type PairInfo } from '../../src/index.js';
import { startRedis } from '../../test/support/redis.js';

export const BOARD_PATH = '/admin/queues';

export interface Board {
  /** The board's home page, e.g. http://127.0.0.1:3000/admin/queues. */
  url: string;
  close(): Promise<void>;
}

/** Serves Bull Board for `queues` on 127.0.0.1 (`port` 0: any free port). */
export async function startBoard({ queues, port }: { queues: Queue[]; port: number }) {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: queues.map((queue) => new BullMQAdapter(queue)),
    serverAdapter,
    // Open job pages on their Logs tab, where the pairing lines are.
    options: { uiConfig: { boardTitle: 'bullmq-paired', jobDetails: { defaultTab: 'Logs' } } },
  });
  const app = express();
  app.use(BOARD_PATH, serverAdapter.getRouter());
  const server = createServer(app);
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  return {
    url: `http://127.0.0.1:${bound}${BOARD_PATH}`,
    async close() {
      server.closeAllConnections(); // a browser's keep-alive sockets would hold close() open
      await new Promise((resolve) => server.close(resolve));
    },
  } satisfies Board;
}

/** A job's page, as the board's own links build it: `<board>/queue/<queue>/<job id>`. */
export function jobUrl(board: Board, queueName: string, jobId: string): string {
  return `${board.url}/queue/${encodeURIComponent(queueName)}/${encodeURIComponent(jobId)}`;
}

interface Push {
  text: string;
  /** Throw on the first run (fence 1), so the other twin takes over. */
  flaky?: boolean;
}

interface Sent {
  sentBy: string;
  fence: number;
}

async function sendPush(
  job: Job<Push, Sent>,
  _token: string | undefined,
  signal: AbortSignal,
  pair: PairInfo,
): Promise<Sent> {
  if (job.data.flaky && pair.attempts === 1)
    throw new Error(`push gateway timed out on ${pair.twin}`);
  // Long enough that the other twin picks its copy up meanwhile and shadows it.
  await sleep(300, undefined, { signal });
  return { sentBy: pair.twin, fence: pair.fence };
}

export const TWINS = ['eu', 'us'] as const;

export interface Example {
  board: Board;
  queue: PairedQueue<Push, Sent>;
  /** Ids of the plain notifications and of the one that fails on its first run. */
  ids: { notifications: string[]; flaky: string };
  close(): Promise<void>;
}

/**
 * Twin queues `push-eu` and `push-us` on one Redis (also the lock store), one paired worker
 * each, four notifications (one fails on its first twin), then the board once all settled.
 */
export async function startExample({ connection, port }: { connection: Redis; port: number }) {
  const queue = new PairedQueue<Push, Sent>('push', {
    twins: Object.fromEntries(TWINS.map((twin) => [twin, { queue: `push-${twin}`, connection }])),
  });
  const workers = TWINS.map((twin) => {
    const paired = new PairedProcessor(sendPush, {
      twin,
      lockConnection: connection,
      group: 'push',
      jobLogs: true, // the pairing lines on each job's Logs tab
    });
    const worker = new Worker<Push, Sent>(`push-${twin}`, paired.processor, { connection });
    paired.attach(worker);
    return { worker, paired };
  });
  // No jobId: PairedQueue gives each job a UUID, so a rerun on the same Redis starts afresh.
  const added = await queue.addBulk([
    { name: 'notify', data: { text: 'hello' } },
    { name: 'notify', data: { text: 'your order shipped' } },
    { name: 'notify', data: { text: 'new message' } },
    { name: 'notify', data: { text: 'flaky gateway', flaky: true } },
  ]);
  const ids = added.map((job) => job.id);
  const stopWorkers = async (): Promise<void> => {
    for (const { worker, paired } of workers) {
      await worker.close();
      await paired.close();
    }
    await queue.close();
  };
  let board: Board;
  try {
    await untilSettled(queue, ids);
    board = await startBoard({ queues: TWINS.map((twin) => queue.queue(twin)), port });
  } catch (err) {
    await stopWorkers(); // e.g. the port is taken: leave nothing running
    throw err;
  }
  return {
    board,
    queue,
    ids: { notifications: ids.slice(0, 3), flaky: ids[3] as string },
    async close() {
      await board.close();
      await stopWorkers();
    },
  } satisfies Example;
}

/** Waits until every copy on both twins is completed or failed (no retries here). */
async function untilSettled(queue: PairedQueue<Push, Sent>, ids: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (const twin of TWINS) {
    for (const id of ids) {
      while (!['completed', 'failed'].includes(await queue.queue(twin).getJobState(id))) {
        if (Date.now() > deadline) throw new Error(`job ${id} on ${twin} did not settle in 30 s`);
        await sleep(50);
      }
    }
  }
}

/** Each copy's page and the pairing lines it shows. */
async function printPages({ board, queue, ids }: Example): Promise<void> {
  console.log(`Bull Board: ${board.url}\n`);
  for (const id of [...ids.notifications, ids.flaky]) {
    for (const twin of TWINS) {
      const state = await queue.queue(twin).getJobState(id);
      console.log(`${jobUrl(board, `push-${twin}`, id)}  (${state})`);
      for (const line of (await queue.queue(twin).getJobLogs(id)).logs) console.log(`  ${line}`);
    }
  }
  console.log('\nThe same lines are on each job page, under Logs. Ctrl-C stops.');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // Same Redis discovery as the demo: REDIS_URL, else a private redis-server, else Docker.
  const redis = await startRedis({ purpose: 'the Bull Board example' });
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  let example: Example | undefined;
  // Workers hand running jobs over, and a private redis-server must not outlive us.
  const stop = async (code: number): Promise<void> => {
    await example?.close();
    await connection.quit();
    await redis.stop();
    process.exit(code);
  };
  process.once('SIGINT', () => stop(0)).once('SIGTERM', () => stop(0));
  try {
    example = await startExample({ connection, port: Number(process.env.PORT ?? 3000) });
    await printPages(example);
  } catch (err) {
    console.error(err);
    await stop(1);
  }
}
