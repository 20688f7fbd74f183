import { PairedLock } from '../../src/index.js';
import type { TestRedis } from '../../test/support/redis.js';
import { until, withEnv } from '../lib/env.js';
import { round } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const LONG_MS = 600_000;

interface IdleRates {
  /** Commands/s on the shadow twin's queue Redis plus the lock store. */
  shadowSide: number;
  /** Commands/s on the executing twin's queue Redis (BullMQ renewing its locks, etc.). */
  executorSide: number;
}

/** Keys matching `pattern` on these servers (SCAN, so a Cluster's masters each count theirs). */
async function countKeys(servers: readonly TestRedis[], pattern: string): Promise<number> {
  let total = 0;
  for (const server of servers) {
    const client = server.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1_000);
      cursor = next;
      total += keys.length;
    } while (cursor !== '0');
  }
  return total;
}

async function addLong(add: (count: number) => Promise<unknown>, n: number): Promise<void> {
  for (let added = 0; added < n; added += 1_000) await add(Math.min(1_000, n - added));
}

/**
 * `n` long jobs run on eu and are parked on us. eu's queue, us's queue and the lock store
 * each get their own Redis, so the shadow's cost is measured apart from BullMQ's own cost
 * of keeping `n` jobs active on the executing side.
 */
async function pairedIdle(
  n: number,
  windowMs: number,
  lockOn: 'redis' | 'cluster' = 'redis',
): Promise<IdleRates> {
  return withEnv(async (env) => {
    const [usRedis, lockRedis] = [await env.extraRedis(), await env.extraRedis()];
    // On a Cluster the records and sessions go there; the ledger stays on lockRedis (not
    // counted then).
    const onCluster = lockOn === 'cluster' ? await env.lockCluster() : undefined;
    const lock = { LOCK_URL: lockRedis.url, LEDGER_URL: lockRedis.url, ...onCluster?.env };
    const lockCalls = async (): Promise<number> => {
      if (onCluster === undefined) return env.commandCalls(lockRedis);
      const masters = await onCluster.cluster.masters();
      const calls = await Promise.all(masters.map((m) => env.commandCalls(m)));
      return calls.reduce((a, b) => a + b, 0);
    };
    await env.twin('eu', { CONCURRENCY: String(n), ...lock });
    // A chosen executor (the default mode), named so that eu runs every job.
    const queue = env.pairedQueue({ us: usRedis }, 'eu');
    const euQueue = env.queue(`${env.base}-eu`);
    const usQueue = env.queue(`${env.base}-us`, usRedis);
    await usQueue.pause();
    await addLong(
      (count) =>
        queue.addBulk(
          Array.from({ length: count }, () => ({ name: 'long', data: { ms: LONG_MS } })),
        ),
      n,
    );
    await until(async () => (await euQueue.getActiveCount()) >= n, 300_000, `${n} active on eu`);
    // Active in BullMQ is not yet granted: us must find every record eu's (else it wins some
    // of the races, and runs them).
    const lockServers = onCluster === undefined ? [lockRedis] : await onCluster.cluster.masters();
    await until(
      async () => (await countKeys(lockServers, `${env.base}-lock:pair:*`)) >= n,
      300_000,
      `${n} records granted to eu`,
    );
    await env.twin('us', { CONCURRENCY: '50', QUEUE_URL: usRedis.url, ...lock });
    await usQueue.resume();
    await until(async () => (await usQueue.getDelayedCount()) >= n, 300_000, `${n} parked on us`);
    const shadowCalls = async () => (await env.commandCalls(usRedis)) + (await lockCalls());
    const [shadowBefore, executorBefore] = [await shadowCalls(), await env.commandCalls()];
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const perSec = (calls: number) => calls / (windowMs / 1000);
    return {
      shadowSide: perSec((await shadowCalls()) - shadowBefore),
      executorSide: perSec((await env.commandCalls()) - executorBefore),
    };
  });
}

/** Plain BullMQ: `n` long jobs active on one worker process; its Redis's commands/s. */
async function plainIdle(n: number, windowMs: number): Promise<number> {
  return withEnv(async (env) => {
    await env.plain({ CONCURRENCY: String(n) });
    const queue = env.queue(`${env.base}-plain`);
    await addLong(
      (count) =>
        queue.addBulk(
          Array.from({ length: count }, () => ({ name: 'long', data: { ms: LONG_MS } })),
        ),
      n,
    );
    await until(async () => (await queue.getActiveCount()) >= n, 300_000, `${n} active`);
    const before = await env.commandCalls();
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    return ((await env.commandCalls()) - before) / (windowMs / 1000);
  });
}

export async function shadowIdle({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const [small, large] = [10, quick ? 200 : 10_000];
  // A full window spans two of BullMQ's lock renewals (every 15 s) and three session
  // refreshes, so periodic work shows; the quick window only proves the scenario runs.
  const windowMs = quick ? 3_000 : 30_000;
  const paired = [await pairedIdle(small, windowMs), await pairedIdle(large, windowMs)] as const;
  const plain = [await plainIdle(small, windowMs), await plainIdle(large, windowMs)] as const;
  const shadow = paired.map((r) => round(r.shadowSide, 1));
  log(
    `  shadow idle: shadow side ${shadow.join(' -> ')} cmd/s; bullmq executing ${plain.map((r) => r.toFixed(1)).join(' -> ')} cmd/s`,
  );
  const ratio = round(paired[1].shadowSide / paired[0].shadowSide, 2);
  return {
    paired: {
      jobs: [small, large],
      commandsPerSec: shadow,
      executorSideCommandsPerSec: paired.map((r) => round(r.executorSide, 1)),
    },
    bullmq: { jobs: [small, large], commandsPerSec: plain.map((r) => round(r, 1)) },
    ratio,
    target: `shadow-side commands/s with ${large} shadowed long jobs / with ${small} <= 1.2`,
    met: ratio <= 1.2,
    config: `long jobs running on eu and parked on us; shadow side = us queue Redis + lock store; ${windowMs / 1000} s window; bullmq: the same jobs active unpaired (its own cost grows with active jobs too)`,
  };
}

/**
 * cluster_shadow_idle: shadow_idle with the lock store on a local Redis Cluster (3 masters +
 * 3 replicas): shadowing 10 000 jobs must cost what shadowing 10 does there too (the watch
 * is one call per master per livenessIntervalMs, sessions one refresh per master).
 */
export async function clusterShadowIdle({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const [small, large] = [10, quick ? 200 : 10_000];
  const windowMs = quick ? 3_000 : 30_000;
  const paired = [
    await pairedIdle(small, windowMs, 'cluster'),
    await pairedIdle(large, windowMs, 'cluster'),
  ] as const;
  const shadow = paired.map((r) => round(r.shadowSide, 1));
  log(`  shadow idle, lock store on a Cluster: shadow side ${shadow.join(' -> ')} cmd/s`);
  const ratio = round(paired[1].shadowSide / paired[0].shadowSide, 2);
  return {
    paired: { jobs: [small, large], commandsPerSec: shadow },
    bullmq: null,
    ratio,
    target: `shadow-side commands/s with ${large} shadowed long jobs / with ${small} <= 1.2, as on one Redis`,
    met: ratio <= 1.2,
    config: `as shadow_idle, the lock store a local Cluster (shadow side = us queue Redis + the Cluster's masters); ${windowMs / 1000} s window`,
  };
}

export async function bytesPerPair({ log }: BenchOptions): Promise<ScenarioResult> {
  return withEnv(async (env) => {
    const client = env.client();
    const prefix = `${env.base}-bytes`;
    const lock = new PairedLock(client, {
      member: 'eu',
      prefix,
      leaseMs: 2_000,
      heartbeatMs: 500,
      retentionMs: 2_000,
    });
    const count = 100;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const runs = Array.from({ length: count }, (_, i) =>
      lock.run(`job-${i}-${env.base}`, () => gate.then(() => ({ ok: true }))),
    );
    await until(async () => (await client.dbsize()) >= count, 10_000, 'records to exist');
    let inFlightBytes = 0;
    for (let i = 0; i < count; i++) {
      inFlightBytes += Number(
        await client.call('MEMORY', 'USAGE', `${prefix}:pair:{job-${i}-${env.base}}`),
      );
    }
    release();
    await Promise.all(runs);
    await lock.close();
    await new Promise((resolve) => setTimeout(resolve, 2_000 + 1_500)); // retention, plus slack
    const keysLeft = await client.dbsize();
    const plainQueue = env.queue(`${env.base}-plain`);
    const job = await plainQueue.add('job', {});
    const bullmqJobBytes = Number(
      await client.call('MEMORY', 'USAGE', `bull:${env.base}-plain:${job.id}`),
    );
    const bytes = Math.round(inFlightBytes / count);
    log(
      `  bytes per in-flight pair: ${bytes} B (a BullMQ job hash: ${bullmqJobBytes} B); keys left after retention: ${keysLeft}`,
    );
    return {
      paired: { bytesPerInFlightPair: bytes, keysLeftAfterRetention: keysLeft },
      bullmq: { bytesPerJobHash: bullmqJobBytes },
      ratio: round(bytes / bullmqJobBytes, 3),
      target: '<= 512 B per in-flight pair; 0 keys after retention',
      met: bytes <= 512 && keysLeft === 0,
      config: `MEMORY USAGE of ${count} running pair records (key storage); retention 2 s, then DBSIZE`,
    };
  });
}
