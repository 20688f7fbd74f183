/**
 * `npm run demo`: two twins on a private Redis, each one worker process running the same
 * code; one twin's process is SIGKILLed mid-run and restarted. Prints what each twin did,
 * what the kill cost, and that nothing was lost.
 *   npm run demo -- --jobs 1000 --kill-after 0.4 --no-kill
 */
import { Command } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis, uniquePrefix } from '../test/support/redis.js';
import { TwinProcesses } from '../test/support/twin-processes.js';

interface Execution {
  id: string;
  twin: string;
  fence: number;
  phase: 'start' | 'end';
  start: number;
}

export interface DemoSummary {
  jobs: number;
  killedAt: number | null;
  executionsByTwin: Record<string, number>;
  takeovers: number;
  duplicates: number;
  lost: number;
  takeoverP50Ms: number | null;
  takeoverP99Ms: number | null;
  seconds: number;
}

export async function runDemo(
  redis: TestRedis,
  jobs: number,
  killAfter: number | null,
  log = console.log,
): Promise<DemoSummary> {
  // BullMQ's stall recovery shortened, so the killed twin's own copies come back within the demo.
  const twins = new TwinProcesses(redis, uniquePrefix('demo'), {
    CONCURRENCY: '20',
    LOCK_DURATION: '4000',
    STALLED_INTERVAL: '2000',
  });
  const { queue } = twins;
  const start = (twin: string) => twins.start(twin);
  const client = new Redis(redis.url);
  const children = [await start('eu'), await start('us')];
  const began = Date.now();
  try {
    await queue.addBulk(
      Array.from({ length: jobs }, () => ({
        name: 'push',
        data: { ms: 20 + Math.floor(Math.random() * 180) },
      })),
    );
    log(`added ${jobs} notifications to both twins`);
    const done = async (twin: string) => queue.queue(twin).getCompletedCount();
    let killedAt: number | null = null;
    for (;;) {
      const [eu, us] = [await done('eu'), await done('us')];
      if (killAfter !== null && killedAt === null && Math.max(eu, us) >= jobs * killAfter) {
        killedAt = Date.now();
        await children[0]?.kill('SIGKILL');
        log(
          `SIGKILL the eu worker process at ${Math.max(eu, us)} completed jobs; restarting it in 2 s`,
        );
        setTimeout(() => void start('eu').then((child) => children.push(child)), 2_000);
      }
      if (eu >= jobs && us >= jobs) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const entries = (await client.lrange(twins.ledgerKey, 0, -1)).map(
      (raw) => JSON.parse(raw) as Execution,
    );
    const starts = entries.filter((e) => e.phase === 'start');
    const perJob = new Map<string, Execution[]>();
    for (const e of starts) perJob.set(e.id, [...(perJob.get(e.id) ?? []), e]);
    const takeovers = starts.filter((e) => e.fence > 1);
    const latency = hdr.build();
    for (const e of takeovers)
      if (killedAt !== null) latency.recordValue(Math.max(1, e.start - killedAt));
    const executionsByTwin: Record<string, number> = {};
    for (const e of starts) executionsByTwin[e.twin] = (executionsByTwin[e.twin] ?? 0) + 1;
    const summary: DemoSummary = {
      jobs,
      killedAt: killedAt === null ? null : killedAt - began,
      executionsByTwin,
      takeovers: takeovers.length,
      duplicates: starts.length - perJob.size,
      lost: jobs - perJob.size,
      takeoverP50Ms: takeovers.length ? latency.getValueAtPercentile(50) : null,
      takeoverP99Ms: takeovers.length ? latency.getValueAtPercentile(99) : null,
      seconds: (Date.now() - began) / 1000,
    };
    latency.destroy();
    return summary;
  } finally {
    await Promise.all(children.map((child) => child.kill()));
    await queue.close();
    await client.quit();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const flags = new Command()
    .option('--jobs <n>', 'notifications to send', '1000')
    .option(
      '--kill-after <fraction>',
      'SIGKILL the eu worker once this share of jobs completed',
      '0.4',
    )
    .option('--no-kill', 'run without killing anything')
    .parse()
    .opts<{ jobs: string; killAfter: string; kill: boolean }>();
  const redis = await startRedis();
  try {
    const summary = await runDemo(
      redis,
      Number(flags.jobs),
      flags.kill ? Number(flags.killAfter) : null,
    );
    console.log(`\nevery job completed on both twins in ${summary.seconds.toFixed(1)} s`);
    console.table({
      'executed on eu': summary.executionsByTwin.eu ?? 0,
      'executed on us': summary.executionsByTwin.us ?? 0,
      'taken over after the kill': summary.takeovers,
      'run twice (in flight at the kill)': summary.duplicates,
      lost: summary.lost,
      'takeover p50 (ms after kill)': summary.takeoverP50Ms ?? '-',
      'takeover p99 (ms after kill)': summary.takeoverP99Ms ?? '-',
    });
  } finally {
    await redis.stop();
  }
  process.exit(0);
}
