import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXECUTOR_OPTION } from '../../src/index.js';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.js';
import { clockFence, firstRunFence, isClockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import type { TestRedis } from '../support/redis.js';
import { copiesIn, executions, type TestQueue, twinsKit } from './pairing-kit.js';

/**
 * PairedQueue's `executor` option: the chosen twin runs at once and claims the job while it
 * runs (fence 1); the other twin's copy parks at once as a standby and takes over with a
 * higher fence when needed.
 */
const redis = useRedis();
const kit = twinsKit({ queueRedis: { eu: redis, us: redis }, lockRedis: redis });

/** Waits until job `id`'s record is running: its executor's claim reached the lock store. */
async function claimed(id: string): Promise<void> {
  const lock = redis().connect();
  const key = `${kit.names.lockPrefix}:pair:{${kit.names.queue}:${id}}`;
  await vi.waitFor(async () => expect(await lock.get(key)).toContain('"running"'), {
    timeout: 10_000,
  });
}

/** `count` jobs of `ms` each, with ids `<prefix>0`, `<prefix>1`, … */
function addJobs(queue: TestQueue, count: number, ms: number, prefix: string) {
  return queue.addBulk(
    Array.from({ length: count }, (_, i) => ({
      name: 'n',
      data: { ms },
      opts: { jobId: `${prefix}${i}` },
    })),
  );
}

describe('PairedQueue executor: a twin chosen at add time', () => {
  it("'balanced': each job runs once, on the twin its id hashes to, and both copies complete with its result", async () => {
    await kit.startWorker('eu');
    await kit.startWorker('us');
    const queue = kit.pairedQueue('balanced');
    const added = await addJobs(queue, 24, 5, 'b');
    const ledger = async () => executions(await kit.ledger());
    for (const { id } of added) {
      const copies = await copiesIn(queue, id);
      const chosen = (copies.eu.opts as Record<string, unknown>)[EXECUTOR_OPTION];
      expect((copies.us.opts as Record<string, unknown>)[EXECUTOR_OPTION]).toBe(chosen);
      expect(copies.eu.returnvalue).toEqual({ by: chosen, fence: firstRunFence });
      expect(copies.us.returnvalue).toEqual(copies.eu.returnvalue);
    }
    const ran = await ledger();
    expect(ran).toHaveLength(24);
    expect(new Set(ran.map((e) => e.id)).size).toBe(24);
    // Both twins were chosen for some jobs.
    expect(new Set(ran.map((e) => e.twin))).toEqual(new Set(['eu', 'us']));
  });

  it('the standby runs the job (a clock fence) when no worker of the chosen twin claims it within standbyGraceMs', async () => {
    const us = await kit.startWorker('us', { STANDBY_GRACE_MS: '400' });
    const queue = kit.pairedQueue('eu');
    const { id } = await queue.add('n', { ms: 5 });
    await us.next('shadowed', (l) => l.jobId === id);
    const done = await copiesIn(queue, id, ['us']);
    expect(done.us.returnvalue).toEqual({ by: 'us', fence: clockFence });
    expect(executions(await kit.ledger(), id).map((e) => [e.twin, e.fence])).toEqual([
      ['us', clockFence],
    ]);
    // The chosen twin comes late (the same grace: the job is too old to start unclaimed): its
    // copy completes from the record, without running.
    await kit.startWorker('eu', { STANDBY_GRACE_MS: '400' });
    const late = await copiesIn(queue, id, ['eu']);
    expect(late.eu.returnvalue).toEqual(done.us.returnvalue);
    expect(executions(await kit.ledger(), id)).toHaveLength(1);
  });

  it('a chosen twin whose copy is too old to start unclaimed runs it once its claim is granted, fenced on the clock', async () => {
    const queue = kit.pairedQueue('eu');
    const { id } = await queue.add('n', { ms: 5 });
    // Older than half the grace by the time eu picks it up: eu claims before it runs.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const eu = await kit.startWorker('eu', { STANDBY_GRACE_MS: '200' });
    // Not fence 1: only a run started before its claim's answer has it, and a run after a
    // lost record would repeat it (review of the clock fences).
    expect(await eu.next('started', (l) => l.id === id)).toMatchObject({ fence: clockFence });
    const done = await copiesIn(queue, id, ['eu']);
    expect(done.eu.returnvalue).toEqual({ by: 'eu', fence: clockFence });
  });

  it("a chosen twin's run that started before its claim lost is aborted, fenced lower, and its copy ends with the pair's result", async () => {
    // eu believes the job young (a grace of 10 min) and was listed before it was added, so
    // it starts at once and claims meanwhile; its queue is paused until us has run the job.
    const eu = await kit.startWorker('eu', { STANDBY_GRACE_MS: '600000' });
    const queue = kit.pairedQueue('eu');
    await queue.queue('eu').pause();
    await kit.pastFirstSecond('eu');
    const us = await kit.startWorker('us', { STANDBY_GRACE_MS: '200' });
    const { id } = await queue.add('n', { holdUntil: 'go:late' });
    await us.next('started', (l) => l.id === id);
    await queue.queue('eu').resume();
    await eu.next('started', (l) => l.id === id);
    // Superseded by its claim's answer, eu's copy shadows us's run (parked) before the release.
    await copiesIn(queue, id, ['eu'], 'delayed');
    await kit.release('go:late');
    const copies = await copiesIn(queue, id);
    expect(copies.us.returnvalue).toEqual({ by: 'us', fence: clockFence });
    expect(copies.eu.returnvalue).toEqual(copies.us.returnvalue);
    const ledger = await kit.ledger();
    expect(executions(ledger, id).map((e) => [e.twin, e.fence])).toEqual([
      ['us', clockFence],
      ['eu', 1],
    ]);
    // The superseded run never reached its end: its signal aborted it.
    expect(ledger.filter((e) => e.id === id && e.phase === 'end').map((e) => e.twin)).toEqual([
      'us',
    ]);
  });

  it('the standby takes over at once (a clock fence) when the chosen executor is SIGKILLed', async () => {
    const eu = await kit.startWorker('eu');
    const us = await kit.startWorker('us');
    const queue = kit.pairedQueue('eu');
    const { id } = await queue.add('n', { holdUntil: 'go:kill' });
    await eu.next('started', (l) => l.id === id);
    await us.next('shadowed', (l) => l.jobId === id);
    // Its claim has reached the lock store (a process killed before that is waited for
    // standbyGraceMs instead: nothing tells the standby it existed).
    await claimed(id);
    await eu.kill('SIGKILL');
    expect(await us.next('takeover', (l) => l.jobId === id)).toMatchObject({
      reason: 'disconnected',
      fence: clockFence,
    });
    await kit.release('go:kill');
    const done = await copiesIn(queue, id, ['us']);
    expect(done.us.returnvalue).toEqual({ by: 'us', fence: clockFence });
  });
});

describe('PairedQueue executor: a job id added again within retention', () => {
  it('is the same job: both copies complete with the stored result; a chosen run started before its claim is refused is aborted', async () => {
    const eu = await kit.startWorker('eu');
    await kit.startWorker('us');
    const queue = kit.pairedQueue('eu');
    await kit.pastFirstSecond('eu');
    const opts = { jobId: 'again-1', removeOnComplete: true };
    await queue.add('n', { ms: 5 }, opts);
    const lock = redis().connect();
    const key = `${kit.names.lockPrefix}:pair:{${kit.names.queue}:again-1}`;
    await vi.waitFor(async () => expect(await lock.get(key)).toContain('"done"'), {
      timeout: 10_000,
    });
    await vi.waitFor(
      async () => expect(await queue.queue('us').getJobState('again-1')).toBe('unknown'),
      {
        timeout: 10_000,
      },
    );
    const stored = await lock.get(key);
    // Added again once BullMQ removed both copies: held until its signal aborts.
    await queue.add('n', { holdUntil: 'go:never' }, { jobId: 'again-1' });
    const copies = await copiesIn(queue, 'again-1');
    expect(copies.eu.returnvalue).toEqual({ by: 'eu', fence: firstRunFence });
    expect(copies.us.returnvalue).toEqual(copies.eu.returnvalue);
    // The record is the first run's: nothing stored over it.
    expect(await lock.get(key)).toBe(stored);
    const runs = executions(await kit.ledger(), 'again-1');
    expect(
      runs.every(
        (e) => e.twin === 'eu' && (Number(e.fence) === 1 || isClockFence(Number(e.fence))),
      ),
    ).toBe(true);
    // eu's second copy ended from the record (its start, if any, aborted by the refusal).
    expect(eu.lines.some((l) => l.event === 'twinCompleted' && l.jobId === 'again-1')).toBe(true);
  });
});

describe('PairedQueue executor: a chosen twin behind its backlog', () => {
  it('past standbyGraceMs the standby takes queued jobs over from a busy twin, and every job still runs exactly once', async () => {
    // A grace far below eu's backlog (30 jobs of 100 ms, one at a time: 3 s).
    const grace = { STANDBY_GRACE_MS: '500' };
    await kit.startWorker('eu', { CONCURRENCY: '1', ...grace });
    await kit.startWorker('us', grace);
    const queue = kit.pairedQueue('eu');
    const added = await addJobs(queue, 30, 100, 'behind-');
    for (const { id } of added) await copiesIn(queue, id, ['eu', 'us'], 'completed', 30_000);
    const ran = executions(await kit.ledger());
    // us took over part of eu's backlog (clock fences): a job that old is never started by eu
    // before its claim is answered, so eu's copy completes from the record instead.
    expect(ran.filter((e) => e.twin === 'us').length).toBeGreaterThan(0);
    expect(ran.filter((e) => e.twin === 'us').every((e) => isClockFence(Number(e.fence)))).toBe(
      true,
    );
    expect(ran).toHaveLength(30);
    expect(new Set(ran.map((e) => e.id)).size).toBe(30);
  });
});

describe('PairedQueue executor: the chosen twin has no live process left', () => {
  it('a chosen twin SIGKILLed with 200 jobs queued for it: the survivor runs them all at once, not after standbyGraceMs', async () => {
    // A grace of a minute: on the code before twin presence, the survivor waited it out.
    const grace = { STANDBY_GRACE_MS: '60000' };
    const eu = await kit.startWorker('eu', { CONCURRENCY: '1', ...grace });
    await kit.startWorker('us', { CONCURRENCY: '50', ...grace });
    const queue = kit.pairedQueue('eu');
    const added = await addJobs(queue, 200, 50, 'queued-');
    await eu.next('started');
    await eu.kill('SIGKILL');
    const killedAt = Date.now();
    for (const { id } of added) await copiesIn(queue, id, ['us']);
    const seconds = (Date.now() - killedAt) / 1000;
    console.info(`survivor finished 200 queued jobs ${seconds.toFixed(2)} s after the kill`);
    // 200 x 50 ms over 50 slots is 0.2 s of work; generous for a noisy 2-core machine, far
    // below the minute of grace.
    expect(seconds).toBeLessThan(20);
    const ran = executions(await kit.ledger());
    // Every job ran; what us ran carries a fence above any eu could have held.
    expect(new Set(ran.map((e) => e.id)).size).toBe(200);
    expect(ran.filter((e) => e.twin === 'us').every((e) => isClockFence(Number(e.fence)))).toBe(
      true,
    );
  });

  it('the survivor runs at once what is added for a twin that has had no live process', async () => {
    const us = await kit.startWorker('us', { STANDBY_GRACE_MS: '60000' });
    const queue = kit.pairedQueue('eu');
    const { id } = await queue.add('n', { ms: 5 });
    await us.next('shadowed', (l) => l.jobId === id);
    const { us: done } = await copiesIn(queue, id, ['us']);
    expect(done.returnvalue).toEqual({ by: 'us', fence: clockFence });
    // Once the twin is known gone, a new job runs on its first pickup, without parking.
    const { id: next } = await queue.add('n', { ms: 5 });
    await copiesIn(queue, next, ['us']);
    expect(us.lines.filter((l) => l.event === 'shadowed' && l.jobId === next)).toEqual([]);
    expect(executions(await kit.ledger(), next).map((e) => [e.twin, e.fence])).toEqual([
      ['us', clockFence],
    ]);
  });

  it('a twin that comes back is not taken for gone on an old look: its new job runs there, once', async () => {
    const us = await kit.startWorker('us', { STANDBY_GRACE_MS: '60000' });
    const queue = kit.pairedQueue('eu');
    const { id } = await queue.add('n', { ms: 5 });
    await copiesIn(queue, id, ['us']); // eu found gone: us ran it
    await kit.startWorker('eu', { STANDBY_GRACE_MS: '60000' });
    // Past eu's own first second (it claims before it runs then), and past one look period.
    await kit.pastFirstSecond('eu');
    // eu's queue held until us has decided about its copy of the new job.
    await queue.queue('eu').pause();
    const { id: next } = await queue.add('n', { ms: 5 });
    await us.next('shadowed', (l) => l.jobId === next);
    await queue.queue('eu').resume();
    await copiesIn(queue, next);
    // Before: us's first pickup read the verdict 'gone' of its last look, seconds old, and ran it.
    expect(executions(await kit.ledger(), next).map((e) => [e.twin, e.fence])).toEqual([
      ['eu', firstRunFence],
    ]);
  });
});

describe('PairedQueue executor over a slow link to the lock store', () => {
  let proxy: FaultProxy;
  const ONE_WAY_MS = 400;
  beforeAll(async () => {
    proxy = await startFaultProxy(redis(), { delayMs: ONE_WAY_MS });
  });
  afterAll(async () => {
    await proxy.close();
  });
  const slow = twinsKit({
    queueRedis: { eu: redis, us: redis },
    lockRedis: () => ({ url: proxy.url }) as TestRedis,
    ledgerRedis: redis,
  });

  it('the chosen twin starts a job without waiting for the lock store, and its twin completes with its result', async () => {
    const eu = await slow.startWorker('eu');
    await slow.startWorker('us');
    const queue = slow.pairedQueue('eu');
    // The first job also waits for each process's start-up checks and subscription.
    const warm = await queue.add('n', { ms: 5 });
    await copiesIn(queue, warm.id);
    const addedAt = Date.now();
    const { id } = await queue.add('n', { ms: 5 });
    const started = await eu.next('started', (l) => l.id === id);
    // A grant first would take a round trip (2 x 400 ms) before the processor could start.
    expect(Number(started.at) - addedAt).toBeLessThan(ONE_WAY_MS);
    expect(started.fence).toBe(1);
    const copies = await copiesIn(queue, id);
    expect(copies.us.returnvalue).toEqual({ by: 'eu', fence: 1 });
    expect(executions(await slow.ledger(), id)).toHaveLength(1);
  });
});

describe('liveness across a slow link: a reconnecting executor is not taken for dead', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    // The executor (us) reaches the lock store 80 ms away; the standby (eu) sits next to it.
    proxy = await startFaultProxy(redis(), { delayMs: 40 });
  });
  afterAll(async () => {
    await proxy.close();
  });

  it("resets of the far executor's lock connections (subscriber included) cause no takeover", async () => {
    const eu = await kit.startWorker('eu');
    const us = await kit.startWorker('us', { LOCK_URL: proxy.url, WAIT_READY: '1' });
    const queue = kit.pairedQueue('us');
    const { id } = await queue.add('n', { holdUntil: 'go:far' });
    await us.next('started', (l) => l.id === id);
    await eu.next('shadowed', (l) => l.jobId === id);
    await claimed(id);
    for (let reset = 0; reset < 3; reset++) {
      // Every connection through the link is reset; they reconnect at once, 80 ms away.
      proxy.cut();
      proxy.heal();
      await new Promise((resolve) => setTimeout(resolve, 1_500));
    }
    await kit.release('go:far');
    const copies = await copiesIn(queue, id);
    expect(copies.eu.returnvalue).toEqual({ by: 'us', fence: firstRunFence });
    expect(executions(await kit.ledger(), id).map((e) => [e.twin, e.fence])).toEqual([
      ['us', firstRunFence],
    ]);
    expect(eu.lines.filter((l) => l.event === 'takeover')).toEqual([]);
  });
});
