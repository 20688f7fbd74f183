/**
 * One worker process of a region. Both regions run this same file; only the environment
 * differs: REGION, QUEUE_URL (the region's Redis), LOCK_URL (the shared lock store),
 * GATEWAY_URL, QUEUE, QUEUE_PREFIX. It reports each paired decision as a JSON line on
 * stdout and serves Prometheus metrics on an ephemeral port.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { PairedProcessor } from '../../src/index.js';
import { PairedMetrics } from '../../src/prometheus.js';
import { env, queueWorker, say } from '../../test/fixtures/io.js';
import type { PushRequest } from './gateway.js';

export interface Notification {
  device: string;
  text: string;
}

const region = env('REGION');
const gateway = env('GATEWAY_URL');
// QUEUE_PG: this region's queue is on PostgreSQL (a connection string); else on QUEUE_URL.
const queueConnection =
  process.env.QUEUE_PG === undefined
    ? new Redis(env('QUEUE_URL'), { maxRetriesPerRequest: null })
    : undefined;
const lockConnection = new Redis(env('LOCK_URL'));

const paired = new PairedProcessor<Notification, { status: string; fence: number }>(
  async (job, _token, signal, pair) => {
    const push: PushRequest = {
      id: job.id ?? '',
      device: job.data.device,
      fence: pair.fence,
      region,
    };
    const post = (path: string) =>
      fetch(`${gateway}${path}`, { method: 'POST', body: JSON.stringify(push), signal });
    // Claim the fence when the run starts: from now on the gateway refuses lower fences, so
    // a frozen executor that wakes after this takeover cannot send.
    const claim = await post('/claim');
    await claim.arrayBuffer(); // read to the end: the connection goes back to the pool
    if (claim.status !== 200) throw new Error(`gateway refused fence ${pair.fence} at claim`);
    pair.assertLease(); // our own clock says the lease still holds, right before the send
    const res = await post('/push');
    const body = (await res.json()) as { status: string };
    // 409: a higher fence has delivered it; this run lost its pair and must not count as sent.
    if (res.status !== 200) throw new Error(`gateway refused fence ${pair.fence}: ${body.status}`);
    return { status: body.status, fence: pair.fence };
  },
  { twin: region, lockConnection },
);
for (const event of ['executed', 'shadowed', 'takeover', 'twinCompleted', 'leaseLost'] as const) {
  paired.on(event, (e: object) => say({ event, ...e }));
}
paired.on('error', (err) => say({ event: 'error', message: err.message }));

const registry = new Registry();
new PairedMetrics({ registry }).observe(paired);
const metrics = createServer((_req, res) => {
  void registry
    .metrics()
    .then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text));
});
metrics.listen(0, '127.0.0.1');
await once(metrics, 'listening');

const worker = queueWorker(env('QUEUE'), paired.processor, () => queueConnection as Redis, {
  prefix: env('QUEUE_PREFIX'),
  concurrency: Number(process.env.CONCURRENCY ?? 10),
  // A killed process's active copies come back to the region's restarted workers within
  // seconds (BullMQ's defaults: 30 s); the twin never waits for this, it takes over at once.
  lockDuration: 5_000,
  stalledInterval: 2_500,
});
paired.attach(worker);
worker.on('error', () => {});
await worker.waitUntilReady();
// Listed among the region's live processes before any job: the other region runs the jobs
// chosen for this one only while none of its processes is.
await paired.waitUntilReady();
say({
  event: 'ready',
  pid: process.pid,
  metrics: `http://127.0.0.1:${(metrics.address() as AddressInfo).port}/metrics`,
});

process.once('SIGTERM', () => {
  void (async () => {
    await worker.close(); // hands running jobs over to the twin region
    await paired.close();
    metrics.close();
    await Promise.all([queueConnection?.quit(), lockConnection.quit()]);
    process.exit(0);
  })();
});
