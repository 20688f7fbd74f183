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
import { PairedQueue } from '../../src/index.js';
import { FixtureProcess } from '../../test/support/child.js';
import { startRedis, type TestRedis, uniquePrefix } from '../../test/support/redis.js';
import {
  REGIONS,
  type Region,
  startWanTopology,
  type WanTopology,
} from '../../test/support/wan-topology.js';
import { until } from '../lib/env.js';
import { type LatencySummary, round, summarize } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const BENCH = 'the geo benchmarks (npm run bench)';
const CHUNK = 1_000;
const WORKERS = { CONCURRENCY: '50', QUIET: '1' };

type Mode = 'paired' | 'plainLocal' | 'stretched';
const MODES: readonly Mode[] = ['plainLocal', 'stretched', 'paired'];

const hostPort = (url: string) => {
  const { hostname, port } = new URL(url);
  return { host: hostname, port: Number(port) };
};

/** One mode's servers, links, worker processes and producer; `close()` ends them all. */
class GeoEnv {
  readonly base = uniquePrefix('geo');
  readonly children: FixtureProcess[] = [];
  /** The observer's queues (direct, no delay), whose completed jobs are counted. */
  readonly observed: Queue[] = [];
  private closers: (() => Promise<unknown>)[] = [];
  add!: (id: string, data: Record<string, unknown>) => Promise<unknown>;
  addBulk!: (count: number, data: Record<string, unknown>) => Promise<unknown>;
  private workerEnv!: (region: Region) => Record<string, string>;

  private constructor(readonly mode: Mode) {}

  /** Starts the mode's servers and producer, then a worker process in each of `regions`. */
  static async start(
    mode: Mode,
    settings: Record<string, string> = {},
    regions: readonly Region[] = REGIONS,
  ): Promise<GeoEnv> {
    const env = new GeoEnv(mode);
    try {
      await env.setUp();
      await Promise.all(regions.map((region) => env.worker(region, settings)));
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
      lockStore: this.mode === 'paired' ? 'third-site' : 'local',
      purpose: BENCH,
    });
    this.closers.push(() => topology.stop());
    if (this.mode === 'stretched') {
      this.workerEnv = (region) => ({
        QUEUE: `${this.base}-plain`,
        // us reaches eu's Redis through the cross-region link.
        QUEUE_URL: topology.regions[region].queueUrlOf.eu,
      });
      this.plainProducer(this.queue(`${this.base}-plain`, topology.queueRedis.eu.url));
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
      this.queue(`${this.base}-${region}`, topology.queueRedis[region].url);
    // The producer runs in eu: eu's twin direct, us's through the cross-region link.
    const producer = new PairedQueue(this.base, {
      twins: {
        eu: { connection: hostPort(topology.regions.eu.queueUrl), queue: `${this.base}-eu` },
        us: { connection: hostPort(topology.regions.eu.remoteQueueUrl), queue: `${this.base}-us` },
      },
    });
    this.closers.push(() => producer.close());
    this.add = (id, data) => producer.add('job', data, { jobId: id });
    this.addBulk = (count, data) =>
      producer.addBulk(Array.from({ length: count }, () => ({ name: 'job', data })));
  }

  /** A worker process of this mode in `region` (twin-worker if paired, else plain-worker). */
  async worker(region: Region, settings: Record<string, string> = {}): Promise<FixtureProcess> {
    const fixture = this.mode === 'paired' ? 'twin-worker.ts' : 'plain-worker.ts';
    const child = new FixtureProcess(fixture, {
      ...WORKERS,
      ...settings,
      ...this.workerEnv(region),
    });
    this.children.push(child);
    await child.next('ready');
    return child;
  }

  private plainProducer(queue: Queue): void {
    this.add = (id, data) => queue.add('job', data, { jobId: id });
    this.addBulk = (count, data) =>
      queue.addBulk(Array.from({ length: count }, () => ({ name: 'job', data })));
  }

  private queue(name: string, url: string): Queue {
    const queue = new Queue(name, { connection: hostPort(url) });
    this.observed.push(queue);
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

async function withGeo<T>(mode: Mode, fn: (env: GeoEnv) => Promise<T>): Promise<T> {
  const env = await GeoEnv.start(mode);
  try {
    return await fn(env);
  } finally {
    await env.close();
  }
}

const LABEL: Record<Mode, string> = {
  paired: 'paired (lock store third-site)',
  plainLocal: 'plain BullMQ, local Redis',
  stretched: 'stretched BullMQ (eu Redis, us 40 ms away)',
};

interface GeoRun {
  jobs: number;
  seconds: number;
  jobsPerSec: number;
}

export async function geoThroughput({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 300 : 3_000;
  const data = { ms: 100 };
  const runs = {} as Record<Mode, GeoRun>;
  for (const mode of MODES) {
    runs[mode] = await withGeo(mode, async (env) => {
      const started = performance.now();
      for (let added = 0; added < jobs; added += CHUNK)
        await env.addBulk(Math.min(CHUNK, jobs - added), data);
      await until(async () => (await env.completed()) >= jobs, 600_000, `${jobs} jobs (${mode})`);
      const seconds = (performance.now() - started) / 1000;
      return { jobs, seconds: round(seconds), jobsPerSec: Math.round(jobs / seconds) };
    });
    log(`  ${LABEL[mode]}: ${runs[mode].jobsPerSec} jobs/s`);
  }
  const ratio = round(runs.paired.jobsPerSec / runs.plainLocal.jobsPerSec, 3);
  const stretchedRatio = round(runs.stretched.jobsPerSec / runs.plainLocal.jobsPerSec, 3);
  return {
    paired: { ...runs.paired, pairedOverStretched: round(ratio / stretchedRatio, 3) },
    bullmq: {
      plainLocal: { ...runs.plainLocal },
      stretched: { ...runs.stretched, ratioToPlainLocal: stretchedRatio },
    },
    ratio,
    target: 'paired >= 0.9 x plain local',
    met: ratio >= 0.9,
    config: `${jobs} jobs awaiting 100 ms, added in bulks of ${CHUNK}; 2 worker processes x concurrency 50 (one per region); WAN lab: eu-us 40 ms one way, lock store third-site 20 ms; paired counts logical jobs until every copy settled; ratio = paired / plain local`,
  };
}

export async function geoLatency({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const rate = quick ? 100 : 200;
  const seconds = quick ? 2 : 10;
  const jobs = rate * seconds;
  const data = { ms: 20 };
  const latency = {} as Record<Mode, LatencySummary>;
  for (const mode of MODES) {
    latency[mode] = await withGeo(mode, async (env) => {
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
    });
    log(`  ${LABEL[mode]}: p50 ${latency[mode].p50} / p99 ${latency[mode].p99} ms`);
  }
  const { paired, plainLocal, stretched } = latency;
  return {
    paired: { ...paired },
    bullmq: { plainLocal: { ...plainLocal }, stretched: { ...stretched } },
    ratio: round(paired.p50 / Math.max(plainLocal.p50, 1), 3),
    target: 'paired p50 <= plain local p50 + 5 ms; paired p99 <= stretched p99',
    met: paired.p50 <= plainLocal.p50 + 5 && paired.p99 <= stretched.p99,
    config: `${rate} jobs/s for ${seconds} s, each awaiting 20 ms; enqueue (producer in eu) to the first copy's finishedOn; 2 worker processes x concurrency 50 (one per region); WAN lab as geo_throughput; ratio = paired p50 / plain local p50`,
  };
}

const LONG_MS = 600_000;
const VERBOSE = { QUIET: '0' };

/** Fresh servers and processes per sample: ms from the SIGKILL of eu's executor until us starts the job. */
async function killSample(mode: 'paired' | 'stretched', settings: Record<string, string>) {
  const env = await GeoEnv.start(mode, { ...VERBOSE, ...settings }, ['eu']);
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
