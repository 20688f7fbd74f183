/**
 * An executor whose process lives but cannot reach the lock store. Its lock connection runs
 * through a fault proxy in this process; everything else (its queue, the ledger, the twin)
 * talks to Redis directly. Times are `Date.now()` stamps from the worker processes: one
 * machine, one clock.
 */

import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { recordAddress } from '../../src/lock/keys.js';
import { copiesIn, executions, type TestQueue, twinsKit } from '../pairing/pairing-kit.js';
import { type ChildLine, FixtureProcess } from '../support/child.js';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.js';
import { clockFence, fenceSteps } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const queueRedis = useRedis();
const lockRedis = useRedis();
const kit = twinsKit({ queueRedis: { eu: queueRedis, us: queueRedis }, lockRedis });
const children: FixtureProcess[] = [];
let proxy: FaultProxy;

beforeEach(async () => {
  proxy = await startFaultProxy(lockRedis());
});
afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill()));
  await proxy.close();
});

const JOBS = 4;
const LEASE_MS = 2_000;

/** eu executes JOBS jobs with its lock connection through the proxy; us has parked its copies. */
async function executorAndShadow(jobMs: number) {
  const eu = await kit.startWorker('eu', { LEASE_MS: String(LEASE_MS), LOCK_URL: proxy.url });
  const queue = kit.pairedQueue();
  const added = await queue.addBulk(
    Array.from({ length: JOBS }, () => ({ name: 'notify', data: { ms: jobMs } })),
  );
  const ids = added.map((job) => job.id);
  await Promise.all(ids.map((id) => eu.next('started', (l) => l.id === id)));
  const us = await kit.startWorker('us', { LEASE_MS: String(LEASE_MS) });
  await Promise.all(ids.map((id) => us.next('shadowed', (l) => l.jobId === id)));
  return { eu, us, queue, ids };
}

interface Handover {
  id: string;
  /** When eu's signal aborted, and why (`leaseLost` event). */
  abortAt: number;
  abortReason: unknown;
  /** When us's run started, its fence and its takeover reason. */
  twinStart: number;
  fence: unknown;
  takeover: unknown;
  /** How long both ran at once: 0 when eu's signal aborted before us started. */
  overlapMs: number;
}

async function handovers(eu: FixtureProcess, us: FixtureProcess, ids: string[]) {
  return Promise.all(
    ids.map(async (id): Promise<Handover> => {
      const [lost, takeover, started] = await Promise.all([
        eu.next('leaseLost', (l) => l.jobId === id),
        us.next('takeover', (l) => l.jobId === id),
        us.next('started', (l) => l.id === id),
      ]);
      const abortAt = lost.at as number;
      const twinStart = started.at as number;
      return {
        id,
        abortAt,
        abortReason: lost.reason,
        twinStart,
        fence: started.fence,
        takeover: takeover.reason,
        overlapMs: Math.max(0, abortAt - twinStart),
      };
    }),
  );
}

/** Both copies of every job complete with us's result; eu's run never reached its end. */
async function expectTwinResults(queue: TestQueue, ids: string[]): Promise<void> {
  for (const id of ids) {
    const jobs = await copiesIn(queue, id, ['eu', 'us'], 'completed', 30_000);
    expect(jobs.eu.returnvalue).toEqual({ by: 'us', fence: clockFence });
    expect(jobs.us.returnvalue).toEqual({ by: 'us', fence: clockFence });
  }
  const ledger = await kit.ledger();
  for (const id of ids) {
    expect(fenceSteps(executions(ledger, id))).toEqual([
      ['eu', 'fenced'],
      ['us', 'higher'],
    ]);
  }
  expect(ledger.filter((e) => e.phase === 'end' && e.twin === 'eu')).toEqual([]);
}

function describeRuns(what: string, runs: Handover[], from: number): string {
  const rel = (t: number) => t - from;
  return `${what}: ${runs
    .map(
      (r) =>
        `abort +${rel(r.abortAt)} ms (${r.abortReason}), twin start +${rel(r.twinStart)} ms (${r.takeover}), overlap ${r.overlapMs} ms`,
    )
    .join('; ')}`;
}

describe('an executor cut off from the lock store while its process lives', () => {
  it('partition (connections stay open): every run aborts before the twin takes over at lease expiry; overlap 0', async () => {
    const { eu, us, queue, ids } = await executorAndShadow(5_000);
    const partitionedAt = Date.now();
    proxy.partition();
    const runs = await handovers(eu, us, ids);
    proxy.heal();
    console.info(describeRuns(`partition, lease ${LEASE_MS} ms`, runs, partitionedAt));
    for (const run of runs) {
      expect(run).toMatchObject({ abortReason: 'expired', takeover: 'expired', fence: clockFence });
      expect(run.abortAt, `${run.id}: eu aborted after us started`).toBeLessThanOrEqual(
        run.twinStart,
      );
    }
    await expectTwinResults(queue, ids);
  });

  it('reset and refused for longer than the lease: the twin takes over as from a crash, the run aborts on its own clock (bounded overlap)', async () => {
    const { eu, us, queue, ids } = await executorAndShadow(5_000);
    const cutAt = Date.now();
    proxy.cut();
    // Long after eu's own lease deadline (at most 2 s after the cut): if the aborts came only
    // with a reconnect, they would come after this.
    const healing = setTimeout(() => proxy.heal(), 2 * LEASE_MS);
    const runs = await handovers(eu, us, ids);
    clearTimeout(healing);
    const stillCut = proxy.state === 'cut';
    proxy.heal();
    console.info(describeRuns('cut until every run aborted', runs, cutAt));
    expect(stillCut, 'eu aborted only once the proxy healed').toBe(true);
    for (const run of runs) {
      // The store saw eu's connections close: to it, eu crashed.
      expect(run).toMatchObject({
        abortReason: 'expired',
        takeover: 'disconnected',
        fence: clockFence,
      });
      // The bound: eu stops when its own session lease ends, at most a lease after the cut.
      expect(run.overlapMs).toBeLessThan(LEASE_MS);
    }
    await expectTwinResults(queue, ids);
  });

  it('reset for 500 ms (longer than the 100 ms grace): one fenced duplicate per running job; each first run aborts as superseded when it reconnects', async () => {
    const { eu, us, queue, ids } = await executorAndShadow(4_000);
    const cutAt = Date.now();
    proxy.cut();
    // Heal once every job is taken over and at least 500 ms have passed.
    await Promise.all(ids.map((id) => us.next('takeover', (l) => l.jobId === id)));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, cutAt + 500 - Date.now())));
    const healedAt = Date.now();
    proxy.heal();
    const runs = await handovers(eu, us, ids);
    console.info(describeRuns('cut for 500 ms', runs, cutAt));
    for (const run of runs) {
      expect(run).toMatchObject({
        abortReason: 'superseded',
        takeover: 'disconnected',
        fence: clockFence,
      });
      expect(run.abortAt).toBeGreaterThanOrEqual(healedAt);
    }
    await expectTwinResults(queue, ids);
  });

  it('CLIENT KILL of its connections: its liveness channel is back within the grace, so nothing is taken over', async () => {
    const { eu, us, queue, ids } = await executorAndShadow(4_000);
    const admin = lockRedis().connect();
    const address = recordAddress(kit.names.lockPrefix, `${kit.names.queue}:${ids[0]}`);
    const { live } = JSON.parse((await admin.get(address.key)) ?? '{}') as { live: string };
    const gaps: number[] = [];
    for (let kill = 0; kill < 3; kill++) {
      const killedAt = performance.now();
      for (const client of proxy.clientAddresses()) await admin.client('KILL', 'ADDR', client);
      await vi.waitFor(async () => expect(await admin.pubsub('NUMSUB', live)).toEqual([live, 1]), {
        timeout: 10_000,
        interval: 1,
      });
      gaps.push(Math.round(performance.now() - killedAt));
    }
    for (const id of ids) {
      const jobs = await copiesIn(queue, id, ['eu', 'us'], 'completed', 30_000);
      expect(jobs.eu.returnvalue).toEqual({ by: 'eu', fence: clockFence });
      expect(jobs.us.returnvalue).toEqual({ by: 'eu', fence: clockFence });
    }
    const takeovers = us.lines.filter((l) => l.event === 'takeover');
    console.info(
      `CLIENT KILL x3: liveness channel back after ${gaps.join(', ')} ms; ${takeovers.length} takeovers`,
    );
    expect(takeovers).toEqual([]);
    expect(eu.lines.filter((l) => l.event === 'leaseLost')).toEqual([]);
    const ledger = await kit.ledger();
    for (const id of ids) {
      expect(fenceSteps(executions(ledger, id))).toEqual([['eu', 'fenced']]);
    }
  });

  it('an event loop stalled when the lease runs out still aborts first: the lease margin', async () => {
    const prefix = uniquePrefix('stall');
    const ids = ['task-a', 'task-b'];
    const eu = new FixtureProcess('lock-executor.ts', {
      REDIS_URL: proxy.url,
      PREFIX: prefix,
      MEMBER: 'eu',
      LEASE_MS: String(LEASE_MS),
      TASK_IDS: ids.join(','),
      STALL_MS: '300',
    });
    children.push(eu);
    await Promise.all(ids.map((id) => eu.next('executing', (l) => l.id === id)));
    const us = new PairedLock(lockRedis().connect(), { member: 'us', prefix, leaseMs: LEASE_MS });
    const starts = new Map<string, number>();
    const runs = ids.map((id) =>
      us.run(id, ({ fence, takeover }) => {
        starts.set(id, Date.now());
        return { fence, takeover };
      }),
    );
    const record = await us.inspect('task-a');
    const sessionKey = record?.ownerLiveness.sessionKey ?? '';
    expect(sessionKey).not.toBe('');
    proxy.partition();
    // Block eu's event loop from 100 ms before its session runs out on the store to 200 ms after.
    const leftMs = await lockRedis().connect().pttl(sessionKey);
    const expiresAt = Date.now() + leftMs;
    const stall = setTimeout(() => eu.child.kill('SIGUSR2'), leftMs - 100);
    const outcomes = await Promise.all(runs);
    clearTimeout(stall);
    const stalled = await eu.next('stalled');
    const aborted = await Promise.all(ids.map((id) => eu.next('aborted', (l) => l.id === id)));
    proxy.heal();
    await Promise.all(ids.map((id) => eu.next('settled', (l) => l.id === id)));
    await us.close();
    const rel = (t: unknown) => (t as number) - expiresAt;
    console.info(
      `stall ${rel(stalled.from)}..${rel(stalled.to)} ms around the store's lease end: ` +
        ids
          .map(
            (id, i) =>
              `${id} abort ${rel(aborted[i]?.at)} ms, twin start ${rel(starts.get(id))} ms`,
          )
          .join('; '),
    );
    // The stall did cover the moment the store let the lease go (else this proves nothing).
    expect(stalled.from as number).toBeLessThanOrEqual(expiresAt);
    expect(stalled.to as number).toBeGreaterThan(expiresAt);
    for (const [i, id] of ids.entries()) {
      expect(outcomes[i]).toMatchObject({
        role: 'executor',
        result: { fence: clockFence, takeover: 'expired' },
      });
      const line = aborted[i] as ChildLine;
      expect(line).toMatchObject({ reason: 'expired', fence: clockFence });
      expect(line.at as number).toBeLessThanOrEqual(starts.get(id) ?? 0);
    }
  });
});
