import type { FixtureProcess } from '../../test/support/child.js';
import { type BenchEnv, withEnv } from '../lib/env.js';
import { round, summarize } from '../lib/stats.js';
import type { BenchOptions, ScenarioResult } from '../lib/types.js';

const LONG_MS = 600_000;
const VERBOSE = { QUIET: '0' };

/** eu executes a long job, us shadows it, then `hit(eu)`; returns ms until us starts it. */
async function pairedSample(
  env: BenchEnv,
  twinEnv: Record<string, string>,
  hit: (eu: FixtureProcess) => void,
) {
  const eu = await env.twin('eu', { ...VERBOSE, ...twinEnv });
  // A chosen executor (the default mode), named so that eu is the one killed.
  const { id } = await env.pairedQueue({}, 'eu').add('long', { ms: LONG_MS });
  await eu.next('started', (l) => l.id === id);
  const us = await env.twin('us', { ...VERBOSE, ...twinEnv });
  await us.next('shadowed', (l) => l.jobId === id);
  const hitAt = Date.now();
  hit(eu);
  const started = await us.next('started', (l) => l.id === id);
  return Number(started.at) - hitAt;
}

/** Plain BullMQ: worker A runs a long job, worker B waits, A is SIGKILLed; ms until B starts it. */
async function plainKillSample(env: BenchEnv, settings: Record<string, string>) {
  const a = await env.plain({ ...VERBOSE, ...settings });
  const job = await env.queue(`${env.base}-plain`).add('long', { ms: LONG_MS });
  await a.next('started', (l) => l.id === job.id);
  const b = await env.plain({ ...VERBOSE, ...settings });
  const killedAt = Date.now();
  await a.kill('SIGKILL');
  // BullMQ's defaults recover a stalled job after up to two stalledInterval periods (60 s).
  const started = await b.next('started', (l) => l.id === job.id, 120_000);
  return Number(started.at) - killedAt;
}

async function repeat(
  times: number,
  sample: (env: BenchEnv) => Promise<number>,
  log: (line: string) => void,
  label: string,
) {
  const values: number[] = [];
  for (let i = 0; i < times; i++) {
    values.push(await withEnv(sample));
    log(`  ${label} ${i + 1}/${times}: ${Math.round(values[values.length - 1] ?? 0)} ms`);
  }
  return values;
}

export async function takeoverKill({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const paired = await repeat(
    quick ? 3 : 20,
    (env) => pairedSample(env, {}, (eu) => eu.child.kill('SIGKILL')),
    log,
    'paired kill',
  );
  const tuned = { LOCK_DURATION: '2000', STALLED_INTERVAL: '1000' };
  const plainTuned = await repeat(
    quick ? 1 : 3,
    (env) => plainKillSample(env, tuned),
    log,
    'bullmq tuned kill',
  );
  const plainDefault = quick
    ? []
    : await repeat(2, (env) => plainKillSample(env, {}), log, 'bullmq default kill');
  const p = summarize(paired);
  const baseline = plainDefault.length > 0 ? summarize(plainDefault) : summarize(plainTuned);
  return {
    paired: { ...p, leaseMs: 30_000 },
    bullmq: {
      defaults:
        plainDefault.length > 0
          ? summarize(plainDefault)
          : 'not run in --quick (about 60 s a sample)',
      lockDuration2000_stalledInterval1000: summarize(plainTuned),
    },
    ratio: round(p.p50 / baseline.p50, 4),
    target: 'paired p99 <= 250 ms at the default 30 s lease',
    met: p.p99 <= 250,
    config: `SIGKILL of the executor's process; paired: default lease 30 s, liveness on; ratio = paired p50 / bullmq ${plainDefault.length > 0 ? 'defaults' : 'tuned'} p50`,
  };
}

export async function takeoverKillHalfOpen({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const leaseMs = 2_000;
  const values = await repeat(
    quick ? 1 : 5,
    (env) => pairedSample(env, { LEASE_MS: String(leaseMs) }, (eu) => eu.child.kill('SIGSTOP')),
    log,
    'paired freeze',
  );
  const p = summarize(values);
  return {
    paired: { ...p, leaseMs },
    bullmq: null,
    ratio: null,
    target: `<= lease + 100 ms (${leaseMs + 100} ms)`,
    met: p.max <= leaseMs + 100,
    config: 'SIGSTOP of the executor (connection stays open): only the lease reveals it; lease 2 s',
  };
}

export async function takeoverFail({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const samples = quick ? 5 : 20;
  const paired = await withEnv(async (env) => {
    const twins = [await env.twin('eu', VERBOSE), await env.twin('us', VERBOSE)] as const;
    const queue = env.pairedQueue(); // the library's default executor
    const values: number[] = [];
    for (let i = 0; i < samples; i++) {
      const { id } = await queue.add('fail', { ms: 300, failOnAttempt: 1 });
      const failing = await Promise.race(
        twins.map((t) => t.next('failing', (l) => l.id === id).then((line) => ({ t, line }))),
      );
      const other = failing.t === twins[0] ? twins[1] : twins[0];
      const started = await other.next('started', (l) => l.id === id && l.takeover === 'failed');
      values.push(Number(started.at) - Number(failing.line.at));
    }
    return values;
  });
  const plain = await withEnv(async (env) => {
    const workers = [await env.plain(VERBOSE), await env.plain(VERBOSE)];
    const queue = env.queue(`${env.base}-plain`);
    const values: number[] = [];
    for (let i = 0; i < samples; i++) {
      const job = await queue.add('fail', { ms: 300, failOnAttempt: 1 }, { attempts: 2 });
      const failing = await Promise.race(
        workers.map((w) => w.next('failing', (l) => l.id === job.id)),
      );
      const retried = await Promise.race(
        workers.map((w) => w.next('started', (l) => l.id === job.id && l.attemptsMade === 1)),
      );
      values.push(Number(retried.at) - Number(failing.at));
    }
    return values;
  });
  log(
    `  failure takeover: paired ${paired.map(Math.round).join(', ')} ms; bullmq retry ${plain.map(Math.round).join(', ')} ms`,
  );
  const p = summarize(paired);
  const b = summarize(plain);
  return {
    paired: { ...p },
    bullmq: { ...b },
    ratio: round(p.p50 / Math.max(b.p50, 1), 4),
    target: 'paired p99 <= 50 ms',
    met: p.p99 <= 50,
    config:
      'processor throws after 300 ms; paired: the twin takes over; bullmq: attempts 2, no backoff, retried by either of 2 workers',
  };
}

/**
 * Three twins: eu executes a long job, us and ap shadow it; eu is SIGKILLed, then whichever
 * took over. Returns ms from each kill until a survivor starts the job.
 */
async function threeTwinsSample(env: BenchEnv): Promise<[number, number]> {
  const twins = ['eu', 'us', 'ap'];
  const eu = await env.twin('eu', VERBOSE);
  const { id } = await env.pairedQueue({}, 'first', twins).add('long', { ms: LONG_MS });
  await eu.next('started', (l) => l.id === id);
  const others = await Promise.all(['us', 'ap'].map((t) => env.twin(t, VERBOSE)));
  await Promise.all(others.map((p) => p.next('shadowed', (l) => l.jobId === id)));
  const firstKill = Date.now();
  await eu.kill('SIGKILL');
  const starts = others.map((p) => p.next('started', (l) => l.id === id).then(() => p));
  const second = await Promise.race(starts);
  const firstMs =
    Number(second.lines.find((l) => l.event === 'started' && l.id === id)?.at) - firstKill;
  const last = others.find((p) => p !== second) as FixtureProcess;
  const secondKill = Date.now();
  await second.kill('SIGKILL');
  const started = await last.next('started', (l) => l.id === id);
  return [firstMs, Number(started.at) - secondKill];
}

export async function threeTwinsTakeoverKill({
  quick,
  log,
}: BenchOptions): Promise<ScenarioResult> {
  const first: number[] = [];
  const second: number[] = [];
  const times = quick ? 2 : 10;
  for (let i = 0; i < times; i++) {
    const [a, b] = await withEnv(threeTwinsSample);
    first.push(a);
    second.push(b);
    log(`  three twins ${i + 1}/${times}: ${Math.round(a)} ms, then ${Math.round(b)} ms`);
  }
  const all = summarize([...first, ...second]);
  return {
    paired: { ...all, firstTakeover: summarize(first), secondTakeover: summarize(second) },
    bullmq: null,
    ratio: null,
    target: 'p99 <= 250 ms for each takeover, as with two twins',
    met: all.p99 <= 250,
    config:
      'three twins (eu, us, ap) on one Redis, a worker process each, default lease 30 s, liveness on; eu executes a long job, us and ap shadow it; SIGKILL eu, then SIGKILL the survivor that took over; ms until a survivor starts the job, for each kill',
  };
}

/**
 * cluster_takeover_kill: the pair records on a local Redis Cluster, with sessions and sharded
 * liveness channels on every master (src/lock/shards.ts): a killed executor is taken over when
 * its channel on the record's master empties, as on one Redis (takeover_kill), not when a lease
 * ends. A new Cluster per sample (3 masters + 3 replicas, ~3 s to start).
 */
export async function clusterTakeoverKill({ quick, log }: BenchOptions): Promise<ScenarioResult> {
  const values = await repeat(
    quick ? 2 : 10,
    async (env) => pairedSample(env, await env.cluster(), (eu) => eu.child.kill('SIGKILL')),
    log,
    'paired kill, records on a Cluster',
  );
  const summary = summarize(values);
  return {
    paired: { ...summary, leaseMs: 30_000 },
    bullmq: null,
    ratio: null,
    target: 'p99 <= 250 ms, as on one Redis',
    met: summary.p99 <= 250,
    config:
      'SIGKILL of the executor; pair records on a local Cluster (3 masters + 3 replicas), default lease 30 s, liveness on (a session key and a sharded liveness channel per master and process)',
  };
}
