/**
 * A region lost, over the WAN lab (see geo.ts): crashed with its Redis (geo_region_loss), its
 * workers killed with jobs queued for them (geo_region_loss_queued), or cut off from the lock
 * store and its twin while its processes live (geo_region_partition); and a region whose
 * processor keeps the event loop busy for seconds (cpu_block).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import { EXECUTOR_OPTION, PairedQueue, PartialAddError } from '../../src/index.js';
import { REGIONS, type WanTopology } from '../../test/support/wan-topology.js';
import { round, summarize } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';
import {
  atSteadyRate,
  CHUNK,
  GeoEnv,
  hostPort,
  ids,
  LABEL,
  settles,
  VERBOSE,
  WORKERS,
} from './geo.js';

/** The whole of region eu dies at once: every eu worker process and eu's queue Redis, SIGKILL. */
async function killRegionEu(env: GeoEnv): Promise<number> {
  const topology = env.topology as WanTopology;
  const at = Date.now();
  await Promise.all([
    ...env.workers.eu.map((child) => child.kill('SIGKILL')),
    topology.queueRedis.eu.kill(),
  ]);
  return at;
}

/** Brings eu's Redis back (empty) after a measurement, so every client left can quit. */
async function reviveEu(env: GeoEnv): Promise<void> {
  await env.topology?.queueRedis.eu.restart().catch(() => {});
}

const LOSS_DATA = { ms: 100 };
const LOSS_RATE = 100;

async function regionLossPaired(jobs: number, settleMs: number) {
  const env = await GeoEnv.start('paired', VERBOSE);
  const topology = env.topology as WanTopology;
  const usQueue = env.observedIn.us as Queue;
  // The producer that takes over in us: us's Redis direct, eu's through the cross-region link.
  const usProducer = new PairedQueue(env.base, {
    twins: {
      eu: { connection: hostPort(topology.regions.us.remoteQueueUrl), queue: `${env.base}-eu` },
      us: { connection: hostPort(topology.regions.us.queueUrl), queue: `${env.base}-us` },
    },
  });
  for (const region of REGIONS) usProducer.queue(region).on('error', () => {});
  let killed = false;
  try {
    const adds = { both: 0, usOnly: 0, refused: 0 };
    const track = (add: Promise<unknown>): Promise<void> =>
      add.then(
        () => {
          adds.both++;
        },
        (err: unknown) => {
          if (err instanceof PartialAddError && err.added.includes('us')) adds.usOnly++;
          else adds.refused++;
        },
      );
    // Job 0 through the us producer while both regions are up: it records the pairing on both
    // twins once (it would otherwise wait for eu's answer before every add after the kill).
    await track(usProducer.add('job', LOSS_DATA, { jobId: 'r0' }));
    const pending: Promise<void>[] = [];
    const killAfter = Math.floor(jobs / 2);
    let killedAt = 0;
    await atSteadyRate(jobs - 1, LOSS_RATE, async (i) => {
      const n = i + 1;
      if (n === killAfter) {
        killedAt = await killRegionEu(env);
        killed = true;
      }
      const id = `r${n}`;
      // Before the kill the producer in eu adds; after it, eu's producer is gone with eu and
      // the one in us adds (eu's copy times out: a PartialAddError naming us as added).
      pending.push(
        track(killed ? usProducer.add('job', LOSS_DATA, { jobId: id }) : env.add(id, LOSS_DATA)),
      );
    });
    await Promise.all(pending);
    const total = async () => {
      const counts = await usQueue.getJobCounts();
      return Object.values(counts).reduce((sum, count) => sum + count, 0);
    };
    await settles(async () => (await usQueue.getCompletedCount()) >= (await total()), settleMs);
    const reachedUs = await total();
    const completedOnUs = await usQueue.getCompletedCount();
    const eu = env.workers.eu.flatMap((child) => child.lines);
    const us = env.workers.us.flatMap((child) => child.lines);
    // eu's in-flight jobs at the kill: started on eu (every line eu wrote before its death is
    // read from the pipe afterwards) and not executed there.
    const executedOnEu = new Set(ids(eu, 'executed', 'jobId'));
    const inFlight = [...new Set(ids(eu, 'started', 'id'))].filter((id) => !executedOnEu.has(id));
    const usStarted = new Map<string, number>();
    for (const line of us) {
      if (line.event === 'started' && !usStarted.has(String(line.id)))
        usStarted.set(String(line.id), Number(line.at));
    }
    const twinCompleted = new Set(ids(us, 'twinCompleted', 'jobId'));
    const delays: number[] = [];
    let settledByEu = 0;
    let notStartedOnUs = 0;
    let startedOnUsBeforeKill = 0;
    for (const id of inFlight) {
      const at = usStarted.get(id);
      if (at !== undefined && at < killedAt) startedOnUsBeforeKill++;
      else if (at !== undefined) delays.push(at - killedAt);
      // eu stored its result before it died (its 'executed' line was not yet written).
      else if (twinCompleted.has(id)) settledByEu++;
      else notStartedOnUs++;
    }
    return {
      jobs,
      reachedUs,
      completedOnUs,
      lostOnUs: reachedUs - completedOnUs,
      neverReachedUs: jobs - reachedUs,
      adds,
      euInFlightAtKill: inFlight.length,
      settledByEuBeforeKill: settledByEu,
      notStartedOnUs,
      startedOnUsBeforeKill,
      killToUsStartMs: summarize(delays),
    };
  } finally {
    if (killed) await reviveEu(env);
    await usProducer.close().catch(() => {});
    await env.close();
  }
}

async function regionLossStretched(jobs: number) {
  const env = await GeoEnv.start('stretched');
  const queue = env.observedIn.eu as Queue;
  let killed = false;
  try {
    let attempted = 0;
    let completedBeforeKill = 0;
    const killAfter = Math.floor(jobs / 2);
    const pending: Promise<unknown>[] = [];
    await atSteadyRate(jobs, LOSS_RATE, async (n) => {
      if (n === killAfter) {
        completedBeforeKill = await queue.getCompletedCount();
        await killRegionEu(env);
        killed = true;
      }
      // The producer's only Redis died with eu: nothing can be added any more.
      if (killed) return;
      attempted++;
      pending.push(env.add(`s${n}`, LOSS_DATA).catch(() => {}));
    });
    await Promise.race([Promise.all(pending), sleep(3_000)]);
    return {
      jobs,
      added: attempted,
      completedBeforeKill,
      // Waiting and active jobs (and every result) were in eu's Redis.
      lost: attempted - completedBeforeKill,
      notAccepted: jobs - attempted,
    };
  } finally {
    if (killed) await reviveEu(env);
    await env.close();
  }
}

export async function geoRegionLoss({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 200 : 1_000;
  const settleMs = quick ? 30_000 : 60_000;
  const paired = await regionLossPaired(jobs, settleMs);
  const after = paired.killToUsStartMs;
  log(
    `  ${LABEL.paired}: ${paired.lostOnUs} lost of ${paired.reachedUs} on us; ${paired.euInFlightAtKill} in flight on eu at the kill: started on us p50 ${after.p50} / p99 ${after.p99} ms after it (n=${after.samples}), ${paired.settledByEuBeforeKill} settled by eu, ${paired.notStartedOnUs} never started`,
  );
  const stretched = await regionLossStretched(jobs);
  log(
    `  ${LABEL.stretched}: Redis died with eu: ${stretched.completedBeforeKill} completed, ${stretched.lost} lost, ${stretched.notAccepted} never accepted`,
  );
  return {
    paired: { ...paired },
    bullmq: { stretched: { ...stretched } },
    ratio: null,
    target: '0 lost and p99 <= 1000 ms',
    met:
      paired.lostOnUs === 0 &&
      paired.notStartedOnUs === 0 &&
      paired.startedOnUsBeforeKill === 0 &&
      after.samples > 0 &&
      after.p99 <= 1_000,
    config: `${jobs} jobs awaiting 100 ms at ${LOSS_RATE} jobs/s; after job ${Math.floor(jobs / 2)} every eu worker process and eu's queue redis-server are SIGKILLed together. Paired (lock store third-site, default options, 1 worker process x concurrency 50 per region): the producer in eu adds until the kill, then a producer in us adds the rest (its eu copy times out: PartialAddError, us copy added; it added job 0 first, so the pairing is recorded on both twins); lost = jobs in us's queue not completed there; the delay is from the kill to us's 'started' line for each job eu had started and not executed. Stretched BullMQ (one queue on eu's Redis, plain workers in eu and us, defaults): the producer in eu stops at the kill; lost = added - completed just before the kill; notAccepted = jobs never added`,
  };
}

/**
 * geo_region_loss_queued: us's copies wait in its paused queue (us "busy") while eu runs
 * what it may; then every us worker process is SIGKILLed. How long until eu has completed
 * every job, against the time eu's slots need for the work left at the kill, plus 1 s.
 */
export async function geoRegionLossQueued({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 200 : 1_000;
  const jobMs = 50;
  const slots = Number(WORKERS.CONCURRENCY);
  // Longer than the default standbyGraceMs (10 s) plus the work: "lost" means never ran.
  const settleMs = quick ? 30_000 : 60_000;
  const env = await GeoEnv.start('paired');
  try {
    const euQueue = env.observedIn.eu as Queue;
    const usQueue = env.observedIn.us as Queue;
    await usQueue.pause();
    for (let added = 0; added < jobs; added += CHUNK)
      await env.addBulk(Math.min(CHUNK, jobs - added), { ms: jobMs });
    const killedAt = performance.now();
    await Promise.all(env.workers.us.map((child) => child.kill('SIGKILL')));
    const completedAtKill = await euQueue.getCompletedCount();
    const remaining = jobs - completedAtKill;
    const boundSeconds = (remaining * jobMs) / 1000 / slots + 1;
    const finished = await settles(
      async () => (await euQueue.getCompletedCount()) >= jobs,
      settleMs,
      20,
    );
    const seconds = (performance.now() - killedAt) / 1000;
    const completed = await euQueue.getCompletedCount();
    const failed = await euQueue.getFailedCount();
    const all = await euQueue.getJobs(['completed', 'waiting', 'active', 'delayed', 'failed']);
    const chosenForUs = all.filter(
      (job) => (job.opts as Record<string, unknown>)[EXECUTOR_OPTION] === 'us',
    ).length;
    const measured = {
      jobs,
      jobMs,
      completedOnEuAtKill: completedAtKill,
      remainingAtKill: remaining,
      seconds: round(seconds),
      boundSeconds: round(boundSeconds),
      finished,
      lost: jobs - completed,
      failed,
      chosenForUs,
    };
    log(
      `  paired, library default executor: ${remaining} of ${jobs} left at the kill of us, eu done ${finished ? `after ${measured.seconds} s` : `not within ${settleMs / 1000} s`} (bound ${measured.boundSeconds} s), ${measured.lost} lost, ${chosenForUs} chosen for us`,
    );
    return {
      paired: measured,
      bullmq: null,
      ratio: null,
      target: 'seconds <= (work / slots) + 1 and 0 lost',
      met: finished && seconds <= boundSeconds && measured.lost === 0,
      config: `WAN lab (eu-us 40 ms, lock store third-site 20 ms), 1 twin worker process x concurrency ${slots} per region, PairedQueue's default executor, producer in eu; us's queue paused (its copies stay queued), ${jobs} jobs of ${jobMs} ms added in bulks, then every us worker process SIGKILLed at once; seconds from the kill until eu completed all of them; bound = (jobs not completed on eu at the kill x ${jobMs} ms / ${slots} slots) + 1 s; lost = not completed on eu within ${settleMs / 1000} s; chosenForUs = eu's copies stamped with executor us`,
    };
  } finally {
    await env.close();
  }
}

/**
 * geo_region_partition: region eu black-holed (every connection stays open, no byte moves
 * either way: a region whose network failed) from the lock store and from us, at default
 * options, while it executes its share of long jobs. How soon us starts each job eu was
 * running, whether eu's run aborted before that, and whether every job completes.
 */
export async function geoRegionPartition({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  // Long jobs, few enough that us has free slots for eu's share next to its own.
  const jobs = quick ? 20 : 40;
  const jobMs = 10_000;
  const settleMs = 60_000;
  const env = await GeoEnv.start('paired', VERBOSE);
  const topology = env.topology as WanTopology;
  const links = [topology.lockLinks.eu, topology.crossLinks.eu, topology.crossLinks.us];
  try {
    const pending: Promise<unknown>[] = [];
    await atSteadyRate(jobs, 40, (n) => {
      pending.push(env.add(`p${n}`, { ms: jobMs }));
    });
    await Promise.all(pending);
    const startedIds = (region: 'eu' | 'us') =>
      new Set(
        ids(
          env.workers[region].flatMap((child) => child.lines),
          'started',
          'id',
        ),
      );
    // Every job runs somewhere before the cut.
    await settles(async () => startedIds('eu').size + startedIds('us').size >= jobs, 20_000);
    const inFlight = [...startedIds('eu')];
    const partitionedAt = Date.now();
    for (const link of links) link?.partition();
    const usStarts = () => {
      const at = new Map<string, number>();
      for (const line of env.workers.us.flatMap((child) => child.lines)) {
        if (line.event === 'started' && !at.has(String(line.id)))
          at.set(String(line.id), Number(line.at));
      }
      return at;
    };
    const allStarted = await settles(
      async () => inFlight.every((id) => usStarts().has(id)),
      45_000,
    );
    for (const link of links) link?.heal();
    const eu = env.workers.eu.flatMap((child) => child.lines);
    const aborts = new Map<string, number>();
    for (const line of eu) {
      if (line.event === 'leaseLost') aborts.set(String(line.jobId), Number(line.at));
    }
    const starts = usStarts();
    const delays: number[] = [];
    let abortedAfterTwinStart = 0;
    let notAborted = 0;
    for (const id of inFlight) {
      const start = starts.get(id);
      if (start === undefined) continue;
      delays.push(start - partitionedAt);
      const abort = aborts.get(id);
      if (abort === undefined) notAborted++;
      else if (abort > start) abortedAfterTwinStart++;
    }
    const finished = await settles(async () => (await env.completed()) >= jobs, settleMs);
    const completed = await env.completed();
    const measured = {
      jobs,
      jobMs,
      euInFlight: inFlight.length,
      allStartedOnUs: allStarted,
      partitionToUsStartMs: summarize(delays),
      abortedAfterTwinStart,
      notAborted,
      lost: jobs - completed,
    };
    log(
      `  paired, default options: ${inFlight.length} in flight on eu at the partition, started on us p50 ${measured.partitionToUsStartMs.p50} / p99 ${measured.partitionToUsStartMs.p99} ms after it; ${abortedAfterTwinStart} aborted after us started, ${notAborted} never aborted; ${measured.lost} lost`,
    );
    return {
      paired: measured,
      bullmq: null,
      ratio: null,
      target: 'p99 <= 5000 ms, every eu run aborted before us starts it, 0 lost',
      met:
        allStarted &&
        finished &&
        delays.length > 0 &&
        measured.partitionToUsStartMs.p99 <= 5_000 &&
        abortedAfterTwinStart === 0 &&
        notAborted === 0 &&
        measured.lost === 0,
      config: `WAN lab (eu-us 40 ms, lock store third-site 20 ms), 1 twin worker process x concurrency ${WORKERS.CONCURRENCY} per region, default options (lease 30 s), PairedQueue's default executor; ${jobs} jobs of ${jobMs / 1000} s added by the producer in eu; once every job started on its executor, eu's links to the lock store and to us's Redis (and us's to eu's) are partitioned (connections open, no byte moves) and healed once us started every job eu was running; delay = us's 'started' line - the partition; abort = eu's 'leaseLost' line; lost = not completed in both queues within ${settleMs / 1000} s of the heal`,
    };
  } finally {
    for (const link of links) link?.heal();
    await env.close();
  }
}

/**
 * cpu_block: a processor that blocks the event loop for 3 s per job (CPU work, not sandboxed),
 * at default options: the lease is kept by the session's own thread, so nothing is taken over.
 */
export async function cpuBlock({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const jobs = quick ? 6 : 12;
  const blockMs = 3_000;
  const env = await GeoEnv.start('paired', VERBOSE);
  try {
    for (let n = 0; n < jobs; n++) await env.add(`b${n}`, { blockMs });
    // Each process runs its share one after the other (each job holds the event loop).
    const finished = await settles(
      async () => (await env.completed()) >= jobs,
      (jobs * blockMs) / 2 + 30_000,
    );
    const lines = env.children.flatMap((child) => child.lines);
    const starts = new Map<string, number>();
    for (const id of ids(lines, 'started', 'id')) starts.set(id, (starts.get(id) ?? 0) + 1);
    const measured = {
      jobs,
      blockMs,
      completed: await env.completed(),
      takeovers: lines.filter((line) => line.event === 'takeover').length,
      leaseLost: lines.filter((line) => line.event === 'leaseLost').length,
      ranTwice: [...starts.values()].filter((count) => count > 1).length,
    };
    log(
      `  paired, default options: ${measured.completed}/${jobs} completed, ${measured.takeovers} takeovers, ${measured.leaseLost} leases lost, ${measured.ranTwice} run twice`,
    );
    return {
      paired: measured,
      bullmq: null,
      ratio: null,
      target: '0 takeovers, 0 run twice',
      met: finished && measured.takeovers === 0 && measured.ranTwice === 0,
      config: `WAN lab (eu-us 40 ms, lock store third-site 20 ms), 1 twin worker process x concurrency ${WORKERS.CONCURRENCY} per region, default options (lease 30 s, 3 s session key kept by a thread), PairedQueue's default executor; ${jobs} jobs, each blocking its process's event loop for ${blockMs / 1000} s (a busy loop in the processor); takeovers from the workers' 'takeover' events`,
    };
  } finally {
    await env.close();
  }
}
