/**
 * `npm run demo`: push notifications served by identical worker deployments in two regions,
 * `eu` and `us`, each with its own Redis, sharing a lock store. Midway every `eu` worker
 * process is SIGKILLed, later restarted. A local push gateway counts what reached devices.
 *   npm run demo -- --count 2000 --kill-at 0.5 --restart-after 3000 --no-kill
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { PairedQueue } from '../../src/index.js';
import { RedisUnavailableError, startRedis, type TestRedis } from '../../test/support/redis.js';
import { PushGateway } from './gateway.js';
import { LiveView } from './live-view.js';
import type { Notification } from './region-worker.js';
import { Region, type RegionCounts } from './regions.js';

export interface PushDemoOptions {
  count: number;
  /** SIGKILL the eu region once this share of notifications is delivered; null: no kill. */
  killAt: number | null;
  restartAfterMs: number;
  processesPerRegion?: number;
  /** Notifications added per second. */
  rate?: number;
  live?: boolean;
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface PushDemoSummary {
  notifications: number;
  delivered: number;
  duplicatesSuppressed: number;
  staleRejected: number;
  lost: number;
  regions: Record<string, RegionCounts & { copiesCompleted: number }>;
  takeovers: number;
  takeoverP50Ms: number | null;
  takeoverP99Ms: number | null;
  killedAtMs: number | null;
  seconds: number;
  /** A few lines of one worker's /metrics, as Prometheus would scrape them. */
  metrics: string[];
}

const DEMO = 'the demo (npm run demo)';

export async function runPushDemo(options: PushDemoOptions): Promise<PushDemoSummary> {
  const { count, killAt, restartAfterMs } = options;
  const log = options.log ?? console.log;
  const redis: Record<'eu' | 'us' | 'lock', TestRedis> = {
    eu: await startRedis({ purpose: DEMO }),
    us: await startRedis({ purpose: DEMO }),
    lock: await startRedis({ purpose: DEMO }),
  };
  const gateway = new PushGateway();
  const gatewayUrl = await gateway.start();
  // A REDIS_URL serves all three: then the regions need prefixes of their own.
  const shared = redis.eu.url === redis.us.url;
  const run = randomBytes(3).toString('hex');
  const prefix = (region: string) => (shared ? `demo-${run}-${region}` : 'bull');
  const regions = (['eu', 'us'] as const).map(
    (name) =>
      new Region(name, options.processesPerRegion ?? 2, {
        QUEUE_URL: redis[name].url,
        LOCK_URL: redis.lock.url,
        GATEWAY_URL: gatewayUrl,
        QUEUE: 'push',
        QUEUE_PREFIX: prefix(name),
      }),
  );
  const [eu, us] = regions as [Region, Region];
  const queue = new PairedQueue<Notification>('push', {
    twins: {
      eu: { connection: { host: redis.eu.host, port: redis.eu.port }, prefix: prefix('eu') },
      us: { connection: { host: redis.us.host, port: redis.us.port }, prefix: prefix('us') },
    },
  });
  const view = new LiveView(count, regions, options.live ?? false);
  const began = Date.now();
  let killedAt: number | null = null;
  try {
    await Promise.all(regions.map((r) => r.start()));
    log(
      `regions up: eu (Redis ${redis.eu.url}), us (Redis ${redis.us.url}); lock store ${redis.lock.url}`,
    );
    log(`metrics: ${[...eu.metricsUrls, ...us.metricsUrls].join('  ')}`);
    const produced = produce(queue, count, options.rate ?? 400);
    const copies = async (twin: string) =>
      (await queue.queue(twin).getJobCounts('completed')).completed ?? 0;
    const deadline = began + (options.timeoutMs ?? 120_000);
    let restarted: Promise<void> | undefined;
    for (;;) {
      const stats = gateway.stats();
      view.update(regions, stats);
      if (killAt !== null && killedAt === null && stats.delivered >= count * killAt) {
        killedAt = Date.now();
        await eu.kill();
        view.note(
          `SIGKILL every eu worker process at ${stats.delivered} delivered; restart in ${restartAfterMs} ms`,
          log,
        );
        restarted = sleep(restartAfterMs).then(async () => {
          await eu.start();
          view.note(
            'eu workers restarted: their copies complete with us results, without sending',
            log,
          );
        });
      }
      const done = (await produced.done()) && stats.delivered >= count;
      if (done && (await copies('eu')) >= count && (await copies('us')) >= count) break;
      if (Date.now() > deadline) {
        view.note(
          `stopped after ${options.timeoutMs ?? 120_000} ms without every copy completed`,
          log,
        );
        break;
      }
      await sleep(100);
    }
    await restarted;
    view.update(regions, gateway.stats());
    view.stop();
    return await summarize();
  } finally {
    view.stop();
    await Promise.all(regions.map((r) => r.kill('SIGTERM')));
    await queue.close();
    await gateway.close();
    await Promise.all(Object.values(redis).map((r) => r.stop()));
  }

  async function summarize(): Promise<PushDemoSummary> {
    const stats = gateway.stats();
    const latency = hdr.build();
    const after =
      killedAt === null ? [] : us.takeovers.filter((t) => Number(t.at) >= (killedAt as number));
    for (const t of after) latency.recordValue(Math.max(1, Number(t.at) - (killedAt as number)));
    const regionSummary: PushDemoSummary['regions'] = {};
    for (const region of regions) {
      const completed = (await queue.queue(region.name).getJobCounts('completed')).completed ?? 0;
      regionSummary[region.name] = { ...region.counts, copiesCompleted: completed };
    }
    const metricsText = await fetch(us.metricsUrls[0] ?? '').then((r) => r.text());
    const summary: PushDemoSummary = {
      notifications: count,
      ...stats,
      lost: count - gateway.deliveredIds().size,
      regions: regionSummary,
      takeovers: eu.counts.takenOver + us.counts.takenOver,
      takeoverP50Ms: after.length ? latency.getValueAtPercentile(50) : null,
      takeoverP99Ms: after.length ? latency.getValueAtPercentile(99) : null,
      killedAtMs: killedAt === null ? null : killedAt - began,
      seconds: (Date.now() - began) / 1000,
      metrics: metricsText
        .split('\n')
        .filter((l) => /^bullmq_paired_(executions|takeovers|twin_completions)_total\{/.test(l)),
    };
    latency.destroy();
    return summary;
  }
}

/** Adds notifications at `rate` per second through PairedQueue, in the background. */
function produce(queue: PairedQueue<Notification>, count: number, rate: number) {
  let added = 0;
  const batch = Math.max(1, Math.round(rate / 10));
  const running = (async () => {
    while (added < count) {
      const n = Math.min(batch, count - added);
      await queue.addBulk(
        Array.from({ length: n }, (_, i) => ({
          name: 'push',
          data: { device: `device-${(added + i) % 500}`, text: `hello #${added + i}` },
        })),
      );
      added += n;
      await sleep(100);
    }
  })();
  return {
    /** True once every notification is added; rethrows if adding failed. */
    async done(): Promise<boolean> {
      if (added < count) return false;
      await running;
      return true;
    },
  };
}

export function printSummary(s: PushDemoSummary, print = console.log): void {
  const rows: [string, string | number][] = [
    ['notifications sent', s.notifications],
    ['delivered to devices', s.delivered],
    ['duplicates suppressed by the fence check', s.duplicatesSuppressed],
    ['stale fences refused', s.staleRejected],
    ['lost', s.lost],
    ...Object.entries(s.regions).map(([name, r]): [string, string] => [
      `${name}: executed / took over / completed by twin`,
      `${r.executed} / ${r.takenOver} / ${r.completedByTwin}  (copies completed ${r.copiesCompleted})`,
    ]),
    [
      'takeover after the kill, p50 / p99',
      s.takeoverP50Ms === null ? '-' : `${s.takeoverP50Ms} ms / ${s.takeoverP99Ms} ms`,
    ],
    ['time', `${s.seconds.toFixed(1)} s`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  print('');
  for (const [k, v] of rows) print(`  ${k.padEnd(width)}  ${v}`);
  if (s.metrics.length > 0)
    print(`\n  /metrics of a us worker:\n${s.metrics.map((l) => `    ${l}`).join('\n')}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const flags = new Command()
    .description('Push notifications in two regions; one region dies mid-run and comes back.')
    .option('--count <n>', 'notifications to send', '2000')
    .option('--kill-at <share>', 'SIGKILL the eu region once this share is delivered', '0.5')
    .option('--restart-after <ms>', 'restart the eu region this long after the kill', '3000')
    .option('--no-kill', 'run without killing anything')
    .parse()
    .opts<{ count: string; killAt: string; restartAfter: string; kill: boolean }>();
  const count = Number(flags.count);
  const killAt = Number(flags.killAt);
  if (!Number.isInteger(count) || count < 1)
    throw new TypeError(`--count must be a positive integer, received ${flags.count}`);
  if (!(killAt > 0 && killAt < 1))
    throw new TypeError(`--kill-at must be between 0 and 1, received ${flags.killAt}`);
  const summary = await runPushDemo({
    count,
    killAt: flags.kill ? killAt : null,
    restartAfterMs: Number(flags.restartAfter),
    live: process.stdout.isTTY === true,
  }).catch((err: unknown) => {
    // No Redis to be had: the message says what to install; a stack trace would not help.
    if (!(err instanceof RedisUnavailableError)) throw err;
    console.error(err.message);
    process.exit(1);
  });
  printSummary(summary);
  process.exit(summary.lost === 0 ? 0 : 1);
}
