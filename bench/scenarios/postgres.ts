/**
 * A twin on PostgreSQL (BullMQ's createPostgresBackend): a mixed pair (eu on Redis, us on
 * PostgreSQL, the lock store on Redis) against plain BullMQ on PostgreSQL in the same run.
 */
import type { FixtureProcess } from '../../test/support/child.js';
import type { TestPostgres } from '../../test/support/postgres.js';
import { type BenchEnv, until, withEnv } from '../lib/env.js';
import { round, summarize } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const WORKERS = { CONCURRENCY: '50' };
const CHUNK = 500;

async function addAll(add: (count: number) => Promise<unknown>, jobs: number): Promise<void> {
  for (let added = 0; added < jobs; added += CHUNK) await add(Math.min(CHUNK, jobs - added));
}

/** Plain BullMQ on PostgreSQL: two worker processes on one queue; jobs/s. */
async function plainPg(jobs: number, ms: number): Promise<number> {
  return withEnv(async (env) => {
    const pg = await env.postgres();
    const name = `${env.base}-plain`;
    await Promise.all([
      env.plain({ ...WORKERS, QUEUE_PG: pg.url }),
      env.plain({ ...WORKERS, QUEUE_PG: pg.url }),
    ]);
    const queue = env.pgQueue(name, pg);
    const started = performance.now();
    await addAll(
      (count) =>
        queue.addBulk(Array.from({ length: count }, () => ({ name: 'job', data: { ms } }))),
      jobs,
    );
    await until(async () => (await queue.getCompletedCount()) >= jobs, 600_000, 'plain jobs');
    return jobs / ((performance.now() - started) / 1000);
  });
}

/** The mixed pair's two twin processes: eu on `euRedis` (default the env's), us on `pg`. */
async function mixedTwins(
  env: BenchEnv,
  pg: TestPostgres,
  extra: Record<string, string> = {},
  euQueueUrl = env.redis.url,
): Promise<{ eu: FixtureProcess; us: FixtureProcess }> {
  const [eu, us] = await Promise.all([
    env.twin('eu', { ...WORKERS, ...extra, QUEUE_URL: euQueueUrl }),
    env.twin('us', { ...WORKERS, ...extra, QUEUE_PG: pg.url }),
  ]);
  return { eu, us };
}

/** Logical jobs completed on both twins of the mixed pair. */
async function bothCompleted(env: BenchEnv, pg: TestPostgres): Promise<number> {
  const [eu, us] = await Promise.all([
    env.queue(`${env.base}-eu`).getCompletedCount(),
    env.pgQueue(`${env.base}-us`, pg).getCompletedCount(),
  ]);
  return Math.min(eu, us);
}

export async function pgThroughputIo20({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 300 : 3_000;
  const ms = 20;
  const bullmq = await plainPg(jobs, ms);
  log(`  bullmq on PostgreSQL: ${Math.round(bullmq)} jobs/s`);
  const paired = await withEnv(async (env) => {
    const pg = await env.postgres();
    await mixedTwins(env, pg);
    const queue = env.mixedPairedQueue(pg);
    const started = performance.now();
    await addAll(
      (count) =>
        queue.addBulk(Array.from({ length: count }, () => ({ name: 'job', data: { ms } }))),
      jobs,
    );
    await until(async () => (await bothCompleted(env, pg)) >= jobs, 600_000, 'paired jobs');
    return jobs / ((performance.now() - started) / 1000);
  });
  log(`  paired (eu Redis + us PostgreSQL): ${Math.round(paired)} logical jobs/s`);
  const ratio = round(paired / bullmq, 3);
  return {
    paired: { jobsPerSec: Math.round(paired), jobs },
    bullmq: { jobsPerSec: Math.round(bullmq), jobs },
    ratio,
    target: 'ratio >= 0.45',
    met: ratio >= 0.45,
    config: `${jobs} jobs awaiting ${ms} ms; paired: twin eu on Redis, twin us on PostgreSQL 15 (one worker process each, concurrency 50; lock store on the Redis); plain BullMQ: two worker processes on one PostgreSQL queue, concurrency 50`,
  };
}

export async function pgTakeoverKill({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const samples = quick ? 3 : 10;
  const values: number[] = [];
  for (let i = 0; i < samples; i++) {
    values.push(
      await withEnv(async (env) => {
        const pg = await env.postgres();
        const verbose = { QUIET: '0' };
        // us is the twin on PostgreSQL (mixedPairedQueue): chosen to execute, then killed.
        const us = await env.twin('us', { ...verbose, QUEUE_PG: pg.url });
        const { id } = await env.mixedPairedQueue(pg, env.redis, 'us').add('long', { ms: 600_000 });
        await us.next('started', (l) => l.id === id, 60_000);
        const eu = await env.twin('eu', verbose);
        await eu.next('shadowed', (l) => l.jobId === id, 60_000);
        const killedAt = Date.now();
        us.child.kill('SIGKILL');
        const started = await eu.next('started', (l) => l.id === id, 60_000);
        return Number(started.at) - killedAt;
      }),
    );
    log(`  paired kill (executor on PostgreSQL) ${i + 1}/${samples}: ${values.at(-1)} ms`);
  }
  const p = summarize(values);
  return {
    paired: { ...p },
    bullmq: null,
    ratio: null,
    target: 'paired p99 <= 250 ms (liveness is the lock store’s)',
    met: p.p99 <= 250,
    config:
      'SIGKILL of the executor, a worker process of the twin on PostgreSQL; the twin on Redis starts the job; default lease 30 s, liveness on',
  };
}

export async function redisOutage({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 200 : 1_000;
  return withEnv(async (env) => {
    const pg = await env.postgres();
    // eu's queue on a Redis of its own (killed); the lock store stays on the env's Redis.
    const euRedis = await env.extraRedis();
    await mixedTwins(env, pg, {}, euRedis.url);
    const queue = env.mixedPairedQueue(pg, euRedis);
    const us = env.pgQueue(`${env.base}-us`, pg);
    await addAll(
      (count) =>
        queue.addBulk(Array.from({ length: count }, () => ({ name: 'job', data: { ms: 20 } }))),
      jobs,
    );
    await until(async () => (await us.getCompletedCount()) >= jobs * 0.3, 600_000, '30 %');
    const killedAt = performance.now();
    await euRedis.kill();
    const doneAtKill = await us.getCompletedCount();
    log(`  eu's Redis SIGKILLed with ${doneAtKill} of ${jobs} completed on us`);
    let lost = 0;
    try {
      await until(async () => (await us.getCompletedCount()) >= jobs, 120_000, 'every job on us');
    } catch {
      lost = jobs - (await us.getCompletedCount());
    }
    const seconds = round((performance.now() - killedAt) / 1000, 2);
    log(`  every job completed on us ${seconds} s after the kill; lost ${lost}`);
    return {
      paired: { jobs, completedOnUsAtKill: doneAtKill, lost, secondsUntilAllOnUs: seconds },
      bullmq: null,
      ratio: null,
      target: '0 lost; every job completed on the PostgreSQL twin',
      met: lost === 0,
      config: `${jobs} jobs awaiting 20 ms; eu on Redis, us on PostgreSQL 15, one worker process each (concurrency 50), lock store on another Redis; eu's Redis SIGKILLed at 30 % and kept down (eu's processes leave eu's presence once their Redis stops answering, so us runs the jobs chosen for eu at once)`,
    };
  });
}
