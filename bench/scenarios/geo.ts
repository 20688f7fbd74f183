/**
 * Geo benchmarks over the WAN lab (test/support/wan-topology.ts: eu and us 40 ms apart one way,
 * a third-site lock store 20 ms from each), paired twins measured next to what users run instead:
 *   paired:     one queue Redis per region, a twin worker process in each, lock store third-site,
 *               the producer in eu (us's copy is added through the 40 ms link);
 *   plainLocal: plain BullMQ, both worker processes and the producer on one loopback Redis
 *               (no WAN at all: the reference for what the slots can do);
 *   stretched:  one BullMQ queue on eu's Redis, identical plain workers in eu (direct) and us
 *               (through the 40 ms link), BullMQ defaults, producer in eu.
 * Same slots everywhere: 2 worker processes (one per region) x concurrency 50.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { type ExecutorChoice, PairedQueue } from '../../src/index.js';
import { type ChildLine, FixtureProcess } from '../../test/support/child.js';
import { startRedis, type TestRedis, uniquePrefix } from '../../test/support/redis.js';
import {
  type LockPlacement,
  REGIONS,
  type Region,
  startWanTopology,
  type WanTopology,
  type WanTopologyOptions,
} from '../../test/support/wan-topology.js';
import { until } from '../lib/env.js';
import { type LatencySummary, round, summarize } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const BENCH = 'the geo benchmarks (npm run bench)';
/** Past a twin's first second (the chosen twin claims before it runs meanwhile). */
const WARM_UP_MS = 1_200;
export const CHUNK = 1_000;
/** WAIT_READY: paired workers pass the lock store's start-up checks before 'ready' (as a deployment would). */
export const WORKERS = { CONCURRENCY: '50', QUIET: '1', WAIT_READY: '1' };

/**
 * paired: PairedQueue's `executor` as the scenario says, else left out (the library default);
 * pairedFirst: `executor: 'first'` (the first twin to pick its copy up asks the lock store).
 */
type Mode = 'paired' | 'pairedFirst' | 'plainLocal' | 'stretched';
/** Link settings a scenario may change (placement and purpose are the mode's). */
type WanSettings = Omit<WanTopologyOptions, 'purpose'> & {
  /** PairedQueue's `executor` in mode 'paired'. Unset: left out, so the library default rules. */
  executor?: ExecutorChoice;
};
const MODES: readonly Mode[] = ['plainLocal', 'stretched', 'pairedFirst', 'paired'];
const isPaired = (mode: Mode): boolean => mode === 'paired' || mode === 'pairedFirst';

export const hostPort = (url: string) => {
  const { hostname, port } = new URL(url);
  return { host: hostname, port: Number(port) };
};

/** One mode's servers, links, worker processes and producer; `close()` ends them all. */
export class GeoEnv {
  readonly base = uniquePrefix('geo');
  readonly children: FixtureProcess[] = [];
  /** The worker processes of each region. */
  readonly workers: Record<Region, FixtureProcess[]> = { eu: [], us: [] };
  /** The observer's queues (direct, no delay), whose completed jobs are counted. */
  readonly observed: Queue[] = [];
  /** Per region, the observer's queue on that region's Redis (paired: its twin's; else the one). */
  readonly observedIn: Partial<Record<Region, Queue>> = {};
  /** The WAN lab (absent in plainLocal), for faults: kills, resets, link changes. */
  topology: WanTopology | undefined;
  private closers: (() => Promise<unknown>)[] = [];
  add!: (id: string, data: Record<string, unknown>) => Promise<unknown>;
  addBulk!: (count: number, data: Record<string, unknown>) => Promise<unknown>;
  private workerEnv!: (region: Region) => Record<string, string>;

  private constructor(
    readonly mode: Mode,
    private readonly wan: WanSettings,
  ) {}

  /** Starts the mode's servers and producer, then a worker process in each of `regions`. */
  static async start(
    mode: Mode,
    settings: Record<string, string> = {},
    regions: readonly Region[] = REGIONS,
    wan: WanSettings = {},
  ): Promise<GeoEnv> {
    const env = new GeoEnv(mode, wan);
    try {
      await env.setUp();
      await Promise.all(regions.map((region) => env.worker(region, settings)));
      // Steady state, as a deployment runs: for its first second a twin's first process
      // claims its chosen jobs before running them (PairedProcessor's LISTED_MARGIN_MS).
      if (isPaired(mode)) await sleep(WARM_UP_MS);
      return env;
    } catch (err) {
      await env.close();
      throw err;
    }
  }

  private async setUp(): Promise<void> {
    if (this.mode === 'plainLocal') {
      const redis: TestRedis = await startRedis({ killable: true, purpose: BENCH });
      this.closers.push(() => redis.stop());
      this.workerEnv = () => ({ QUEUE: `${this.base}-plain`, QUEUE_URL: redis.url });
      this.plainProducer(this.queue(`${this.base}-plain`, redis.url));
      return;
    }
    const topology: WanTopology = await startWanTopology({
      ...this.wan,
      lockStore: isPaired(this.mode) ? (this.wan.lockStore ?? 'third-site') : 'local',
      purpose: BENCH,
    });
    this.topology = topology;
    this.closers.push(() => topology.stop());
    if (this.mode === 'stretched') {
      this.workerEnv = (region) => ({
        QUEUE: `${this.base}-plain`,
        // us reaches eu's Redis through the cross-region link.
        QUEUE_URL: topology.regions[region].queueUrlOf.eu,
      });
      this.plainProducer(this.queue(`${this.base}-plain`, topology.queueRedis.eu.url, 'eu'));
      return;
    }
    this.workerEnv = (region) => ({
      ...topology.regions[region].workerEnv,
      TWIN: region,
      QUEUE: `${this.base}-${region}`,
      GROUP: this.base,
      LEDGER: `${this.base}:ledger`,
      LOCK_PREFIX: `${this.base}-lock`,
      NO_LEDGER: '1',
      // Ledger writes (none with NO_LEDGER) would stay in the region, off the lock-store link.
      LEDGER_URL: topology.queueRedis[region].url,
    });
    for (const region of REGIONS)
      this.queue(`${this.base}-${region}`, topology.queueRedis[region].url, region);
    // The producer runs in eu: eu's twin direct, us's through the cross-region link.
    const executor = this.mode === 'pairedFirst' ? 'first' : this.wan.executor;
    const producer = new PairedQueue(this.base, {
      ...(executor === undefined ? {} : { executor }),
      twins: {
        eu: { connection: hostPort(topology.regions.eu.queueUrl), queue: `${this.base}-eu` },
        us: { connection: hostPort(topology.regions.eu.remoteQueueUrl), queue: `${this.base}-us` },
      },
    });
    // Expected once a scenario kills a region's Redis (the add itself reports it).
    for (const region of REGIONS) producer.queue(region).on('error', () => {});
    this.closers.push(() => producer.close());
    await producer.waitUntilReady();
    this.add = (id, data) => producer.add('job', data, { jobId: id });
    this.addBulk = (count, data) =>
      producer.addBulk(Array.from({ length: count }, () => ({ name: 'job', data })));
  }

  /** A worker process of this mode in `region` (twin-worker if paired, else plain-worker). */
  async worker(region: Region, settings: Record<string, string> = {}): Promise<FixtureProcess> {
    const fixture = isPaired(this.mode) ? 'twin-worker.ts' : 'plain-worker.ts';
    const child = new FixtureProcess(fixture, {
      ...WORKERS,
      ...settings,
      ...this.workerEnv(region),
    });
    this.children.push(child);
    this.workers[region].push(child);
    await child.next('ready');
    return child;
  }

  private plainProducer(queue: Queue): void {
    this.add = (id, data) => queue.add('job', data, { jobId: id });
    this.addBulk = (count, data) =>
      queue.addBulk(Array.from({ length: count }, () => ({ name: 'job', data })));
  }

  private queue(name: string, url: string, region?: Region): Queue {
    const queue = new Queue(name, { connection: hostPort(url) });
    queue.on('error', () => {}); // expected once a scenario kills this Redis
    this.observed.push(queue);
    if (region) this.observedIn[region] = queue;
    return queue;
  }

  /** Completed jobs: the fewest over the observed queues (paired: every copy settled). */
  async completed(): Promise<number> {
    const counts = await Promise.all(this.observed.map((queue) => queue.getCompletedCount()));
    return Math.min(...counts);
  }

  /** Per job id, when it completed: the first copy's `finishedOn` (the executor's, if paired). */
  async finishedAt(): Promise<Map<string, number>> {
    const at = new Map<string, number>();
    for (const queue of this.observed) {
      for (const job of await queue.getJobs(['completed'], 0, -1)) {
        if (job.id === undefined || job.finishedOn === undefined) continue;
        at.set(job.id, Math.min(at.get(job.id) ?? Number.POSITIVE_INFINITY, job.finishedOn));
      }
    }
    return at;
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((child) => child.kill()));
    await Promise.all(this.observed.map((queue) => queue.close()));
    for (const close of this.closers.reverse()) await close().catch(() => {});
  }
}

export async function withGeo<T>(
  mode: Mode,
  fn: (env: GeoEnv) => Promise<T>,
  wan: WanSettings = {},
): Promise<T> {
  const env = await GeoEnv.start(mode, {}, REGIONS, wan);
  try {
    return await fn(env);
  } finally {
    await env.close();
  }
}

export const LABEL: Record<Mode, string> = {
  paired: "paired, the scenario's executor or the library default (lock store third-site)",
  pairedFirst: "paired, executor 'first' (lock store third-site)",
  plainLocal: 'plain BullMQ, local Redis',
  stretched: 'stretched BullMQ (eu Redis, us 40 ms away)',
};

interface GeoRun {
  jobs: number;
  seconds: number;
  jobsPerSec: number;
}

/** `jobs` jobs of 100 ms added in bulks, until every job (paired: every copy) completed. */
function throughputRun(mode: Mode, jobs: number, wan: WanSettings = {}): Promise<GeoRun> {
  const data = { ms: 100 };
  return withGeo(
    mode,
    async (env) => {
      const started = performance.now();
      for (let added = 0; added < jobs; added += CHUNK)
        await env.addBulk(Math.min(CHUNK, jobs - added), data);
      await until(async () => (await env.completed()) >= jobs, 600_000, `${jobs} jobs (${mode})`);
      const seconds = (performance.now() - started) / 1000;
      return { jobs, seconds: round(seconds), jobsPerSec: Math.round(jobs / seconds) };
    },
    wan,
  );
}

export async function geoThroughput({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 300 : 3_000;
  const runs = {} as Record<Mode, GeoRun>;
  for (const mode of MODES) {
    runs[mode] = await throughputRun(mode, jobs);
    log(`  ${LABEL[mode]}: ${runs[mode].jobsPerSec} jobs/s`);
  }
  const ratio = round(runs.paired.jobsPerSec / runs.plainLocal.jobsPerSec, 3);
  const stretchedRatio = round(runs.stretched.jobsPerSec / runs.plainLocal.jobsPerSec, 3);
  return {
    paired: {
      ...runs.paired,
      executor: 'the library default',
      pairedOverStretched: round(ratio / stretchedRatio, 3),
      executorFirst: {
        ...runs.pairedFirst,
        ratioToPlainLocal: round(runs.pairedFirst.jobsPerSec / runs.plainLocal.jobsPerSec, 3),
      },
    },
    bullmq: {
      plainLocal: { ...runs.plainLocal },
      stretched: { ...runs.stretched, ratioToPlainLocal: stretchedRatio },
    },
    ratio,
    target: 'paired >= 0.95 x plain local',
    met: ratio >= 0.95,
    config: `${jobs} jobs awaiting 100 ms, added in bulks of ${CHUNK}; 2 worker processes x concurrency 50 (one per region); WAN lab: eu-us 40 ms one way, lock store third-site 20 ms; paired: PairedQueue's default executor (executorFirst: 'first'); paired counts logical jobs until every copy settled; ratio = paired / plain local`,
  };
}

export async function geoLatency({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const rate = quick ? 100 : 200;
  const seconds = quick ? 2 : 10;
  const jobs = rate * seconds;
  const data = { ms: 20 };
  const latency = {} as Record<Mode, LatencySummary>;
  for (const mode of MODES) {
    latency[mode] = await withGeo(
      mode,
      async (env) => {
        const addedAt = new Map<string, number>();
        const adds: Promise<unknown>[] = [];
        const started = performance.now();
        // A steady rate: every few ms, add the jobs due by now (no drift from slow adds).
        while (addedAt.size < jobs) {
          const due = Math.min(jobs, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
          while (addedAt.size < due) {
            const id = `g${addedAt.size}`;
            addedAt.set(id, Date.now());
            adds.push(env.add(id, data));
          }
          await sleep(2);
        }
        await Promise.all(adds);
        await until(async () => (await env.completed()) >= jobs, 120_000, `${jobs} jobs (${mode})`);
        const finished = await env.finishedAt();
        const values = [...addedAt].map(([id, at]) => (finished.get(id) ?? Number.NaN) - at);
        if (values.some(Number.isNaN))
          throw new Error(`geo_latency: a job of ${mode} has no finishedOn`);
        return summarize(values);
      },
      { executor: 'eu' },
    );
    log(`  ${LABEL[mode]}: p50 ${latency[mode].p50} / p99 ${latency[mode].p99} ms`);
  }
  const { paired, pairedFirst, plainLocal, stretched } = latency;
  return {
    paired: {
      ...paired,
      executor: "'eu' (the producer's region)",
      executorFirst: { ...pairedFirst },
    },
    bullmq: { plainLocal: { ...plainLocal }, stretched: { ...stretched } },
    ratio: round(paired.p50 / Math.max(plainLocal.p50, 1), 3),
    target: 'paired p50 <= plain local p50 + 3 ms; paired p99 <= stretched p99',
    met: paired.p50 <= plainLocal.p50 + 3 && paired.p99 <= stretched.p99,
    config: `${rate} jobs/s for ${seconds} s, each awaiting 20 ms; enqueue (producer in eu) to the first copy's finishedOn; 2 worker processes x concurrency 50 (one per region); WAN lab as geo_throughput; ratio = paired p50 / plain local p50`,
  };
}

const LONG_MS = 600_000;
export const VERBOSE = { QUIET: '0' };

/** Fresh servers and processes per sample: ms from the SIGKILL of eu's executor until us starts the job. */
async function killSample(mode: 'paired' | 'stretched', settings: Record<string, string>) {
  // eu is chosen: us, started later, shadows eu's run as a standby.
  const executor = (process.env.GEO_KILL_EXECUTOR as ExecutorChoice | undefined) ?? 'eu';
  const lockStore = (process.env.GEO_KILL_PLACEMENT as LockPlacement | undefined) ?? 'third-site';
  const env = await GeoEnv.start(mode, { ...VERBOSE, ...settings }, ['eu'], {
    executor,
    lockStore,
  });
  try {
    const eu = env.children[0] as FixtureProcess;
    const id = 'long';
    await env.add(id, { ms: LONG_MS });
    await eu.next('started', (l) => l.id === id);
    const us = await env.worker('us', { ...VERBOSE, ...settings });
    if (mode === 'paired') await us.next('shadowed', (l) => l.jobId === id);
    const killedAt = Date.now();
    await eu.kill('SIGKILL');
    const started = await us.next('started', (l) => l.id === id, 60_000);
    return Number(started.at) - killedAt;
  } finally {
    await env.close();
  }
}

export async function geoTakeoverKill({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const sample = async (mode: 'paired' | 'stretched', times: number, settings = {}) => {
    const values: number[] = [];
    for (let i = 0; i < times; i++) {
      values.push(await killSample(mode, settings));
      log(`  ${LABEL[mode]} kill ${i + 1}/${times}: ${Math.round(values[i] ?? 0)} ms`);
    }
    return summarize(values);
  };
  const paired = await sample('paired', quick ? 2 : 10);
  const tuned = { LOCK_DURATION: '2000', STALLED_INTERVAL: '1000' };
  const stretched = await sample('stretched', quick ? 1 : 3, tuned);
  return {
    paired: { ...paired, leaseMs: 30_000 },
    bullmq: { stretchedTuned: { ...stretched } },
    ratio: round(paired.p50 / Math.max(stretched.p50, 1), 4),
    target: 'paired p99 <= 400 ms',
    met: paired.p99 <= 400,
    config:
      'SIGKILL of the executor in eu, us takes over; paired: lock store third-site, default lease 30 s, liveness on; stretched BullMQ (eu Redis, us worker 40 ms away): lockDuration 2 s, stalledInterval 1 s; ratio = paired p50 / stretched p50',
  };
}

/**
 * Calls `addOne(n)` for n = 0 … count − 1 at `rate` a second without drift (every few ms, the
 * calls due by now). `addOne` is awaited: it should only start its add, not wait for it.
 */
export async function atSteadyRate(
  count: number,
  rate: number,
  addOne: (n: number) => unknown,
): Promise<void> {
  const started = performance.now();
  let n = 0;
  while (n < count) {
    const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
    while (n < due) await addOne(n++);
    await sleep(2);
  }
}

/** Polls `done()` every `everyMs` until it is true (then true) or `timeoutMs` passed (then false). */
export async function settles(
  done: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
  return true;
}

export const ids = (lines: readonly ChildLine[], event: string, key: 'id' | 'jobId'): string[] =>
  lines.filter((line) => line.event === event).map((line) => String(line[key]));

/**
 * geo_false_takeovers at 15 times its reset rate (each lock-store connection reset every 2 s
 * on average, so a reset often lands within another's reconnect): the bursts of issue 19.
 */
export function geoFalseTakeoversBurst(options: BenchOptions): Promise<ScenarioResult> {
  return geoFalseTakeovers(options, { resetsPerSecond: 0.5, seconds: options.quick ? 30 : 120 });
}

export async function geoFalseTakeovers(
  { quick, log }: BenchOptions,
  stress: { resetsPerSecond?: number; seconds?: number } = {},
): Promise<ScenarioResult> {
  const seconds = stress.seconds ?? (quick ? 30 : 600);
  const rate = 20;
  const jobs = seconds * rate;
  // Overridable to stress it: GEO_RESETS_PER_SECOND=0.5 resets each connection every 2 s.
  const resetsPerSecond =
    stress.resetsPerSecond ?? Number(process.env.GEO_RESETS_PER_SECOND ?? 1 / 30);
  const placement = (process.env.GEO_LOCK_PLACEMENT as LockPlacement | undefined) ?? 'eu';
  const env = await GeoEnv.start('paired', VERBOSE, REGIONS, {
    jitterMs: 20,
    // In eu: us's workers are 80 ms (round trip) from it, eu's next to it: the hardest case for
    // a reconnect (the far executor) watched by a twin that sees its absence at once.
    lockStore: placement,
  });
  try {
    const topology = env.topology as WanTopology;
    const lockLinks = Object.values(topology.lockLinks);
    // Only once every worker is up: a reset during start-up is another story.
    for (const link of lockLinks) link.configure({ resetsPerSecond });
    const pending: Promise<unknown>[] = [];
    await atSteadyRate(jobs, rate, (n) => {
      pending.push(env.add(`f${n}`, { ms: 2_000 }));
    });
    await Promise.all(pending);
    const finished = await settles(async () => (await env.completed()) >= jobs, 60_000);
    const completed = await env.completed();
    const lockLinkResets = lockLinks.reduce((sum, link) => sum + link.randomResets, 0);
    for (const link of lockLinks) link.configure({ resetsPerSecond: 0 });
    const lines = env.children.flatMap((child) => child.lines);
    const takeoverReasons: Record<string, number> = {};
    for (const line of lines) {
      if (line.event === 'takeover') {
        const reason = `${String(line.twin)} ${String(line.reason)}`;
        takeoverReasons[reason] = (takeoverReasons[reason] ?? 0) + 1;
      }
    }
    const starts = new Map<string, number>();
    for (const id of ids(lines, 'started', 'id')) starts.set(id, (starts.get(id) ?? 0) + 1);
    const measured = {
      jobs,
      seconds,
      completed,
      // No process dies and no job fails here: every takeover is of a live executor.
      takeovers: Object.values(takeoverReasons).reduce((sum, count) => sum + count, 0),
      takeoverReasons,
      leaseLost: lines.filter((line) => line.event === 'leaseLost').length,
      ranTwice: [...starts.values()].filter((count) => count > 1).length,
      errorEvents: lines.filter((line) => line.event === 'error').length,
      lockLinkResets,
    };
    log(
      `  paired, lock store ${placement}: ${measured.takeovers} takeovers of live executors ${JSON.stringify(takeoverReasons)}, ${measured.leaseLost} leases lost, ${measured.ranTwice} run twice, ${lockLinkResets} lock-link resets, ${completed}/${jobs} completed`,
    );
    return {
      paired: measured,
      bullmq: null,
      ratio: null,
      target: '0 takeovers of live executors',
      met: finished && measured.takeovers === 0,
      config: `paired, default options (lease 30 s, liveness on, PairedQueue's default executor), lock store in ${placement} (eu: us's workers 80 ms round trip from it); ${rate} jobs/s for ${seconds} s, each awaiting 2 s (about ${rate * 2} executions live at any time), producer in eu; 20 ms jitter on every WAN link; each lock-store connection of both regions' workers reset (RST) at random, ${round(resetsPerSecond, 4)} per second per connection (once every ${round(1 / resetsPerSecond, 1)} s on average); takeovers counted from the workers' 'takeover' events`,
    };
  } finally {
    await env.close();
  }
}

/**
 * geo_throughput_far: geo_throughput with the lock store 40 ms one way from each region (80 ms
 * round trip), paired with PairedQueue's default executor against plain BullMQ on a local
 * Redis, in the same run.
 */
export async function geoThroughputFar({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 300 : 3_000;
  const plainLocal = await throughputRun('plainLocal', jobs);
  log(`  ${LABEL.plainLocal}: ${plainLocal.jobsPerSec} jobs/s`);
  const paired = await throughputRun('paired', jobs, { thirdSiteMs: 40 });
  log(`  paired, library default executor, lock store 40 ms away: ${paired.jobsPerSec} jobs/s`);
  const ratio = round(paired.jobsPerSec / plainLocal.jobsPerSec, 3);
  return {
    paired: { ...paired, executor: 'the library default', lockStoreOneWayMs: 40 },
    bullmq: { plainLocal: { ...plainLocal } },
    ratio,
    target: 'ratio >= 0.9',
    met: ratio >= 0.9,
    config: `${jobs} jobs awaiting 100 ms, added in bulks of ${CHUNK} by a producer in eu; 2 worker processes x concurrency 50 (one per region); WAN lab: eu-us 40 ms one way, lock store third-site 40 ms one way from each region; paired: PairedQueue's default executor, logical jobs until every copy settled; ratio = paired / plain BullMQ on one local Redis (no WAN)`,
  };
}
