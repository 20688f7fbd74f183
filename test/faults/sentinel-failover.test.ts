/**
 * A lock store behind Redis Sentinel (primary, one replica, three sentinels) fails over while
 * jobs run: the primary is killed, or frozen (SIGSTOP) until the replica is promoted and then
 * resumed. Two job sets go through the same failover, each with two PairedLocks ('eu', 'us')
 * on Sentinel clients that both run every job: one without `durability`, one with
 * `durability: { replicas: 1 }`. Every execution is written to a ledger as (id, fence).
 *
 * Figures, printed for each set:
 *   lost        jobs no member got a result for (must be 0)
 *   unfinished  jobs one member still waited for at the end: its twin ran the job, but the
 *               record says running under that twin's live process (a `done` the failover
 *               lost); it would wait as long as that process lives (must be 0 with durability)
 *   sameFence   executions whose (id, fence) had run before: two executors were told they
 *               held the same grant, which fencing cannot catch (must be 0 with durability)
 *   higherFence repeats with a new fence (a takeover: fenced, but the job ran again)
 * Without durability these depend on timing, so they are reported, not asserted.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { type Durability, PairedLock, type RunOutcome } from '../../src/index.js';
import { uniquePrefix } from '../support/redis.js';
import { startSentinel, type TestSentinel } from '../support/sentinel.js';

const JOBS = 120;
const WORK_MS = 150;
const CONCURRENCY = 8;
/** Longest a job set may run: a job still waited for then is unfinished (or lost). */
const SET_DEADLINE_MS = 40_000;
/** How much longer the set without durability may run than the one with it. */
const PLAIN_GRACE_MS = 5_000;
const DURABLE: Durability = { replicas: 1, timeoutMs: 500 };

interface Execution {
  id: string;
  fence: number;
  member: string;
  takeover: string | undefined;
}

interface Figures {
  jobs: number;
  executions: number;
  lost: number;
  unfinished: number;
  sameFence: number;
  higherFence: number;
  /** The takeover reasons of the repeats with a higher fence. */
  repeatReasons: Record<string, number>;
  /** Jobs whose two members returned different results (each saw its own run). */
  disagreements: number;
  errors: Record<string, number>;
}

function tally(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

function errorName(err: unknown): string {
  if (!(err instanceof Error)) return 'NonError';
  // ioredis' connection errors are plain Errors: name them by their message.
  return err.name === 'Error' ? err.message.replace(/\d+/g, 'N').slice(0, 40) : err.name;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

/** Two members that each run every job of the set until they get its result. */
function jobSet(sentinel: TestSentinel, label: string, durability?: Durability) {
  const prefix = uniquePrefix(label);
  const ledger: Execution[] = [];
  const errors: Record<string, number> = {};
  const results = new Map<string, string[]>();
  const ids = Array.from({ length: JOBS }, (_, i) => `job-${i}`);
  const stop = new AbortController();
  setMaxListeners(0, stop.signal); // one listener per waiting run
  const clients = new Map<string, Redis>();
  const locks = ['eu', 'us'].map((member) => {
    const client = sentinel.connect();
    clients.set(member, client);
    const lock = new PairedLock(client, {
      member,
      prefix,
      ...(durability ? { durability } : {}),
    });
    lock.on('error', (err) => tally(errors, errorName(err)));
    return lock;
  });

  const runJob = async (lock: PairedLock, id: string): Promise<void> => {
    const member = lock.options.member;
    while (!stop.signal.aborted) {
      let outcome: RunOutcome<string>;
      try {
        outcome = await lock.run(
          id,
          async ({ fence, takeover }) => {
            ledger.push({ id, fence, member, takeover });
            await sleep(WORK_MS);
            return `${member}:${fence}`;
          },
          { signal: stop.signal },
        );
      } catch (err) {
        tally(errors, errorName(err));
        await sleep(100);
        continue;
      }
      results.set(id, [...(results.get(id) ?? []), outcome.result]);
      return;
    }
  };

  return {
    ledger,
    /** `member`'s lock connection drops and asks the sentinels again, as a failover detector does. */
    reconnect(member: string): void {
      clients.get(member)?.disconnect(true);
    },
    /** Stops waiting: runs still waiting reject, and count as unfinished. */
    abort(): void {
      stop.abort(new Error('job set deadline'));
    },
    async run(): Promise<void> {
      const deadline = setTimeout(() => this.abort(), SET_DEADLINE_MS);
      try {
        await Promise.all(locks.map((lock) => pool(ids, CONCURRENCY, (id) => runJob(lock, id))));
      } finally {
        clearTimeout(deadline);
      }
    },
    figures(): Figures {
      const fences = new Map<string, Set<number>>();
      let sameFence = 0;
      let higherFence = 0;
      const repeatReasons: Record<string, number> = {};
      for (const { id, fence, takeover } of ledger) {
        const seen = fences.get(id) ?? new Set<number>();
        if (seen.has(fence)) sameFence++;
        else if (seen.size > 0) {
          higherFence++;
          tally(repeatReasons, takeover ?? 'none');
        }
        seen.add(fence);
        fences.set(id, seen);
      }
      const got = (id: string): number => results.get(id)?.length ?? 0;
      return {
        jobs: JOBS,
        executions: ledger.length,
        lost: ids.filter((id) => got(id) === 0).length,
        unfinished: ids.filter((id) => got(id) === 1).length,
        sameFence,
        higherFence,
        repeatReasons,
        disagreements: ids.filter((id) => new Set(results.get(id)).size > 1).length,
        errors,
      };
    },
    async close(): Promise<void> {
      this.abort();
      await Promise.all(locks.map((lock) => lock.close()));
    },
  };
}

type JobSet = ReturnType<typeof jobSet>;

/** Runs both sets; the one without durability gets PLAIN_GRACE_MS more than the other. */
async function runBoth(plain: JobSet, durable: JobSet): Promise<void> {
  const plainRun = plain.run();
  await durable.run();
  const grace = setTimeout(() => plain.abort(), PLAIN_GRACE_MS);
  try {
    await plainRun;
  } finally {
    clearTimeout(grace);
  }
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await sleep(20);
}

function report(scenario: string, sets: Record<string, Figures>): void {
  for (const [name, figures] of Object.entries(sets)) {
    console.log(`sentinel failover, ${scenario}, ${name}: ${JSON.stringify(figures)}`);
  }
}

/** Both sets lost nothing; the durable one never ran an (id, fence) twice nor left one unfinished. */
function expectNothingLost(scenario: string, plain: Figures, durable: Figures): void {
  report(scenario, { plain, durable });
  expect(plain.lost).toBe(0);
  expect(durable).toMatchObject({ lost: 0, unfinished: 0, sameFence: 0 });
}

describe('a lock store behind Sentinel failing over while jobs run', () => {
  it('primary killed mid-run: nothing lost; with durability no (id, fence) runs twice', async () => {
    const sentinel = await startSentinel();
    const plain = jobSet(sentinel, 'kill-plain');
    const durable = jobSet(sentinel, 'kill-durable', DURABLE);
    try {
      const running = runBoth(plain, durable);
      await until(() => plain.ledger.length >= JOBS / 3);
      const old = await sentinel.primaryAddress();
      const oldServer = sentinel.server(old);
      await sentinel.kill(oldServer);
      await sentinel.waitForFailover(old);
      // Back empty, as a replica of the new primary: durable grants need one again.
      await oldServer.restart();
      await sentinel.rejoin(oldServer);
      await running;
      expectNothingLost('primary killed', plain.figures(), durable.figures());
    } finally {
      await Promise.all([plain.close(), durable.close()]);
      await sentinel.stop();
    }
  }, 120_000);

  it('primary frozen until the replica is promoted, then resumed: with durability no (id, fence) runs twice', async () => {
    const sentinel = await startSentinel();
    const plain = jobSet(sentinel, 'freeze-plain');
    const durable = jobSet(sentinel, 'freeze-durable', DURABLE);
    try {
      const running = runBoth(plain, durable);
      await until(() => plain.ledger.length >= JOBS / 3);
      const old = await sentinel.primaryAddress();
      const oldServer = sentinel.server(old);
      sentinel.freeze(oldServer);
      try {
        await sentinel.waitForFailover(old);
        // us learns of the failover at once (as with ioredis' failoverDetector) and moves to
        // the new primary; eu keeps its connection to the old one, which serves it as if it
        // were still the primary until the sentinels demote it (and disconnect its clients).
        for (const set of [plain, durable]) set.reconnect('us');
      } finally {
        sentinel.resume(oldServer);
      }
      await running;
      expectNothingLost('primary frozen, then resumed', plain.figures(), durable.figures());
    } finally {
      await Promise.all([plain.close(), durable.close()]);
      await sentinel.stop();
    }
  }, 120_000);
});
