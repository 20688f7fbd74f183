import { PairedLock } from '../../src/index.js';
import { until, withEnv } from '../lib/env.js';
import { round } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const LONG_MS = 600_000;

/** Redis commands/s while `n` long jobs run on eu and are parked on us (paired), or just run (plain). */
async function idleRate(n: number, windowMs: number, paired: boolean): Promise<number> {
  return withEnv(async (env) => {
    const concurrency = { CONCURRENCY: String(Math.max(n, 1)) };
    if (paired) {
      await env.twin('eu', concurrency);
      const queue = env.pairedQueue();
      const euQueue = env.queue(`${env.base}-eu`);
      const usQueue = env.queue(`${env.base}-us`);
      await usQueue.pause();
      for (let added = 0; added < n; added += 1_000) {
        await queue.addBulk(
          Array.from({ length: Math.min(1_000, n - added) }, () => ({
            name: 'long',
            data: { ms: LONG_MS },
          })),
        );
      }
      await until(async () => (await euQueue.getActiveCount()) >= n, 300_000, `${n} active on eu`);
      await env.twin('us', { CONCURRENCY: '50' });
      await usQueue.resume();
      await until(async () => (await usQueue.getDelayedCount()) >= n, 300_000, `${n} parked on us`);
    } else {
      await env.plain(concurrency);
      const queue = env.queue(`${env.base}-plain`);
      for (let added = 0; added < n; added += 1_000) {
        await queue.addBulk(
          Array.from({ length: Math.min(1_000, n - added) }, () => ({
            name: 'long',
            data: { ms: LONG_MS },
          })),
        );
      }
      await until(async () => (await queue.getActiveCount()) >= n, 300_000, `${n} active`);
    }
    const before = await env.commandCalls();
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    return ((await env.commandCalls()) - before) / (windowMs / 1000);
  });
}

export async function shadowIdle({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const [small, large] = [10, quick ? 200 : 10_000];
  // A full window spans a whole lease, so heartbeats, lock renewals and lease-end re-checks all show.
  const windowMs = quick ? 3_000 : 32_000;
  const paired = {
    small: await idleRate(small, windowMs, true),
    large: await idleRate(large, windowMs, true),
  };
  const plain = {
    small: await idleRate(small, windowMs, false),
    large: await idleRate(large, windowMs, false),
  };
  log(
    `  shadow idle: paired ${paired.small.toFixed(1)} -> ${paired.large.toFixed(1)} cmd/s; bullmq ${plain.small.toFixed(1)} -> ${plain.large.toFixed(1)} cmd/s`,
  );
  const ratio = round(paired.large / paired.small, 2);
  return {
    paired: {
      jobs: [small, large],
      commandsPerSec: [round(paired.small, 1), round(paired.large, 1)],
    },
    bullmq: {
      jobs: [small, large],
      commandsPerSec: [round(plain.small, 1), round(plain.large, 1)],
      ratio: round(plain.large / plain.small, 2),
    },
    ratio,
    target: `commands/s with ${large} shadowed long jobs / with ${small} <= 1.2`,
    met: ratio <= 1.2,
    config: `long jobs running on eu (lease 30 s, heartbeat 10 s) and parked on us; ${windowMs / 1000} s window; whole Redis; bullmq: the same jobs running, unpaired`,
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
