/**
 * `npm run demo`: push notifications served by identical worker deployments in two regions,
 * `eu` and `us`, each with its own Redis, sharing a lock store. Midway every `eu` worker
 * process is SIGKILLed, later restarted. A local push gateway counts what reached devices.
 *   npm run demo -- --count 2000 --kill-at 0.5 --restart-after 3000 --no-kill --rtt 80 --executor balanced
 *   npm run demo -- --regions eu,us,ap     (three regions, one twin each; eu is killed)
 *   npm run demo -- --backends redis,postgres   (eu's queue on Redis, us's on PostgreSQL)
 *
 * `--rtt <ms>` runs it over the WAN lab (test/support/wan-topology.ts) instead of loopback:
 * `ms` is the round trip between eu and us (one way: ms / 2); the lock store is at a third
 * site half that round trip away from each region (one way: ms / 4; `--rtt 80` is the lab's
 * 40 ms / 20 ms). Each region's workers reach their own queue Redis directly and the lock
 * store through their region's link; the producer runs in eu and adds us's copies through
 * the cross-region link. The gateway (the provider, APNs/FCM) is reached directly from both.
 * `--executor balanced` (or a region's name) chooses each notification's executor when it is
 * added (PairedQueue's `executor` option): no lock-store round trip on its path.
 * The summary then adds enqueue → delivered p50 / p99: from the producer's addBulk call to
 * the gateway's delivery, so it includes the cross-region add, the lock store's round trips,
 * the gateway's simulated 20-120 ms, and, for the notifications in flight at the kill, the
 * takeover. Compare it with the same figure of a run without `--rtt` (runPushDemo's
 * `enqueueToDeliveredP50Ms`), which the summary does not print.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPostgresBackend, Queue } from 'bullmq';
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { type ExecutorChoice, PairedQueue } from '../../src/index.js';
import {
  PostgresUnavailableError,
  startPostgres,
  type TestPostgres,
} from '../../test/support/postgres.js';
import { RedisUnavailableError, startRedis, type TestRedis } from '../../test/support/redis.js';
import { startWanTopology } from '../../test/support/wan-topology.js';
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
  /**
   * Run over the WAN lab: the round trip between eu and us, ms (the third-site lock store is
   * half of it away from each region). Undefined: every Redis on loopback, as without --rtt.
   */
  rttMs?: number;
  /** PairedQueue's `executor`: who runs each notification ('first' as the library's default). */
  executor?: ExecutorChoice;
  /**
   * The regions, one twin each (default eu, us; three or more: `--regions eu,us,ap`). The
   * first is the one killed. Over the WAN lab (`rttMs`) only eu and us.
   */
  regions?: readonly string[];
  /**
   * Each region's queue backend, in `regions` order (default: all Redis): `postgres` puts that
   * region's queue on a private PostgreSQL (BullMQ's createPostgresBackend). Not over the WAN.
   */
  backends?: readonly Backend[];
  log?: (line: string) => void;
}

export type Backend = 'redis' | 'postgres';

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
  /** From the producer's addBulk call to the gateway's delivery, over delivered notifications. */
  enqueueToDeliveredP50Ms: number | null;
  enqueueToDeliveredP99Ms: number | null;
  /** The WAN lab's round trip between the regions; null: no WAN (loopback). */
  rttMs: number | null;
  seconds: number;
  /** A few lines of one worker's /metrics, as Prometheus would scrape them. */
  metrics: string[];
}

const DEMO = 'the demo (npm run demo)';

/** A region's name: eu and us by default, more with --regions. */
type Site = string;
interface Endpoint {
  host: string;
  port: number;
}

/** How the producer reaches one twin's queue: a Redis endpoint, or PostgreSQL with its backend. */
interface TwinEndpoint {
  connection: Endpoint | { connectionString: string; migrate: true };
  backend?: typeof createPostgresBackend;
}

/** The demo's Redis servers and how each party reaches them. */
interface DemoNetwork {
  /** QUEUE_URL (or QUEUE_PG) and LOCK_URL of each region's worker processes. */
  workerEnv: Record<Site, Record<string, string>>;
  /** How the producer (in eu) reaches each twin's queue. */
  producer: Record<Site, TwinEndpoint>;
  /** Each queue Redis with no delay, to count copies off the WAN; absent: through the producer. */
  observer?: Record<Site, Endpoint>;
  /** One Redis serves all three (REDIS_URL): the regions need key prefixes of their own. */
  shared: boolean;
  /** The line logged once the regions are up. */
  description: string;
  stop(): Promise<void>;
}

/**
 * A queue server per region (Redis, or PostgreSQL where `backends` says so) and a lock store
 * Redis, on loopback (or REDIS_URL): the demo without --rtt.
 */
async function localNetwork(
  names: readonly Site[],
  backends: readonly Backend[],
): Promise<DemoNetwork> {
  const lock = await startRedis({ purpose: DEMO });
  const queues: Record<Site, TestRedis | TestPostgres> = {};
  const onPg = (n: Site): boolean => backends[names.indexOf(n)] === 'postgres';
  for (const name of names) {
    queues[name] = onPg(name) ? await startPostgres() : await startRedis({ purpose: DEMO });
  }
  const all = [...Object.values(queues), lock];
  const urls = Object.values(queues).map((r) => r.url);
  return {
    workerEnv: Object.fromEntries(
      names.map((n) => {
        const url = (queues[n] as TestRedis | TestPostgres).url;
        return [n, { [onPg(n) ? 'QUEUE_PG' : 'QUEUE_URL']: url, LOCK_URL: lock.url }];
      }),
    ),
    producer: Object.fromEntries(
      names.map((n) => {
        const q = queues[n] as TestRedis | TestPostgres;
        return [
          n,
          onPg(n)
            ? {
                connection: { connectionString: q.url, migrate: true as const },
                backend: createPostgresBackend,
              }
            : { connection: { host: q.host, port: q.port } },
        ];
      }),
    ),
    shared: new Set(urls).size < urls.length,
    description: `regions up: ${names.map((n) => `${n} (${onPg(n) ? 'PostgreSQL' : 'Redis'} ${(queues[n] as TestRedis | TestPostgres).url})`).join(', ')}; lock store ${lock.url}`,
    stop: async () => {
      await Promise.all(all.map((r) => r.stop()));
    },
  };
}

/**
 * The WAN lab: eu and us `rttMs` apart (one way rttMs / 2), the lock store at a third site
 * rttMs / 4 one way from each region, the producer in eu.
 */
async function wanNetwork(rttMs: number): Promise<DemoNetwork> {
  const wan = await startWanTopology({
    lockStore: 'third-site',
    crossRegionMs: rttMs / 2,
    thirdSiteMs: rttMs / 4,
    purpose: DEMO,
  });
  const at = (url: string): Endpoint => ({
    host: new URL(url).hostname,
    port: Number(new URL(url).port),
  });
  const { eu, us } = wan.regions;
  return {
    workerEnv: { eu: eu.workerEnv, us: us.workerEnv },
    // The producer runs in eu: eu's twin directly, us's through eu's cross-region link.
    producer: { eu: { connection: at(eu.queueUrl) }, us: { connection: at(eu.remoteQueueUrl) } },
    observer: { eu: at(wan.queueRedis.eu.url), us: at(wan.queueRedis.us.url) },
    shared: false,
    description:
      `regions up over the WAN lab, rtt ${rttMs} ms: eu (Redis ${eu.queueUrl}), us (Redis ${us.queueUrl}), ` +
      `${rttMs / 2} ms apart one way; lock store ${wan.lockRedis.url} at a third site ${rttMs / 4} ms ` +
      `one way from each (eu via ${eu.lockUrl}, us via ${us.lockUrl}); the producer in eu adds ` +
      `us's copies via ${eu.remoteQueueUrl}`,
    stop: () => wan.stop(),
  };
}

export async function runPushDemo(options: PushDemoOptions): Promise<PushDemoSummary> {
  const { count, killAt, restartAfterMs } = options;
  const log = options.log ?? console.log;
  const rttMs = options.rttMs ?? null;
  if (rttMs !== null && !(Number.isFinite(rttMs) && rttMs >= 0))
    throw new TypeError(`rttMs must be a number of ms, 0 or more, received ${rttMs}`);
  const names = options.regions ?? ['eu', 'us'];
  if (names.length < 2 || new Set(names).size !== names.length)
    throw new TypeError(`regions must be two or more distinct names, received ${names.join(',')}`);
  if (rttMs !== null && names.join(',') !== 'eu,us')
    throw new TypeError('over the WAN lab (rttMs) the regions are eu and us');
  const backends = options.backends ?? names.map((): Backend => 'redis');
  if (backends.length !== names.length || backends.some((b) => b !== 'redis' && b !== 'postgres'))
    throw new TypeError(
      `backends must name redis or postgres for each of the ${names.length} regions, received ${backends.join(',')}`,
    );
  if (rttMs !== null && backends.includes('postgres'))
    throw new TypeError('over the WAN lab (rttMs) every region is on Redis');
  const network = rttMs === null ? await localNetwork(names, backends) : await wanNetwork(rttMs);
  const gateway = new PushGateway();
  const gatewayUrl = await gateway.start();
  const shared = network.shared;
  const run = randomBytes(3).toString('hex');
  const prefix = (region: string) => (shared ? `demo-${run}-${region}` : 'bull');
  const regions = names.map(
    (name) =>
      new Region(name, options.processesPerRegion ?? 2, {
        ...network.workerEnv[name],
        GATEWAY_URL: gatewayUrl,
        QUEUE: 'push',
        QUEUE_PREFIX: prefix(name),
      }),
  );
  // The first region is killed; the others take its jobs over.
  const [eu, ...survivors] = regions as [Region, ...Region[]];
  const us = survivors[0] as Region;
  const endpoint = (of: Record<Site, Endpoint>, name: string): Endpoint => of[name] as Endpoint;
  const queue = new PairedQueue<Notification>('push', {
    executor: options.executor ?? 'first',
    twins: Object.fromEntries(
      names.map((n) => {
        const { connection, backend } = network.producer[n] as TwinEndpoint;
        return [n, { connection, prefix: prefix(n), ...(backend ? { backend } : {}) }];
      }),
    ),
  });
  // Over the WAN the copies are counted directly on each Redis, not through the producer's link.
  const observing = network.observer;
  const observers = observing
    ? Object.fromEntries(
        names.map((n) => [
          n,
          new Queue('push', { connection: endpoint(observing, n), prefix: prefix(n) }),
        ]),
      )
    : undefined;
  const observed = (twin: string): Queue => observers?.[twin] ?? queue.queue(twin);
  const view = new LiveView(count, regions, options.live ?? false);
  /** When the producer called addBulk for each notification (performance.now()). */
  const enqueuedAt = new Map<string, number>();
  const began = Date.now();
  let killedAt: number | null = null;
  try {
    await Promise.all(regions.map((r) => r.start()));
    log(network.description);
    log(`metrics: ${regions.flatMap((r) => r.metricsUrls).join('  ')}`);
    const produced = produce(queue, count, options.rate ?? 400, enqueuedAt);
    const copies = async (twin: string) =>
      (await observed(twin).getJobCounts('completed')).completed ?? 0;
    const deadline = began + (options.timeoutMs ?? 120_000);
    let restarted: Promise<void> | undefined;
    for (;;) {
      const stats = gateway.stats();
      view.update(regions, stats);
      if (killAt !== null && killedAt === null && stats.delivered >= count * killAt) {
        killedAt = Date.now();
        await eu.kill();
        view.note(
          `SIGKILL every ${eu.name} worker process at ${stats.delivered} delivered; restart in ${restartAfterMs} ms`,
          log,
        );
        restarted = sleep(restartAfterMs).then(async () => {
          await eu.start();
          view.note(
            `${eu.name} workers restarted: their copies complete with their twins' results, without sending`,
            log,
          );
        });
      }
      const done = (await produced.done()) && stats.delivered >= count;
      const counted = await Promise.all(names.map(copies));
      if (done && counted.every((c) => c >= count)) break;
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
    await Promise.all(Object.values(observers ?? {}).map((q) => q.close()));
    await gateway.close();
    await network.stop();
  }

  async function summarize(): Promise<PushDemoSummary> {
    const stats = gateway.stats();
    const latency = hdr.build();
    const after =
      killedAt === null
        ? []
        : survivors.flatMap((r) => r.takeovers).filter((t) => Number(t.at) >= (killedAt as number));
    for (const t of after) latency.recordValue(Math.max(1, Number(t.at) - (killedAt as number)));
    const regionSummary: PushDemoSummary['regions'] = {};
    for (const region of regions) {
      const completed = (await observed(region.name).getJobCounts('completed')).completed ?? 0;
      regionSummary[region.name] = { ...region.counts, copiesCompleted: completed };
    }
    const metricsText = await fetch(us.metricsUrls[0] ?? '').then((r) => r.text());
    const endToEnd = hdr.build();
    for (const [id, deliveredAt] of gateway.deliveryTimes()) {
      const from = enqueuedAt.get(id);
      if (from !== undefined) endToEnd.recordValue(Math.max(1, Math.round(deliveredAt - from)));
    }
    const measured = endToEnd.totalCount > 0;
    const summary: PushDemoSummary = {
      notifications: count,
      ...stats,
      lost: count - gateway.deliveredIds().size,
      regions: regionSummary,
      takeovers: regions.reduce((sum, r) => sum + r.counts.takenOver, 0),
      takeoverP50Ms: after.length ? latency.getValueAtPercentile(50) : null,
      takeoverP99Ms: after.length ? latency.getValueAtPercentile(99) : null,
      killedAtMs: killedAt === null ? null : killedAt - began,
      enqueueToDeliveredP50Ms: measured ? endToEnd.getValueAtPercentile(50) : null,
      enqueueToDeliveredP99Ms: measured ? endToEnd.getValueAtPercentile(99) : null,
      rttMs,
      seconds: (Date.now() - began) / 1000,
      metrics: metricsText
        .split('\n')
        .filter((l) => /^bullmq_paired_(executions|takeovers|twin_completions)_total\{/.test(l)),
    };
    latency.destroy();
    endToEnd.destroy();
    return summary;
  }
}

/**
 * Adds notifications at `rate` per second through PairedQueue, in the background; notes in
 * `enqueuedAt` when each one's addBulk was called.
 */
function produce(
  queue: PairedQueue<Notification>,
  count: number,
  rate: number,
  enqueuedAt: Map<string, number>,
) {
  let added = 0;
  const batch = Math.max(1, Math.round(rate / 10));
  const running = (async () => {
    while (added < count) {
      const n = Math.min(batch, count - added);
      const calledAt = performance.now();
      const jobs = await queue.addBulk(
        Array.from({ length: n }, (_, i) => ({
          name: 'push',
          data: { device: `device-${(added + i) % 500}`, text: `hello #${added + i}` },
        })),
      );
      for (const job of jobs) enqueuedAt.set(job.id, calledAt);
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
    // Only over the WAN (--rtt): without it the summary is the one it always was.
    ...(s.rttMs === null
      ? []
      : [
          [
            `enqueue → delivered over rtt ${s.rttMs} ms, p50 / p99`,
            s.enqueueToDeliveredP50Ms === null
              ? '-'
              : `${s.enqueueToDeliveredP50Ms} ms / ${s.enqueueToDeliveredP99Ms} ms`,
          ] as [string, string],
        ]),
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
    .option(
      '--rtt <ms>',
      'run over the WAN lab: eu-us round trip (lock store at a third site, half of it from each)',
    )
    .option(
      '--regions <names>',
      'comma-separated regions, one twin each (three or more: eu,us,ap); the first is killed',
      'eu,us',
    )
    .option(
      '--backends <list>',
      "each region's queue backend, in --regions order: redis or postgres (e.g. redis,postgres)",
    )
    .option(
      '--executor <choice>',
      'who runs each notification: first (whichever twin picks it up first), balanced (by id), eu or us',
      'first',
    )
    .parse()
    .opts<{
      count: string;
      killAt: string;
      restartAfter: string;
      kill: boolean;
      rtt?: string;
      executor: string;
      regions: string;
      backends?: string;
    }>();
  const regionNames = flags.regions.split(',').map((r) => r.trim());
  if (!['first', 'balanced', ...regionNames].includes(flags.executor))
    throw new TypeError(
      `--executor must be first, balanced or a region (${regionNames.join(', ')}), received ${flags.executor}`,
    );
  const count = Number(flags.count);
  const killAt = Number(flags.killAt);
  if (!Number.isInteger(count) || count < 1)
    throw new TypeError(`--count must be a positive integer, received ${flags.count}`);
  if (!(killAt > 0 && killAt < 1))
    throw new TypeError(`--kill-at must be between 0 and 1, received ${flags.killAt}`);
  const rttMs = flags.rtt === undefined ? undefined : Number(flags.rtt);
  if (rttMs !== undefined && !(Number.isFinite(rttMs) && rttMs >= 0))
    throw new TypeError(`--rtt must be a number of ms, 0 or more, received ${flags.rtt}`);
  const summary = await runPushDemo({
    count,
    killAt: flags.kill ? killAt : null,
    restartAfterMs: Number(flags.restartAfter),
    live: process.stdout.isTTY === true,
    ...(rttMs === undefined ? {} : { rttMs }),
    executor: flags.executor,
    regions: regionNames,
    ...(flags.backends === undefined
      ? {}
      : { backends: flags.backends.split(',').map((b) => b.trim() as Backend) }),
  }).catch((err: unknown) => {
    // No Redis (or PostgreSQL) to be had: the message says what to install, not a stack trace.
    if (!(err instanceof RedisUnavailableError || err instanceof PostgresUnavailableError)) {
      throw err;
    }
    console.error(err.message);
    process.exit(1);
  });
  printSummary(summary);
  process.exit(summary.lost === 0 ? 0 : 1);
}
