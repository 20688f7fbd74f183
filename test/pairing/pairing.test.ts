import { describe, expect, it } from 'vitest';
import { clockFence, fenceAbove } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { copiesIn, executions, twinsKit } from './pairing-kit.js';

const redis = useRedis();
const kit = twinsKit({ queueRedis: { eu: redis, us: redis }, lockRedis: redis });

describe('PairedProcessor with two twin worker processes', () => {
  it('runs a job once and completes both copies with the same returnvalue', async () => {
    await Promise.all([kit.startWorker('eu'), kit.startWorker('us')]);
    const queue = kit.pairedQueue();
    const { id } = await queue.add('notify', { ms: 50 }, { jobId: 'n-1' });
    const jobs = await copiesIn(queue, id);
    const ran = executions(await kit.ledger(), id);
    expect(ran).toHaveLength(1);
    const executor = ran[0]?.twin ?? 'eu';
    const shadow = executor === 'eu' ? 'us' : 'eu';
    expect(jobs.eu.returnvalue).toEqual({ by: executor, fence: clockFence });
    expect(jobs.us.returnvalue).toEqual(jobs.eu.returnvalue);
    const { fence } = jobs.eu.returnvalue as { fence: number };
    const logs = async (twin: 'eu' | 'us') => (await queue.queue(twin).getJobLogs(id)).logs;
    expect(await logs(executor)).toContain(
      `bullmq-paired: executed on ${executor} (fence ${fence})`,
    );
    expect(await logs(shadow)).toContain(
      `bullmq-paired: completed by twin ${executor} (fence ${fence}); not run on ${shadow}`,
    );
  });

  it('runs a job added twice with the same id once', async () => {
    await Promise.all([kit.startWorker('eu'), kit.startWorker('us')]);
    const queue = kit.pairedQueue();
    await queue.add('notify', { ms: 300 }, { jobId: 'twice-1' });
    await queue.add('notify', { ms: 300 }, { jobId: 'twice-1' });
    await copiesIn(queue, 'twice-1');
    expect(executions(await kit.ledger(), 'twice-1')).toHaveLength(1);
  });

  it('takes over at once when the executor throws: the twin runs it with a higher fence', async () => {
    const eu = await kit.startWorker('eu');
    const queue = kit.pairedQueue();
    // eu holds the job until us has started and shadowed it, then fails.
    const { id } = await queue.add('notify', { holdUntil: 'go:fail-1', failOn: 'eu' });
    await eu.next('started');
    const us = await kit.startWorker('us');
    const shadowed = await us.next('shadowed');
    expect(shadowed).toMatchObject({ jobId: id, owner: 'eu', fence: clockFence });
    const first = Number(shadowed.fence);
    await kit.release('go:fail-1');
    const takeover = await us.next('takeover');
    expect(takeover).toMatchObject({
      jobId: id,
      reason: 'failed',
      fence: fenceAbove(first),
      queue: expect.any(String),
    });
    // The lock store tells how long the job had no executor: from eu's failure to this grant.
    expect(takeover.idleMs).toBeGreaterThanOrEqual(0);
    expect(takeover.idleMs).toBeLessThan(10_000);
    const { us: usCopy } = await copiesIn(queue, id, ['us']);
    expect(usCopy.returnvalue).toEqual({ by: 'us', fence: takeover.fence });
    // eu's copy failed (no attempts left): BullMQ's own retry policy still applies per twin.
    const { eu: euCopy } = await copiesIn(queue, id, ['eu'], 'failed');
    expect(euCopy.failedReason).toBe('failing on eu as asked');
    expect((await queue.queue('eu').getJobLogs(id)).logs).toContain(
      `bullmq-paired: run on eu (fence ${first}) failed; the twin takes over unless onPeerFailure is 'respect'`,
    );
    const ran = executions(await kit.ledger(), id);
    expect(ran.map((e) => [e.twin, Number(e.fence)])).toEqual([
      ['eu', first],
      ['us', takeover.fence],
    ]);
    const takeoverMs = (ran[1]?.start ?? 0) - (euCopy.finishedOn ?? 0);
    console.info(
      `failure takeover: twin started ${takeoverMs} ms after the executor's copy failed`,
    );
    expect(takeoverMs).toBeLessThan(5_000);
  });

  it("fails the shadow's copy with the executor's error under onPeerFailure: 'respect'", async () => {
    const eu = await kit.startWorker('eu');
    const queue = kit.pairedQueue();
    const { id } = await queue.add('notify', { ms: 2_500, failOn: 'eu' });
    await eu.next('started');
    await kit.startWorker('us', { ON_PEER_FAILURE: 'respect' });
    const jobs = await copiesIn(queue, id, ['eu', 'us'], 'failed');
    expect(jobs.us.failedReason).toMatch(
      /failed on member "eu" \(fence \d{13}\): Error: failing on eu as asked/,
    );
    expect(executions(await kit.ledger(), id)).toHaveLength(1);
  });

  it("changes nothing when one twin's clock is hours off", async () => {
    const eu = await kit.startWorker('eu');
    const queue = kit.pairedQueue();
    const { id } = await queue.add('notify', { ms: 2_500, failOn: 'eu' });
    await eu.next('started');
    const us = await kit.startWorker('us', { CLOCK_SKEW_MS: String(3 * 3_600_000) });
    expect(await us.next('takeover')).toMatchObject({
      jobId: id,
      reason: 'failed',
      fence: clockFence,
    });
    const { us: taken } = await copiesIn(queue, id, ['us']);
    expect(taken.returnvalue).toEqual({ by: 'us', fence: clockFence });
    const { id: second } = await queue.add('notify', { ms: 100 });
    const jobs = await copiesIn(queue, second);
    expect(jobs.us.returnvalue).toEqual(jobs.eu.returnvalue);
    expect(executions(await kit.ledger(), second)).toHaveLength(1);
  });

  it('lets shadows free their slot: two long jobs run in parallel at concurrency 1', async () => {
    await Promise.all([
      kit.startWorker('eu', { CONCURRENCY: '1' }),
      kit.startWorker('us', { CONCURRENCY: '1' }),
    ]);
    const queue = kit.pairedQueue();
    const [a, b] = await queue.addBulk([
      { name: 'long', data: { ms: 1_500 } },
      { name: 'long', data: { ms: 1_500 } },
    ]);
    await copiesIn(queue, a?.id ?? '');
    await copiesIn(queue, b?.id ?? '');
    const ran = executions(await kit.ledger());
    expect(ran).toHaveLength(2);
    expect(new Set(ran.map((e) => e.twin)).size).toBe(2);
    const [x, y] = ran as [(typeof ran)[0], (typeof ran)[0]];
    // Each twin ran one while its parked copy of the other held no slot: the runs overlap.
    expect(Math.abs(x.start - y.start)).toBeLessThan(1_500);
  });
});
