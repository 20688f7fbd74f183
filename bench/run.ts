/**
 * bullmq-paired benchmarks, side by side with plain BullMQ in the same run, on private
 * redis-server instances. `npm run bench` (several minutes) or `npm run bench -- --quick`.
 * Writes bench/results/latest.json (quick.json for --quick or --only) and prints a markdown table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { Command } from 'commander';
import { Redis } from 'ioredis';
import { startRedis } from '../test/support/redis.js';
import type { BenchOptions, ScenarioResult } from './lib/types.js';
import { bytesPerPair, clusterShadowIdle, shadowIdle } from './scenarios/footprint.js';
import {
  geoFalseTakeovers,
  geoFalseTakeoversBurst,
  geoLatency,
  geoTakeoverKill,
  geoThroughput,
  geoThroughputFar,
} from './scenarios/geo.js';
import { idlePerProcess, idleQueues } from './scenarios/idle.js';
import { twinCompletionLag } from './scenarios/lag.js';
import { lockStoreOutage } from './scenarios/lock-store-outage.js';
import { pgTakeoverKill, pgThroughputIo20, redisOutage } from './scenarios/postgres.js';
import {
  cpuBlock,
  geoRegionLoss,
  geoRegionLossQueued,
  geoRegionPartition,
} from './scenarios/region-loss.js';
import {
  clusterTakeoverKill,
  takeoverFail,
  takeoverKill,
  takeoverKillHalfOpen,
  threeTwinsTakeoverKill,
} from './scenarios/takeover.js';
import {
  clusterThroughputNoop,
  commandsPerJob,
  lateTwinDrain,
  redisCpuPerJob,
  throughput,
} from './scenarios/throughput.js';

const ALL = [
  'takeover_kill',
  'takeover_kill_halfopen',
  'takeover_fail',
  'three_twins_takeover_kill',
  'cluster_throughput_noop',
  'cluster_takeover_kill',
  'throughput_noop',
  'throughput_io20',
  'throughput_io200',
  'commands_per_job',
  'shadow_idle',
  'cluster_shadow_idle',
  'late_twin_drain',
  'bytes_per_pair',
  'lock_store_outage',
  'geo_throughput',
  'geo_latency',
  'geo_takeover_kill',
  'geo_region_loss',
  'geo_false_takeovers',
  'geo_false_takeovers_burst',
  'redis_cpu_per_job',
  'geo_throughput_far',
  'geo_region_loss_queued',
  'twin_completion_lag',
  'idle_per_process',
  'idle_queues',
  'pg_throughput_io20',
  'pg_takeover_kill',
  'redis_outage',
  'geo_region_partition',
  'cpu_block',
] as const;

const program = new Command()
  .name('bench')
  .description('bullmq-paired vs plain BullMQ')
  .option('--quick', 'every scenario but lock_store_outage, small (CI: a few minutes)', false)
  .option('--only <ids>', `comma-separated subset of: ${ALL.join(', ')}`)
  .option('--out <file>', 'where to write the JSON results')
  .parse();

const flags = program.opts<{ quick: boolean; only?: string; out?: string }>();
/** Over ~10 s even when small: in --quick only when --only names it. */
const NOT_QUICK: readonly string[] = ['lock_store_outage', 'geo_false_takeovers_burst'];
const selected = new Set<string>(
  flags.only ? flags.only.split(',') : ALL.filter((id) => !(flags.quick && NOT_QUICK.includes(id))),
);
for (const id of selected) {
  if (!(ALL as readonly string[]).includes(id))
    program.error(`unknown scenario "${id}"; known: ${ALL.join(', ')}`);
}
// A promise a scenario forgot to handle would end the whole run: log it and go on.
process.on('unhandledRejection', (err) => {
  console.log(
    `  unhandled rejection (the run goes on): ${err instanceof Error ? err.stack : String(err)}`,
  );
});
const options: BenchOptions = { quick: flags.quick, log: (line) => console.log(line) };
const results: Record<string, ScenarioResult> = {};

type Id = (typeof ALL)[number];

/** A failed scenario: recorded unmet with what it threw, so the run goes on. */
function failed(err: unknown): ScenarioResult {
  return {
    paired: {},
    bullmq: null,
    ratio: null,
    target: '(the scenario failed)',
    met: false,
    config: '',
    error: err instanceof Error ? (err.stack ?? err.message) : String(err),
  };
}

async function run(id: Id, scenario: () => Promise<ScenarioResult>) {
  if (!selected.has(id)) return;
  console.log(`# ${id}`);
  const started = Date.now();
  try {
    results[id] = await scenario();
  } catch (err) {
    results[id] = failed(err);
    console.log(`  FAILED: ${results[id].error}`);
  }
  console.log(`  (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

async function redisVersion(): Promise<string> {
  const redis = await startRedis({ killable: true, purpose: 'the benchmarks (npm run bench)' });
  const client = new Redis(redis.url);
  const info = await client.info('server');
  await client.quit();
  await redis.stop();
  return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
}

await run('takeover_kill', () => takeoverKill(options));
await run('takeover_kill_halfopen', () => takeoverKillHalfOpen(options));
await run('takeover_fail', () => takeoverFail(options));
await run('three_twins_takeover_kill', () => threeTwinsTakeoverKill(options));
await run('cluster_throughput_noop', () => clusterThroughputNoop(options));
await run('cluster_takeover_kill', () => clusterTakeoverKill(options));
// The no-op runs feed throughput_noop, commands_per_job, redis_cpu_per_job and late_twin_drain.
const FROM_NOOP: readonly Id[] = ['throughput_noop', 'commands_per_job', 'redis_cpu_per_job'];
const needNoop = [...FROM_NOOP, 'late_twin_drain'].some((id) => selected.has(id));
let noop: Awaited<ReturnType<typeof throughput>> | undefined;
if (needNoop) {
  console.log('# throughput noop runs');
  try {
    noop = await throughput(options, 'noop');
  } catch (err) {
    console.log(`  FAILED: ${failed(err).error}`);
    for (const id of [...FROM_NOOP, 'late_twin_drain'] as const)
      if (selected.has(id)) results[id] = failed(err);
  }
}
if (noop) {
  if (selected.has('throughput_noop')) results.throughput_noop = noop.result;
  if (selected.has('commands_per_job'))
    results.commands_per_job = commandsPerJob(noop.paired, noop.bullmq);
}
await run('throughput_io20', async () => (await throughput(options, 'io20')).result);
await run('throughput_io200', async () => (await throughput(options, 'io200')).result);
await run('shadow_idle', () => shadowIdle(options));
await run('cluster_shadow_idle', () => clusterShadowIdle(options));
if (noop) {
  const { bullmq } = noop;
  await run('late_twin_drain', () => lateTwinDrain(options, bullmq));
}
await run('bytes_per_pair', () => bytesPerPair(options));
await run('lock_store_outage', () => lockStoreOutage(options));
await run('geo_throughput', () => geoThroughput(options));
await run('geo_latency', () => geoLatency(options));
await run('geo_takeover_kill', () => geoTakeoverKill(options));
await run('geo_region_loss', () => geoRegionLoss(options));
await run('geo_false_takeovers', () => geoFalseTakeovers(options));
await run('geo_false_takeovers_burst', () => geoFalseTakeoversBurst(options));
if (noop) {
  const { paired, bullmq } = noop;
  await run('redis_cpu_per_job', async () => redisCpuPerJob(paired, bullmq));
}
await run('geo_throughput_far', () => geoThroughputFar(options));
await run('geo_region_loss_queued', () => geoRegionLossQueued(options));
await run('twin_completion_lag', () => twinCompletionLag(options));
await run('idle_per_process', () => idlePerProcess(options));
await run('idle_queues', () => idleQueues(options));
await run('pg_throughput_io20', () => pgThroughputIo20(options));
await run('pg_takeover_kill', () => pgTakeoverKill(options));
await run('redis_outage', () => redisOutage(options));
await run('geo_region_partition', () => geoRegionPartition(options));
await run('cpu_block', () => cpuBlock(options));

const report = {
  date: new Date().toISOString(),
  node: process.version,
  redis: await redisVersion(),
  cpus: cpus().length,
  quick: flags.quick,
  scenarios: results,
};
const out =
  flags.out ??
  // Only a full run of every scenario replaces the committed latest.json.
  new URL(`results/${flags.quick || flags.only ? 'quick' : 'latest'}.json`, import.meta.url)
    .pathname;
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

const fmt = (value: unknown): string => {
  if (value === null || value === undefined) return '—';
  if (typeof value !== 'object') return String(value);
  const v = value as Record<string, unknown>;
  if ('p50' in v) return `p50 ${v.p50} / p99 ${v.p99} ms (n=${v.samples})`;
  if ('jobsPerSec' in v) return `${v.jobsPerSec} jobs/s`;
  if ('error' in v) return `FAILED: ${String(v.error).split('\n')[0]}`;
  if ('commandsPerJob' in v) return `${v.commandsPerJob} cmd/job`;
  if ('redisCpuUsPerJob' in v) return `${v.redisCpuUsPerJob} µs Redis CPU/job`;
  if ('commandsPerSecPerProcess' in v)
    return `${(v.commandsPerSecPerProcess as number[]).join(' / ')} cmd/s per process`;
  if ('remainingAtKill' in v)
    return `${v.seconds} s for ${v.remainingAtKill} left (bound ${v.boundSeconds} s), ${v.lost} lost`;
  if ('commandsPerSec' in v) return `${(v.commandsPerSec as number[]).join(' → ')} cmd/s`;
  if ('bytesPerInFlightPair' in v)
    return `${v.bytesPerInFlightPair} B, ${v.keysLeftAfterRetention} keys left`;
  if ('bytesPerJobHash' in v) return `${v.bytesPerJobHash} B per job hash`;
  if ('killToSteadyMs' in v) {
    const first = v.firstCompletionAfterRestartMs as Record<string, number>;
    const back = v.killToSteadyMs as Record<string, number>;
    return `lock store down ${v.outageMs} ms: first completion p50 ${first.p50} / max ${first.max} ms after the restart; 90 % throughput back p50 ${back.p50} / max ${back.max} ms after the kill; ${v.runTwice} run twice (n=${back.samples})`;
  }
  if ('steadyJobsPerSec' in v) return `${v.steadyJobsPerSec} jobs/s steady`;
  if ('lostOnUs' in v) {
    const after = v.killToUsStartMs as Record<string, number>;
    return `${v.lostOnUs} lost of ${v.reachedUs} on us; eu's in-flight started on us p50 ${after.p50} / p99 ${after.p99} ms after the kill (n=${after.samples})`;
  }
  if ('partitionToUsStartMs' in v) {
    const after = v.partitionToUsStartMs as Record<string, number>;
    return `eu's ${v.euInFlight} in-flight started on us p50 ${after.p50} / p99 ${after.p99} ms after the partition; ${v.abortedAfterTwinStart} aborted after us started; ${v.lost} lost`;
  }
  if ('blockMs' in v)
    return `${v.takeovers} takeovers, ${v.leaseLost} leases lost, ${v.ranTwice} run twice (${v.jobs} jobs blocking ${v.blockMs} ms)`;
  if ('takeovers' in v)
    return `${v.takeovers} takeovers of live executors, ${v.ranTwice} run twice (${v.lockLinkResets} lock-link resets, ${v.jobs} jobs)`;
  if ('completedBeforeKill' in v)
    return `Redis died with eu: ${v.completedBeforeKill} completed, ${v.lost} lost, ${v.notAccepted} never accepted`;
  if ('plainLocal' in v)
    return 'stretched' in v
      ? `local: ${fmt(v.plainLocal)}; stretched: ${fmt(v.stretched)}`
      : `local: ${fmt(v.plainLocal)}`;
  if ('stretched' in v) return `stretched: ${fmt(v.stretched)}`;
  if ('stretchedTuned' in v)
    return `stretched, lockDuration 2 s + stalledInterval 1 s: ${fmt(v.stretchedTuned)}`;
  if ('defaults' in v)
    return `defaults: ${fmt(v.defaults)}; tuned: ${fmt(v.lockDuration2000_stalledInterval1000)}`;
  return JSON.stringify(v);
};
console.log(`\n| id | paired | bullmq | ratio | target | met |\n|---|---|---|---|---|---|`);
for (const [id, r] of Object.entries(results)) {
  const paired = r.error === undefined ? fmt(r.paired) : fmt({ error: r.error });
  console.log(
    `| ${id} | ${paired} | ${fmt(r.bullmq)} | ${r.ratio ?? '—'} | ${r.target} | ${r.met ? 'yes' : 'no'} |`,
  );
}
console.log(`\nwritten to ${out}`);
process.exit(0);
