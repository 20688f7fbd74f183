/**
 * The README's "Pair your BullMQ workers" example, runnable: both twins and the lock store
 * on one Redis, two queue names. `npx tsx examples/pair-your-workers.ts`.
 * test/examples.test.ts runs it and checks that the README shows these very lines.
 */
import { type Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { PairedProcessor, PairedQueue } from '../src/index.js';
import { startRedis } from '../test/support/redis.js';

interface Push {
  token: string;
  text: string;
}

async function sendPush(job: Job<Push>): Promise<{ delivered: string }> {
  return { delivered: `${job.data.text} -> ${job.data.token}` };
}

export async function main(url: string) {
  const connection = new Redis(url, { maxRetriesPerRequest: null });

  // README: begin
  // producer
  const queue = new PairedQueue('push', {
    twins: { a: { queue: 'push-a', connection }, b: { queue: 'push-b', connection } },
  });
  await queue.add('notify', { token: 'device-1', text: 'hello' }, { jobId: 'n-123' });

  // workers: one per twin (in real life, separate deployments running the same code)
  const workers = ['a', 'b'].map((twin) => {
    const paired = new PairedProcessor(sendPush, {
      twin,
      lockConnection: connection,
      group: 'push',
    });
    const worker = new Worker(`push-${twin}`, paired.processor, { connection, concurrency: 50 });
    paired.attach(worker); // worker.close() hands running jobs over to the other twin
    return { worker, paired };
  });
  // README: end

  const results = await Promise.all(
    ['a', 'b'].map(async (twin) => {
      for (;;) {
        // State first, then the job: a job read earlier would keep its old (empty) returnvalue.
        if ((await queue.queue(twin).getJobState('n-123')) === 'completed') {
          return { twin, returnvalue: (await queue.queue(twin).getJob('n-123'))?.returnvalue };
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }),
  );
  for (const { worker, paired } of workers) {
    await worker.close();
    await paired.close();
  }
  // Leave the Redis as we found it, so the example can run again.
  for (const twin of ['a', 'b']) await queue.queue(twin).obliterate({ force: true });
  await connection.del('paired:pair:{push:n-123}');
  await queue.close();
  await connection.quit();
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // Same Redis discovery as the tests: REDIS_URL, else a private redis-server, else Docker.
  const redis = await startRedis({ purpose: 'this example' });
  try {
    console.log(await main(redis.url));
  } finally {
    await redis.stop();
  }
}
