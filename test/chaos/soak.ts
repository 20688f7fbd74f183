/**
 * Chaos soak: two twins, two worker processes each, a stream of jobs whose every execution is
 * written to a ledger (start and end, twin, pid, fence), and a random worker process SIGKILLed
 * every ~2 s and restarted. Checks what must hold whatever the timing:
 *   - lost = 0: every job ran and every copy completed on both twins;
 *   - duplicates <= kills (only a job in flight in a killed process runs again);
 *   - a repeated execution always has a higher fence than the one it repeats;
 *   - two executions of one job overlap only if the first one's process had been killed.
 * `npm run chaos` (20 000 jobs; `-- --executor balanced` for jobs whose executor is chosen at
 * add) or `runSoak()` from a test (small).
 */
import { Redis } from 'ioredis';
import type { ExecutorChoice } from '../../src/index.js';
import type { FixtureProcess } from '../support/child.js';
import type { TestRedis } from '../support/redis.js';
import { uniquePrefix } from '../support/redis.js';
import { TwinProcesses } from '../support/twin-processes.js';

interface Entry {
  id: string;
  twin: string;
  fence: number;
  pid: number;
  phase: 'start' | 'end';
  start: number;
  end?: number;
}

export interface SoakReport {
  jobs: number;
  kills: number;
  lost: number;
  executions: number;
  duplicates: number;
  fenceViolations: number;
  overlapsWithLiveOwner: number;
  seconds: number;
}

export async function runSoak(
  redis: TestRedis,
  jobs: number,
  options: {
    minMs?: number;
    maxMs?: number;
    log?: (line: string) => void;
    /** PairedQueue's `executor`: 'balanced' starts each job on its chosen twin before its claim. */
    executor?: ExecutorChoice;
    /** The twins, two worker processes each. Default eu and us. */
    twins?: readonly string[];
    /**
     * Seeds of a Redis Cluster to hold the pair records instead of `redis` (records keep
     * leases of their own there: a short one, so a killed executor's jobs come back soon).
     */
    lockCluster?: readonly { host: string; port: number }[];
  } = {},
): Promise<SoakReport> {
  const { minMs = 20, maxMs = 100, log = () => {}, executor = 'first' } = options;
  const twinNames = options.twins ?? ['eu', 'us'];
  const twins = new TwinProcesses(
    redis,
    uniquePrefix('chaos'),
    {
      CONCURRENCY: '10',
      LOCK_DURATION: '3000',
      STALLED_INTERVAL: '1000',
      MAX_STALLED: '1000',
      ...(options.lockCluster
        ? {
            LOCK_CLUSTER: options.lockCluster.map((n) => `${n.host}:${n.port}`).join(','),
            LEASE_MS: '3000',
          }
        : {}),
    },
    executor,
    twinNames,
  );
  const { queue } = twins;
  const processes: { twin: string; child: FixtureProcess }[] = [];
  const killed = new Map<number, number>(); // pid -> when it was killed
  const start = async (twin: string) => {
    processes.push({ twin, child: await twins.start(twin) });
  };
  const client = new Redis(redis.url);
  const began = Date.now();
  let kills = 0;
  try {
    await Promise.all(twinNames.flatMap((t) => [t, t]).map(start));
    for (let added = 0; added < jobs; added += 500) {
      await queue.addBulk(
        Array.from({ length: Math.min(500, jobs - added) }, () => ({
          name: 'job',
          data: { ms: minMs + Math.floor(Math.random() * (maxMs - minMs)) },
        })),
      );
    }
    let nextKill = Date.now() + 2_000;
    for (;;) {
      const counts = await Promise.all(twinNames.map((t) => queue.queue(t).getCompletedCount()));
      const done = Math.min(...counts);
      if (done >= jobs) break;
      if (Date.now() >= nextKill && done < jobs * 0.9) {
        const victim = processes.splice(Math.floor(Math.random() * processes.length), 1)[0];
        if (victim?.child.child.pid !== undefined) {
          killed.set(victim.child.child.pid, Date.now());
          await victim.child.kill('SIGKILL');
          kills++;
          log(`kill ${kills}: a ${victim.twin} worker at ${counts.join('/')} completed`);
          await start(victim.twin);
        }
        nextKill = Date.now() + 1_500 + Math.random() * 1_000;
      }
      if (Date.now() - began > 15 * 60_000)
        throw new Error(`chaos: not done after 15 min (${counts.join('/')} of ${jobs})`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const entries = (await client.lrange(twins.ledgerKey, 0, -1)).map(
      (raw) => JSON.parse(raw) as Entry,
    );
    const starts = entries.filter((e) => e.phase === 'start');
    const ends = new Map(
      entries.filter((e) => e.phase === 'end').map((e) => [`${e.id}|${e.fence}`, e.end ?? 0]),
    );
    const byJob = new Map<string, Entry[]>();
    for (const e of starts) byJob.set(e.id, [...(byJob.get(e.id) ?? []), e]);
    let fenceViolations = 0;
    let overlapsWithLiveOwner = 0;
    for (const runs of byJob.values()) {
      runs.sort((a, b) => a.start - b.start);
      for (let i = 1; i < runs.length; i++) {
        const [prev, next] = [runs[i - 1] as Entry, runs[i] as Entry];
        if (next.fence <= prev.fence) fenceViolations++;
        const prevEnd = ends.get(`${prev.id}|${prev.fence}`);
        const prevKilledAt = killed.get(prev.pid);
        const overlaps = prevEnd === undefined ? true : prevEnd > next.start;
        if (overlaps && !(prevKilledAt !== undefined && prevKilledAt <= next.start))
          overlapsWithLiveOwner++;
      }
    }
    return {
      jobs,
      kills,
      lost: jobs - byJob.size,
      executions: starts.length,
      duplicates: starts.length - byJob.size,
      fenceViolations,
      overlapsWithLiveOwner,
      seconds: Math.round((Date.now() - began) / 100) / 10,
    };
  } finally {
    await Promise.all(processes.map(({ child }) => child.kill()));
    await queue.close();
    await client.quit();
  }
}
