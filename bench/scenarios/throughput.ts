import type { ExecutorChoice } from '../../src/index.js';
import { type BenchEnv, commandsByName, until, withEnv } from '../lib/env.js';
import { round } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const CHUNK = 1_000;
/** What the paired runs use: BENCH_EXECUTOR if set, else whatever PairedQueue defaults to. */
const EXECUTOR_LABEL = process.env.BENCH_EXECUTOR
  ? `'${process.env.BENCH_EXECUTOR}' (BENCH_EXECUTOR)`
  : 'the library default';
const WORKERS = { CONCURRENCY: '50' };

interface Run {
  jobs: number;
  seconds: number;
  jobsPerSec: number;
  commandsPerJob: number;
  /** Per command name (script-internal calls under their own names), calls per (logical) job. */
  commandsByName: Record<string, number>;
  /** The Redis server's CPU time (used_cpu_sys + used_cpu_user) per (logical) job, µs. */
  redisCpuUsPerJob: number;
  /**
   * INFO commandstats usec per (logical) job, µs: a command's own time, but a script's time
   * includes the commands it calls, which have entries of their own too (counted twice).
   */
  commandUsPerJob: number;
}

async function completed(env: BenchEnv, queues: string[]): Promise<number> {
  const counts = await Promise.all(queues.map((name) => env.queue(name).getCompletedCount()));
  return Math.min(...counts);
}

async function measure(
  env: BenchEnv,
  jobs: number,
  add: (count: number) => Promise<void>,
  queues: string[],
): Promise<Run> {
  const observer = env.client();
  const before = await commandsByName(observer);
  const cpuBefore = await env.redisCpu();
  const started = performance.now();
  for (let added = 0; added < jobs; added += CHUNK) await add(Math.min(CHUNK, jobs - added));
  await until(
    async () => (await completed(env, queues)) >= jobs,
    600_000,
    `${jobs} jobs to complete`,
  );
  const seconds = (performance.now() - started) / 1000;
  const after = await commandsByName(observer);
  const cpuAfter = await env.redisCpu();
  const byName = [...after]
    .map(([name, calls]) => [name, round((calls - (before.get(name) ?? 0)) / jobs, 2)] as const)
    .filter(([, perJob]) => perJob > 0)
    .sort((a, b) => b[1] - a[1]);
  const commands = byName.reduce((sum, [, perJob]) => sum + perJob, 0);
  return {
    jobs,
    seconds: round(seconds),
    jobsPerSec: Math.round(jobs / seconds),
    commandsPerJob: round(commands, 1),
    commandsByName: Object.fromEntries(byName),
    redisCpuUsPerJob: round(((cpuAfter.cpuMs - cpuBefore.cpuMs) * 1000) / jobs, 1),
    commandUsPerJob: round(((cpuAfter.commandMs - cpuBefore.commandMs) * 1000) / jobs, 1),
  };
}

/** Paired: one worker process per twin (eu, us), each at concurrency 50; logical jobs. */
export function pairedRun(
  jobs: number,
  data: Record<string, unknown>,
  /** Unset (and BENCH_EXECUTOR unset): the library's default executor choice. */
  executor: ExecutorChoice | undefined = process.env.BENCH_EXECUTOR as ExecutorChoice | undefined,
  /** Pair records on a local Redis Cluster instead of the queues' Redis. */
  lockOnCluster = false,
): Promise<Run> {
  return withEnv(async (env) => {
    const lock = lockOnCluster ? await env.cluster() : {};
    await Promise.all([
      env.twin('eu', { ...WORKERS, ...lock }),
      env.twin('us', { ...WORKERS, ...lock }),
    ]);
    const queue = env.pairedQueue({}, executor);
    return measure(
      env,
      jobs,
      async (count) => {
        await queue.addBulk(Array.from({ length: count }, () => ({ name: 'job', data })));
      },
      [`${env.base}-eu`, `${env.base}-us`],
    );
  });
}

/** Plain BullMQ: two worker processes on one queue, each at concurrency 50. */
export function plainRun(jobs: number, data: Record<string, unknown>): Promise<Run> {
  return withEnv(async (env) => {
    await Promise.all([env.plain(WORKERS), env.plain(WORKERS)]);
    const queue = env.queue(`${env.base}-plain`);
    return measure(
      env,
      jobs,
      async (count) => {
        await queue.addBulk(Array.from({ length: count }, () => ({ name: 'job', data })));
      },
      [`${env.base}-plain`],
    );
  });
}

/** Per kind: jobs (quick, full), what each job does, and the ratio the target asks for. */
const KINDS = {
  // Each logical job is two BullMQ jobs on one CPU-bound box: 0.5 of plain BullMQ is the ceiling.
  noop: { jobs: [1_000, 20_000], ms: 0, minimum: 0.45 },
  io20: { jobs: [500, 5_000], ms: 20, minimum: 0.47 },
  // Slot-bound (100 slots x 5 jobs/s each): the shadow copy holds no slot, so paired can match.
  io200: { jobs: [1_000, 10_000], ms: 200, minimum: 0.97 },
} as const;
export type ThroughputKind = keyof typeof KINDS;

export async function throughput(
  { quick, log }: BenchOptions,
  kind: ThroughputKind,
): Promise<{ result: ScenarioResult; paired: Run; bullmq: Run }> {
  const { jobs: counts, ms, minimum } = KINDS[kind];
  const jobs = quick ? counts[0] : counts[1];
  const data = ms > 0 ? { ms } : {};
  const bullmq = await plainRun(jobs, data);
  log(`  bullmq ${kind}: ${bullmq.jobsPerSec} jobs/s, ${bullmq.commandsPerJob} commands/job`);
  const paired = await pairedRun(jobs, data);
  log(
    `  paired ${kind}: ${paired.jobsPerSec} logical jobs/s, ${paired.commandsPerJob} commands/job`,
  );
  const ratio = round(paired.jobsPerSec / bullmq.jobsPerSec, 3);
  return {
    paired,
    bullmq,
    result: {
      paired: { ...paired },
      bullmq: { ...bullmq },
      ratio,
      target: `ratio >= ${minimum}`,
      met: ratio >= minimum,
      config: `${jobs} jobs${ms > 0 ? ` awaiting ${ms} ms` : ' (no-op)'}; 2 worker processes x concurrency 50 (paired: one per twin, executor ${EXECUTOR_LABEL}); one Redis`,
    },
  };
}

/** redis_cpu_per_job: the Redis server's CPU per logical job over the throughput_noop runs. */
export function redisCpuPerJob(paired: Run, bullmq: Run): ScenarioResult {
  const ratio = round(paired.redisCpuUsPerJob / bullmq.redisCpuUsPerJob, 3);
  const per = (run: Run) => ({
    redisCpuUsPerJob: run.redisCpuUsPerJob,
    commandUsPerJob: run.commandUsPerJob,
    jobs: run.jobs,
    seconds: run.seconds,
  });
  return {
    paired: { ...per(paired), executor: EXECUTOR_LABEL },
    bullmq: per(bullmq),
    ratio,
    target: 'ratio <= 2.2',
    met: ratio <= 2.2,
    config:
      "the throughput_noop runs: used_cpu_sys + used_cpu_user of the one redis-server (queues and pair records on it; the bench's 20 ms completed-count polling included, 2 queues paired vs 1 plain) before and after, per logical job; commandUsPerJob: the sum of INFO commandstats usec, for reference only (a script's usec includes the commands it calls, which are also counted under their own names, and paired runs more scripts); ratio on the server CPU",
  };
}

export function commandsPerJob(paired: Run, bullmq: Run): ScenarioResult {
  const ratio = round(paired.commandsPerJob / bullmq.commandsPerJob, 3);
  return {
    paired: {
      commandsPerJob: paired.commandsPerJob,
      jobs: paired.jobs,
      byName: paired.commandsByName,
    },
    bullmq: {
      commandsPerJob: bullmq.commandsPerJob,
      jobs: bullmq.jobs,
      byName: bullmq.commandsByName,
    },
    ratio,
    target: 'ratio <= 2.2',
    met: ratio <= 2.2,
    config:
      'INFO commandstats calls (script-internal calls included) over the throughput_noop runs, per logical job',
  };
}

export async function lateTwinDrain(
  { quick, log }: BenchOptions,
  plainNoop: Run,
): Promise<ScenarioResult> {
  const jobs = quick ? 1_000 : 20_000;
  const measured = await withEnv(async (env) => {
    const ledger = { NO_LEDGER: '0' };
    await env.twin('eu', { ...WORKERS, ...ledger });
    const usQueue = env.queue(`${env.base}-us`);
    await usQueue.pause(); // us is "down": its copies pile up
    const queue = env.pairedQueue(); // the library's default executor
    for (let added = 0; added < jobs; added += CHUNK) {
      await queue.addBulk(
        Array.from({ length: Math.min(CHUNK, jobs - added) }, () => ({ name: 'job', data: {} })),
      );
    }
    await until(
      async () => (await completed(env, [`${env.base}-eu`])) >= jobs,
      600_000,
      'eu to run everything',
    );
    await Promise.all([
      env.twin('us', { ...WORKERS, ...ledger }),
      env.twin('us', { ...WORKERS, ...ledger }),
    ]);
    const started = performance.now();
    await usQueue.resume(); // us returns
    await until(
      async () => (await completed(env, [`${env.base}-us`])) >= jobs,
      600_000,
      'us to drain',
    );
    const seconds = (performance.now() - started) / 1000;
    // Ledger entries are written per execution (start and end); count starts on us.
    const entries = await env.client().lrange(`${env.base}:ledger`, 0, -1);
    const executionsOnReturn = entries.filter(
      (raw) => raw.includes('"twin":"us"') && raw.includes('"phase":"start"'),
    ).length;
    return {
      jobs,
      seconds: round(seconds),
      jobsPerSec: Math.round(jobs / seconds),
      executionsOnReturn,
    };
  });
  log(
    `  late twin drain: ${measured.jobsPerSec} jobs/s, ${measured.executionsOnReturn} executions on return`,
  );
  const ratio = round(measured.jobsPerSec / plainNoop.jobsPerSec, 3);
  return {
    paired: measured,
    bullmq: { jobsPerSec: plainNoop.jobsPerSec, from: 'throughput_noop' },
    ratio,
    target: 'ratio >= 0.8 and 0 executions',
    met: ratio >= 0.8 && measured.executionsOnReturn === 0,
    config: `${jobs} jobs settled by eu while us was paused; us returns with 2 worker processes x concurrency 50`,
  };
}

/** cluster_throughput_noop: no-op jobs, pair records on a Redis Cluster, against one Redis. */
export async function clusterThroughputNoop({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 1_000 : 10_000;
  const oneRedis = await pairedRun(jobs, {});
  const onCluster = await pairedRun(jobs, {}, undefined, true);
  log(`  paired, one Redis: ${oneRedis.jobsPerSec} logical jobs/s`);
  log(`  paired, records on a Cluster: ${onCluster.jobsPerSec} logical jobs/s`);
  const ratio = round(onCluster.jobsPerSec / oneRedis.jobsPerSec, 3);
  return {
    paired: { ...onCluster },
    bullmq: null,
    ratio,
    // The issue names no target; ours: a Cluster costs the pair at most a fifth.
    target: 'ratio >= 0.8 of the one-Redis paired run',
    met: ratio >= 0.8,
    config: `${jobs} no-op jobs; 2 twin processes x concurrency 50; pair records on a local Cluster (3 masters + 3 replicas; sessions and liveness off there, per-record leases) vs on the queues' own Redis; commands counted on the queues' Redis only`,
  };
}
