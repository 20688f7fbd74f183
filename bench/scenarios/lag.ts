/**
 * twin_completion_lag: for each job, how long after the executor's copy completed the twin's
 * copy did (BullMQ's finishedOn on each twin's queue), at one site and in the WAN lab.
 */
import type { Job, Queue } from 'bullmq';
import { REGIONS } from '../../test/support/wan-topology.js';
import { until, withEnv } from '../lib/env.js';
import { type LatencySummary, round, spread } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';
import { atSteadyRate, withGeo } from './geo.js';

interface Lag extends LatencySummary {
  jobs: number;
  /** Jobs whose twin copy completed before the executor's (a negative lag). */
  twinFirst: number;
  /** Jobs each twin executed (from the result both copies return). */
  executedBy: Record<string, number>;
}

const DATA = { ms: 20 };

/** finishedOn per job id, and who executed it (the twin-worker fixture returns `{ by }`). */
async function finished(queue: Queue): Promise<Map<string, { at: number; by?: string }>> {
  const out = new Map<string, { at: number; by?: string }>();
  for (const job of (await queue.getJobs(['completed'], 0, -1)) as Job[]) {
    if (job.id === undefined || job.finishedOn === undefined) continue;
    const by = (job.returnvalue as { by?: unknown } | null)?.by;
    out.set(job.id, { at: job.finishedOn, ...(typeof by === 'string' ? { by } : {}) });
  }
  return out;
}

/** Adds `jobs` at `rate`/s (ids l0…), waits for every copy, and measures the lag per job. */
async function lagRun(
  jobs: number,
  rate: number,
  add: (id: string) => Promise<unknown>,
  queues: Record<string, Queue>,
): Promise<Lag> {
  const pending: Promise<unknown>[] = [];
  await atSteadyRate(jobs, rate, (n) => {
    pending.push(add(`l${n}`));
  });
  await Promise.all(pending);
  const counts = async () =>
    Math.min(...(await Promise.all(Object.values(queues).map((q) => q.getCompletedCount()))));
  await until(async () => (await counts()) >= jobs, 120_000, `${jobs} jobs on both twins`);
  const [[a, aq], [b, bq]] = Object.entries(queues) as [[string, Queue], [string, Queue]];
  const [onA, onB] = [await finished(aq), await finished(bq)];
  const lags: number[] = [];
  const executedBy: Record<string, number> = {};
  for (const [id, x] of onA) {
    const y = onB.get(id);
    if (y === undefined) continue;
    // The executor is who the result names; without one, whichever copy finished first.
    const by = x.by ?? y.by ?? (x.at <= y.at ? a : b);
    executedBy[by] = (executedBy[by] ?? 0) + 1;
    lags.push(by === a ? y.at - x.at : x.at - y.at);
  }
  return {
    ...spread(lags),
    jobs,
    twinFirst: lags.filter((lag) => lag < 0).length,
    executedBy,
  };
}

export async function twinCompletionLag({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const rate = quick ? 100 : 200;
  const seconds = quick ? 3 : 20;
  const jobs = rate * seconds;
  const oneSite = await withEnv(async (env) => {
    const settings = { CONCURRENCY: '50', WAIT_READY: '1' };
    await Promise.all([env.twin('eu', settings), env.twin('us', settings)]);
    const queue = env.pairedQueue(); // the library's default executor
    await queue.waitUntilReady();
    return lagRun(jobs, rate, (id) => queue.add('job', DATA, { jobId: id }), {
      eu: env.queue(`${env.base}-eu`),
      us: env.queue(`${env.base}-us`),
    });
  });
  log(
    `  one site: twin's copy completed p50 ${oneSite.p50} / p99 ${oneSite.p99} ms after the executor's (max ${oneSite.max}, n=${oneSite.samples})`,
  );
  const wan = await withGeo('paired', (env) =>
    lagRun(
      jobs,
      rate,
      (id) => env.add(id, DATA),
      Object.fromEntries(REGIONS.map((r) => [r, env.observedIn[r] as Queue])),
    ),
  );
  log(
    `  WAN lab: twin's copy completed p50 ${wan.p50} / p99 ${wan.p99} ms after the executor's (max ${wan.max}, n=${wan.samples})`,
  );
  const worst = Math.max(oneSite.p99, wan.p99);
  return {
    paired: { ...oneSite, wanLab: { ...wan }, executor: 'the library default' },
    bullmq: null,
    ratio: null,
    target: 'p99 <= 1000 ms',
    met: worst <= 1_000 && oneSite.samples === jobs && wan.samples === jobs,
    config: `${rate} jobs/s for ${seconds} s, each awaiting ${DATA.ms} ms; PairedQueue's default executor; per job: finishedOn of the twin's copy - finishedOn of the executor's (the executor named by the result both copies return); top level: one site (one Redis, 2 twin processes x concurrency 50); wanLab: eu-us 40 ms, lock store third-site 20 ms, producer in eu; met on the worse p99 (${round(worst, 0)} ms)`,
  };
}
