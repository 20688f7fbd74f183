/**
 * The defaults across regions (WAN lab: eu and us 40 ms apart, the lock store at a third
 * site 150 ms one way from each): a job, a flow and a job scheduler's iterations run once each,
 * on the twin chosen at add, and no executor waits for the lock store before it starts (a
 * round trip to it is 300 ms; with executor 'first' every start waited for one).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXECUTOR_OPTION, PairedFlowProducer, PairedQueue } from '../../src/index.js';
import { FixtureProcess } from '../support/child.js';
import { firstRunFence } from '../support/fences.js';
import { uniquePrefix } from '../support/redis.js';
import { REGIONS, startWanTopology, type WanTopology } from '../support/wan-topology.js';
import { executions, type LedgerEntry } from './pairing-kit.js';

const LOCK_ONE_WAY_MS = 150;
let topology: WanTopology;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  topology = await startWanTopology({
    thirdSiteMs: LOCK_ONE_WAY_MS,
    purpose: 'the WAN-lab pairing tests',
  });
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
afterAll(async () => {
  await topology.stop();
});

/** A twin worker process per region on queue `<base>`, and the producer in eu. */
async function regions(base: string) {
  const ledgerUrl = topology.queueRedis.eu.url; // test bookkeeping, off the measured path
  const workers = await Promise.all(
    REGIONS.map(async (region) => {
      const child = new FixtureProcess('twin-worker.ts', {
        ...topology.regions[region].workerEnv,
        TWIN: region,
        QUEUE: base,
        LEDGER: `${base}:ledger`,
        LEDGER_URL: ledgerUrl,
        LOCK_PREFIX: `${base}-lock`,
        WAIT_READY: '1',
      });
      closers.push(() => child.kill());
      await child.next('ready', undefined, 60_000);
      return child;
    }),
  );
  const queue = new PairedQueue(base, {
    twins: {
      eu: { connection: { host: '127.0.0.1', port: topology.queueRedis.eu.port } },
      us: { connection: { host: '127.0.0.1', port: topology.queueRedis.us.port } },
    },
  });
  closers.push(() => queue.close());
  const ledger = new Redis(ledgerUrl);
  closers.push(() => ledger.quit());
  // Both regions' processes listed (slow at 150 ms), then past a twin's first second, when
  // its first process claims before it runs.
  const lock = new Redis(topology.lockRedis.url);
  closers.push(() => lock.quit());
  await vi.waitFor(
    async () => {
      for (const region of REGIONS) {
        expect(await lock.zcard(`${base}-lock:siblings:${region}:${base}`)).toBe(1);
      }
    },
    { timeout: 30_000, interval: 50 },
  );
  await sleep(1_200);
  return {
    workers,
    queue,
    ledger: async (): Promise<LedgerEntry[]> =>
      (await ledger.lrange(`${base}:ledger`, 0, -1)).map((raw) => JSON.parse(raw) as LedgerEntry),
  };
}

/** Each of `ids` ran once, on the twin chosen for it, without waiting for the lock store. */
async function ranOnceAtOnce(
  queue: PairedQueue,
  ledger: () => Promise<LedgerEntry[]>,
  ids: readonly string[],
): Promise<void> {
  for (const id of ids) {
    await vi.waitFor(
      async () => {
        for (const twin of REGIONS) {
          expect(await queue.queue(twin).getJobState(id), `${twin} copy of ${id}`).toBe(
            'completed',
          );
        }
      },
      { timeout: 30_000, interval: 100 },
    );
  }
  const entries = await ledger();
  for (const id of ids) {
    const copies = await queue.getJob(id);
    const chosen = (copies?.jobs.eu?.opts as Record<string, unknown> | undefined)?.[
      EXECUTOR_OPTION
    ];
    const ran = executions(entries, id);
    expect(ran.map((e) => [e.twin, e.fence])).toEqual([[chosen, firstRunFence]]);
    const executorCopy = copies?.jobs[chosen as 'eu' | 'us'];
    // From the pickup (processedOn) to the processor's start: well under one round trip to
    // the lock store (300 ms); both clocks are this machine's.
    const waited = (ran[0]?.start ?? 0) - (executorCopy?.processedOn ?? 0);
    expect(waited).toBeLessThan(LOCK_ONE_WAY_MS);
    expect(copies?.jobs.us?.returnvalue).toEqual(copies?.jobs.eu?.returnvalue);
  }
}

describe('the defaults over the WAN lab (lock store 150 ms away)', () => {
  it('runs jobs, a flow and job-scheduler iterations once each, on the chosen twin, without a lock-store round trip before the start', async () => {
    const base = uniquePrefix('wan');
    const { queue, ledger } = await regions(base);
    const added = await queue.addBulk(
      Array.from({ length: 6 }, (_, i) => ({
        name: 'n',
        data: { ms: 5 },
        opts: { jobId: `j${i}` },
      })),
    );
    await ranOnceAtOnce(
      queue,
      ledger,
      added.map((job) => job.id),
    );

    const flows = new PairedFlowProducer();
    closers.push(() => flows.close());
    await flows.add({
      name: 'parent',
      queue,
      data: {},
      opts: { jobId: 'flow-parent' },
      children: [1, 2].map((n) => ({
        name: 'child',
        queue,
        data: { ms: 5 },
        opts: { jobId: `flow-child-${n}` },
      })),
    });
    await ranOnceAtOnce(queue, ledger, ['flow-child-1', 'flow-child-2', 'flow-parent']);

    const next = await queue.upsertJobScheduler(
      'tick',
      { every: 1_000 },
      { name: 'tick', data: { ms: 5 } },
    );
    const first = next.eu?.id as string;
    expect(next.us?.id).toBe(first);
    await ranOnceAtOnce(queue, ledger, [first]);
    await queue.removeJobScheduler('tick');
  });
});
