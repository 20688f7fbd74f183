import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../../test/support/redis.js';
import { type BenchEnv, until, withEnv } from '../lib/env.js';
import { round, summarize } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const WORKERS = { CONCURRENCY: '50' };
const JOB = { ms: 20 };
/** Jobs kept added but not completed: enough that no worker slot runs dry. */
const BACKLOG = 1_000;
const CHUNK = 250;
const SAMPLE_MS = 20;
/** Throughput is back once a window this long runs at 90 % of the steady rate. */
const WINDOW_MS = 500;
const OUTAGE_MS = 2_000;

interface Sample {
  t: number;
  /** Logical jobs completed so far (paired: a job's two copies count once). */
  done: number;
}

/**
 * Keeps BACKLOG jobs added but not completed, and samples completions every SAMPLE_MS (two
 * loops, so a slow add never delays a sample), until `stop()`, which then waits until every
 * added job has completed.
 */
function flow(add: (count: number) => Promise<void>, completed: () => Promise<number>) {
  const samples: Sample[] = [];
  let added = 0;
  let done = 0;
  let running = true;
  const sampling = (async () => {
    while (running) {
      done = await completed();
      samples.push({ t: performance.now(), done });
      await sleep(SAMPLE_MS);
    }
  })();
  const adding = (async () => {
    while (running) {
      if (added - done < BACKLOG) {
        await add(CHUNK);
        added += CHUNK;
      } else await sleep(SAMPLE_MS);
    }
  })();
  return {
    samples,
    async stop(): Promise<number> {
      running = false;
      await Promise.all([sampling, adding]);
      await until(async () => (await completed()) >= added, 120_000, `${added} jobs to complete`);
      return added;
    },
  };
}

/** Completions per second over [from, to], from the samples. */
function rate(samples: Sample[], from: number, to: number): number {
  const inside = samples.filter((s) => s.t >= from && s.t <= to);
  const first = inside[0];
  const last = inside[inside.length - 1];
  if (first === undefined || last === undefined || last.t === first.t) return 0;
  return ((last.done - first.done) / (last.t - first.t)) * 1000;
}

/** The first sample from `from` on whose trailing WINDOW_MS ran at 90 % of `steady`. */
function backAt(samples: Sample[], from: number, steady: number): number | undefined {
  return samples.find(
    (s) => s.t - WINDOW_MS >= from && rate(samples, s.t - WINDOW_MS, s.t) >= 0.9 * steady,
  )?.t;
}

async function completedCount(queues: Queue[]): Promise<number> {
  const counts = await Promise.all(queues.map((q) => q.getCompletedCount()));
  return Math.floor(counts.reduce((a, b) => a + b, 0) / queues.length);
}

/**
 * Jobs that ran more than once: a second run needs a second grant, and the record counts its
 * grants (`attempts`), so these are the records granted more than once.
 */
async function recordsGrantedTwice(client: Redis, prefix: string): Promise<number> {
  let count = 0;
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:pair:*`, 'COUNT', 1000);
    cursor = next;
    const values = keys.length > 0 ? await client.mget(...keys) : [];
    for (const raw of values) {
      if (raw !== null && ((JSON.parse(raw) as { attempts?: number }).attempts ?? 0) > 1) count++;
    }
  } while (cursor !== '0');
  return count;
}

/** Resolves with performance.now() once `count` clients (besides this probe) are connected. */
async function clientsBack(redis: TestRedis, count: number): Promise<number> {
  const probe = redis.connect();
  try {
    for (;;) {
      const list = String(await probe.client('LIST'));
      if (list.trim().split('\n').length - 1 >= count) return performance.now();
      await sleep(10);
    }
  } finally {
    probe.disconnect();
  }
}

/** Plain BullMQ under the same flow: its steady rate, for reference. */
async function plainSteady(warmupMs: number, measureMs: number): Promise<number> {
  return withEnv(async (env) => {
    await Promise.all([env.plain(WORKERS), env.plain(WORKERS)]);
    const queue = env.queue(`${env.base}-plain`);
    const jobs = flow(
      async (count) => {
        await queue.addBulk(Array.from({ length: count }, () => ({ name: 'job', data: JOB })));
      },
      () => completedCount([queue]),
    );
    const started = performance.now();
    await sleep(warmupMs + measureMs);
    await jobs.stop();
    return rate(jobs.samples, started + warmupMs, started + warmupMs + measureMs);
  });
}

interface OutageSample {
  steady: number;
  /** From the restart until the redis-server answered (AOF loaded). */
  restartMs: number;
  /** From the server answering until every worker connection was back. */
  reconnectMs: number;
  firstCompletionMs: number;
  /** From the kill until a WINDOW_MS window ran at 90 % of the steady rate. */
  killToSteadyMs: number;
  completedDuringOutage: number;
  jobs: number;
  runTwice: number;
}

/**
 * One paired twin process per side, with the lock store on a Redis of its own (AOF,
 * everysec as in production: a SIGKILL loses no write the store had answered). Jobs flow;
 * the store is SIGKILLed for OUTAGE_MS, then restarted from its AOF.
 */
async function pairedOutage(env: BenchEnv, warmupMs: number): Promise<OutageSample> {
  const lockRedis = await startRedis({
    purpose: 'the benchmarks (npm run bench)',
    killable: true,
    persistence: true,
    args: ['--appendfsync', 'everysec'],
  });
  try {
    // The ledger (unused here) stays off the lock store: only the pairing's clients reconnect.
    const twinEnv = { ...WORKERS, LOCK_URL: lockRedis.url, LEDGER_URL: env.redis.url };
    await Promise.all([env.twin('eu', twinEnv), env.twin('us', twinEnv)]);
    const paired = env.pairedQueue({}, 'first');
    const queues = [env.queue(`${env.base}-eu`), env.queue(`${env.base}-us`)];
    const jobs = flow(
      async (count) => {
        await paired.addBulk(Array.from({ length: count }, () => ({ name: 'job', data: JOB })));
      },
      () => completedCount(queues),
    );
    const started = performance.now();
    await sleep(warmupMs);
    const steady = rate(jobs.samples, started + warmupMs / 2, performance.now());
    // Each worker process holds a lock connection and the lock's subscriber: four in all.
    const workerClients = 4;
    const killedAt = performance.now();
    await lockRedis.kill();
    await sleep(OUTAGE_MS);
    const restartingAt = performance.now();
    await lockRedis.restart();
    const restartedAt = performance.now();
    const atRestart = jobs.samples[jobs.samples.length - 1]?.done ?? 0;
    const reconnectedAt = await clientsBack(lockRedis, workerClients);
    await until(
      async () => backAt(jobs.samples, restartedAt, steady) !== undefined,
      60_000,
      'throughput to return',
    );
    const added = await jobs.stop();
    const atKill = jobs.samples.filter((s) => s.t <= killedAt).pop()?.done ?? 0;
    const firstAfter = jobs.samples.find((s) => s.t >= restartedAt && s.done > atRestart);
    const back = backAt(jobs.samples, restartedAt, steady) ?? Number.NaN;
    return {
      steady,
      restartMs: restartedAt - restartingAt,
      reconnectMs: reconnectedAt - restartedAt,
      firstCompletionMs: (firstAfter?.t ?? Number.NaN) - restartedAt,
      killToSteadyMs: back - killedAt,
      completedDuringOutage: atRestart - atKill,
      jobs: added,
      runTwice: await recordsGrantedTwice(lockRedis.connect(), `${env.base}-lock`),
    };
  } finally {
    await lockRedis.stop();
  }
}

export async function lockStoreOutage({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const warmupMs = quick ? 2_000 : 4_000;
  const bullmq = await plainSteady(warmupMs / 2, warmupMs / 2);
  log(`  bullmq steady: ${Math.round(bullmq)} jobs/s`);
  const samples: OutageSample[] = [];
  for (let i = 0; i < (quick ? 1 : 5); i++) {
    const s = await withEnv((env) => pairedOutage(env, warmupMs));
    samples.push(s);
    log(
      `  paired ${i + 1}: steady ${Math.round(s.steady)} jobs/s; down ${OUTAGE_MS} ms, AOF loaded in ${Math.round(s.restartMs)} ms, ` +
        `workers reconnected +${Math.round(s.reconnectMs)} ms, first completion +${Math.round(s.firstCompletionMs)} ms, ` +
        `90 % throughput ${Math.round(s.killToSteadyMs)} ms after the kill; ${s.completedDuringOutage} completed while down; ` +
        `${s.jobs} jobs, ${s.runTwice} run twice`,
    );
  }
  const ms = (pick: (s: OutageSample) => number) => summarize(samples.map(pick));
  const firstCompletion = ms((s) => s.firstCompletionMs);
  const killToSteady = ms((s) => s.killToSteadyMs);
  const steady = samples.reduce((sum, s) => sum + s.steady, 0) / samples.length;
  const runTwice = samples.reduce((sum, s) => sum + s.runTwice, 0);
  return {
    paired: {
      outageMs: OUTAGE_MS,
      steadyJobsPerSec: Math.round(steady),
      restartMs: ms((s) => s.restartMs),
      reconnectAfterRestartMs: ms((s) => s.reconnectMs),
      firstCompletionAfterRestartMs: firstCompletion,
      killToSteadyMs: killToSteady,
      completedDuringOutage: samples.map((s) => s.completedDuringOutage),
      jobs: samples.reduce((sum, s) => sum + s.jobs, 0),
      runTwice,
    },
    bullmq: { steadyJobsPerSec: Math.round(bullmq) },
    ratio: round(steady / bullmq, 3),
    target: `first completion <= 3 s after the restart; 90 % throughput <= 5 s after the restart; 0 run twice`,
    met:
      firstCompletion.max <= 3_000 &&
      samples.every((s) => s.killToSteadyMs - OUTAGE_MS - s.restartMs <= 5_000) &&
      runTwice === 0,
    config: `jobs awaiting 20 ms, ${BACKLOG} in flight; 2 worker processes x concurrency 50 (paired: one per twin); lock store on its own Redis (AOF, everysec) SIGKILLed for ${OUTAGE_MS} ms, then restarted; ratio = paired steady / bullmq steady (no outage: BullMQ has no lock store)`,
  };
}
