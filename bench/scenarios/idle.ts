/**
 * What idle paired workers (no jobs at all) cost the lock store: commands/s from INFO
 * commandstats deltas on a lock store of its own (queues on another Redis).
 *   idle_per_process: 2, 20 and 200 worker processes (half per twin);
 *   idle_queues: one process per twin pairing 1 and 50 queues.
 * Stand-ins: bench/fixtures/idle-host.ts hosts many sets in one Node process.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { commandsByName, withEnv } from '../lib/env.js';
import { round } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const HOST = new URL('../fixtures/idle-host.ts', import.meta.url);
/** After every host says ready, before the window opens (start-up calls settle). */
const SETTLE_MS = 1_000;

interface Idle {
  /** Lock-store commands/s over the window, all processes together. */
  total: number;
  /** The same, per process stood for. */
  perProcess: number;
  /** The busiest commands, per second per process (script-internal calls included). */
  top: Record<string, number>;
}

/** Two hosts (eu, us), `sets` sets each; `processes`: how many processes they stand for. */
async function idleRate(
  sets: number,
  processes: number,
  windowMs: number,
  settings: Record<string, string>,
): Promise<Idle> {
  return withEnv(async (env) => {
    const lock = await env.extraRedis();
    const common = {
      SETS: String(sets),
      BASE: env.base,
      QUEUE_URL: env.redis.url,
      LOCK_URL: lock.url,
      LOCK_PREFIX: `${env.base}-lock`,
      ...settings,
    };
    await Promise.all(['eu', 'us'].map((twin) => env.fixture(HOST, { ...common, TWIN: twin })));
    await sleep(SETTLE_MS);
    const client = lock.connect();
    const before = await commandsByName(client);
    await sleep(windowMs);
    const after = await commandsByName(client);
    const perSec = new Map<string, number>();
    for (const [name, calls] of after) {
      const delta = calls - (before.get(name) ?? 0);
      if (delta > 0) perSec.set(name, delta / (windowMs / 1000));
    }
    const total = [...perSec.values()].reduce((a, b) => a + b, 0);
    const top = Object.fromEntries(
      [...perSec]
        .sort((x, y) => y[1] - x[1])
        .slice(0, 6)
        .map(([name, rate]) => [name, round(rate / processes, 2)]),
    );
    return { total: round(total, 1), perProcess: round(total / processes, 2), top };
  });
}

export async function idlePerProcess({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const sizes = quick ? [2, 20] : [2, 20, 200];
  // A full window spans one session heartbeat (a third of the 30 s default lease) per process.
  const windowMs = quick ? 3_000 : 10_000;
  const runs: Idle[] = [];
  for (const size of sizes) {
    runs.push(await idleRate(size / 2, size, windowMs, {}));
    const run = runs[runs.length - 1] as Idle;
    log(
      `  ${size} idle processes: ${run.total} lock-store cmd/s, ${run.perProcess} per process ${JSON.stringify(run.top)}`,
    );
  }
  const perProcess = runs.map((r) => r.perProcess);
  return {
    paired: {
      processes: sizes,
      commandsPerSecPerProcess: perProcess,
      totalCommandsPerSec: runs.map((r) => r.total),
      topPerProcess: runs.map((r) => r.top),
    },
    bullmq: null,
    ratio: null,
    target: 'per process <= 5 at every size',
    met: perProcess.every((rate) => rate <= 5),
    config: `idle worker processes (no job ever added), half twin eu and half twin us, lock store on a Redis of its own; stand-ins: 2 Node processes (one per twin) each hosting ${sizes.map((s) => s / 2).join(' / ')} independent sets (bench/fixtures/idle-host.ts), a set = its own queue connection, lock connection, BullMQ Worker (concurrency 50) and PairedProcessor (own session, liveness subscriber and timers; library defaults but prefix and group), waited ready; so 2 processes are 2 real-equivalent ones, larger sizes share 2 event loops; INFO commandstats deltas (script-internal calls included, INFO excluded) over ${windowMs / 1000} s after a ${SETTLE_MS / 1000} s settle${quick ? ' (quick: the window is shorter than a 10 s session heartbeat, so that share is sampled)' : ''}`,
  };
}

export async function idleQueues({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const sizes = [1, 50] as const;
  const limits = [5, 15] as const;
  const windowMs = quick ? 3_000 : 10_000;
  const runs: Idle[] = [];
  for (const queues of sizes) {
    // Two processes (eu and us), each pairing `queues` queues: one PairedProcessor and Worker
    // per queue, sharing the process's queue and lock connections.
    runs.push(await idleRate(queues, 2, windowMs, { SHARE_CONNECTIONS: '1', QUEUE_PER_SET: '1' }));
    const run = runs[runs.length - 1] as Idle;
    log(
      `  one process pairing ${queues} queue(s): ${run.perProcess} lock-store cmd/s ${JSON.stringify(run.top)}`,
    );
  }
  const perProcess = runs.map((r) => r.perProcess);
  return {
    paired: {
      queues: [...sizes],
      commandsPerSecPerProcess: perProcess,
      topPerProcess: runs.map((r) => r.top),
    },
    bullmq: null,
    ratio: null,
    target: '<= 5 (1 queue), <= 15 (50 queues)',
    met: perProcess.every((rate, i) => rate <= (limits[i] as number)),
    config: `2 idle processes (twin eu, twin us), each pairing ${sizes.join(' / ')} queues as a user would write it: one PairedProcessor + BullMQ Worker (concurrency 50) per queue, one shared queue connection and one shared lock connection per process (bench/fixtures/idle-host.ts, library defaults but prefix and group), no job ever added; lock store on a Redis of its own; INFO commandstats deltas over ${windowMs / 1000} s after a ${SETTLE_MS / 1000} s settle, halved per process`,
  };
}
