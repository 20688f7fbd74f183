/**
 * Job sets for lock-store failover tests (Sentinel, Cluster): two PairedLocks ('eu', 'us')
 * on their own clients that both run every job of a set until they get its result; every
 * execution is written to a ledger as (id, fence). The same failover is run under two sets,
 * one without `durability` and one with it.
 *
 * Figures, printed for each set:
 *   lost        jobs no member got a result for (must be 0)
 *   unfinished  jobs one member still waited for at the end: its twin ran the job, but the
 *               record says running under that twin's live process (a `done` the failover
 *               lost); it would wait as long as that process lives (must be 0 with durability)
 *   sameFence   executions whose (id, fence) had run before: two executors were told they
 *               held the same grant, which fencing cannot catch (must be 0)
 *   higherFence repeats with a new fence (a takeover: fenced, but the job ran again)
 * Without durability these depend on timing, so they are reported, not asserted.
 * DEBUG_FAILOVER=1 prints every error a set sees.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import { expect } from 'vitest';
import { type Durability, PairedLock, type RunOutcome } from '../../src/index.js';
import { uniquePrefix } from './redis.js';

export const JOBS = 120;
const WORK_MS = 150;
const CONCURRENCY = 8;
/** Longest a job set may run: a job still waited for then is unfinished (or lost). */
const SET_DEADLINE_MS = 40_000;
/** How much longer the set without durability may run than the one with it. */
const PLAIN_GRACE_MS = 5_000;
export const DURABLE: Durability = { replicas: 1, timeoutMs: 500 };

interface Execution {
  id: string;
  fence: number;
  member: string;
  takeover: string | undefined;
}

export interface Figures {
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
export function jobSet(connect: () => Redis | Cluster, label: string, durability?: Durability) {
  const prefix = uniquePrefix(label);
  const ledger: Execution[] = [];
  const errors: Record<string, number> = {};
  const results = new Map<string, string[]>();
  const ids = Array.from({ length: JOBS }, (_, i) => `job-${i}`);
  const stop = new AbortController();
  setMaxListeners(0, stop.signal); // one listener per waiting run
  const clients = new Map<string, Redis | Cluster>();
  const locks = ['eu', 'us'].map((member) => {
    const client = connect();
    clients.set(member, client);
    const lock = new PairedLock(client, {
      member,
      prefix,
      ...(durability ? { durability } : {}),
    });
    lock.on('error', (err) => {
      tally(errors, errorName(err));
      if (process.env.DEBUG_FAILOVER) console.log(member, err.message);
    });
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
        if (process.env.DEBUG_FAILOVER) console.log(member, 'run:', errorName(err), String(err));
        await sleep(100);
        continue;
      }
      results.set(id, [...(results.get(id) ?? []), outcome.result]);
      return;
    }
  };

  return {
    prefix,
    ledger,
    /** `member`'s lock connection drops and connects again (behind Sentinel: asks the sentinels, as a failover detector does). */
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

export type JobSet = ReturnType<typeof jobSet>;

/** Runs both sets; the one without durability gets PLAIN_GRACE_MS more than the other. */
export async function runBoth(plain: JobSet, durable: JobSet): Promise<void> {
  const plainRun = plain.run();
  await durable.run();
  const grace = setTimeout(() => plain.abort(), PLAIN_GRACE_MS);
  try {
    await plainRun;
  } finally {
    clearTimeout(grace);
  }
}

export async function until(check: () => boolean): Promise<void> {
  while (!check()) await sleep(20);
}

function report(scenario: string, sets: Record<string, Figures>): void {
  for (const [name, figures] of Object.entries(sets)) {
    console.log(`${scenario}, ${name}: ${JSON.stringify(figures)}`);
  }
}

/**
 * Both sets lost nothing and never ran an (id, fence) twice (fences come from the store's
 * clock, so a grant a failover lost is not handed out again); the durable one also left none
 * unfinished.
 */
export function expectNothingLost(scenario: string, plain: Figures, durable: Figures): void {
  report(scenario, { plain, durable });
  expect(plain).toMatchObject({ lost: 0, sameFence: 0 });
  expect(durable).toMatchObject({ lost: 0, unfinished: 0, sameFence: 0 });
}
