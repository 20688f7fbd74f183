import { describe, expect, it } from 'vitest';
import { clockFence, fenceSteps } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { copiesIn, executions, twinsKit } from './pairing-kit.js';

const redis = useRedis();
const kit = twinsKit({ queueRedis: { eu: redis, us: redis }, lockRedis: redis });
// BullMQ's own stall recovery, shortened so the crashed twin's copy comes back within the test.
const FAST_STALL = { LOCK_DURATION: '2000', STALLED_INTERVAL: '1000' };

describe('PairedProcessor when the executor process goes away', () => {
  it('takes over within seconds of a SIGKILL despite a 30 s lease, and the dead twin copy completes later', async () => {
    const eu = await kit.startWorker('eu', FAST_STALL);
    const queue = kit.pairedQueue();
    const { id } = await queue.add('notify', { ms: 5_000 });
    await eu.next('started');
    const us = await kit.startWorker('us');
    await us.next('shadowed');
    const killedAt = Date.now();
    await eu.kill('SIGKILL');
    expect(await us.next('takeover')).toMatchObject({
      jobId: id,
      reason: 'disconnected',
      fence: clockFence,
    });
    const ran = executions(await kit.ledger(), id);
    const takeoverMs = (ran[1]?.start ?? 0) - killedAt;
    console.info(`crash takeover: twin started ${takeoverMs} ms after SIGKILL (lease 30 s)`);
    expect(fenceSteps(ran)).toEqual([
      ['eu', 'fenced'],
      ['us', 'higher'],
    ]);
    expect(takeoverMs).toBeLessThan(5_000);
    // A new eu worker recovers the stalled copy; it completes from the record, without running.
    await kit.startWorker('eu', FAST_STALL);
    const jobs = await copiesIn(queue, id, ['eu', 'us'], 'completed', 60_000);
    expect(jobs.eu.returnvalue).toEqual({ by: 'us', fence: clockFence });
    expect(jobs.us.returnvalue).toEqual({ by: 'us', fence: clockFence });
    expect(executions(await kit.ledger(), id)).toHaveLength(2);
  });

  it("runs a taken-over copy next, ahead of the twin's backlog", async () => {
    const eu = await kit.startWorker('eu', { CONCURRENCY: '1' });
    const queue = kit.pairedQueue();
    const { id } = await queue.add('notify', { holdUntil: 'go:ahead-x' }, { jobId: 'ahead-x' });
    await eu.next('started');
    const us = await kit.startWorker('us', { CONCURRENCY: '1' });
    await us.next('shadowed');
    // A backlog on us: eu's slot is taken, so us runs these one by one, 400 ms each.
    await queue.addBulk(
      Array.from({ length: 8 }, (_, i) => ({
        name: 'notify',
        data: { ms: 400 },
        opts: { jobId: `ahead-y${i}` },
      })),
    );
    await us.next('started', (l) => l.id === 'ahead-y0');
    await eu.kill('SIGKILL');
    await us.next('takeover');
    await kit.release('go:ahead-x');
    await copiesIn(queue, id, ['us']);
    const starts = executions(await kit.ledger()).filter((e) => e.twin === 'us');
    const before = starts.findIndex((e) => e.id === id);
    // Promote alone appends the copy behind every waiting job (7 here): it must come next,
    // or one later when a slot freed while it was being moved.
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThanOrEqual(2);
  });

  it('adopts copies parked by a dead process of its twin and takes them over when the executor dies', async () => {
    const eu = await kit.startWorker('eu');
    const queue = kit.pairedQueue();
    const { id } = await queue.add('notify', { holdUntil: 'go:adopt' }, { jobId: 'adopt-1' });
    await eu.next('started');
    const usFirst = await kit.startWorker('us');
    await usFirst.next('shadowed');
    await usFirst.kill('SIGKILL'); // its parked copy now has nobody to wake it but maxParkMs (5 min)
    const usSecond = await kit.startWorker('us');
    await eu.kill('SIGKILL');
    await kit.release('go:adopt');
    // The starting us process adopted the copy: it wakes it when eu is gone, long before 5 min.
    expect(await usSecond.next('takeover')).toMatchObject({
      jobId: id,
      reason: 'disconnected',
      fence: clockFence,
    });
    const { us: taken } = await copiesIn(queue, id, ['us']);
    expect(taken.returnvalue).toEqual({ by: 'us', fence: clockFence });
  });

  it('a running sibling adopts the copies parked by a process of its twin that died', async () => {
    const eu = await kit.startWorker('eu');
    const queue = kit.pairedQueue();
    // Two us processes before the job: whichever parks its copy is killed, the other lives on.
    const usProcesses = [await kit.startWorker('us'), await kit.startWorker('us')];
    // The eu copy first, so eu executes; then the us copy (BullMQ's own queues, same job id).
    const id = 'sibling-1';
    const data = { holdUntil: 'go:sibling' };
    await queue.queue('eu').add('notify', data, { jobId: id });
    await eu.next('started');
    await queue.queue('us').add('notify', data, { jobId: id });
    const parker = await Promise.race(
      usProcesses.map((child) => child.next('shadowed').then(() => child)),
    );
    const survivor = usProcesses.find((child) => child !== parker);
    if (survivor === undefined) throw new Error('no surviving us process');
    await parker.kill('SIGKILL'); // its parked copy has nobody to wake it but maxParkMs (5 min)
    await eu.kill('SIGKILL');
    await kit.release('go:sibling');
    // Before: the copy slept out maxParkMs; the survivor never looked, as it had not restarted.
    expect(await survivor.next('takeover')).toMatchObject({
      jobId: id,
      reason: 'disconnected',
      fence: clockFence,
    });
    const { us: taken } = await copiesIn(queue, id, ['us']);
    expect(taken.returnvalue).toEqual({ by: 'us', fence: clockFence });
  });

  it('falls back to lease expiry when liveness is off', async () => {
    const slow = { LIVENESS: '0', LEASE_MS: '2000' };
    const eu = await kit.startWorker('eu', slow);
    const queue = kit.pairedQueue();
    const { id } = await queue.add('notify', { ms: 5_000 });
    const started = await eu.next('started');
    const us = await kit.startWorker('us', slow);
    await us.next('shadowed');
    await eu.kill('SIGKILL');
    expect(await us.next('takeover')).toMatchObject({
      jobId: id,
      reason: 'expired',
      fence: clockFence,
    });
    await kit.waitForExecutions(id, 2);
    const ran = executions(await kit.ledger(), id);
    // Nothing but the lease can reveal this death, so the twin cannot start before it ends.
    expect((ran[1]?.start ?? 0) - (ran[0]?.start ?? 0)).toBeGreaterThanOrEqual(1_900);
    expect(started).toMatchObject({ fence: clockFence });
  });

  it('stops a frozen executor that wakes to a higher fence; its copy completes with the twin result', async () => {
    const short = { LEASE_MS: '2000' };
    const eu = await kit.startWorker('eu', short);
    const queue = kit.pairedQueue();
    // Long enough that the frozen run's own sleep is not yet due when it wakes: its abort must
    // come from the lost lease, not lose a race with an overdue timer.
    const { id } = await queue.add('notify', { ms: 10_000 });
    await eu.next('started');
    const us = await kit.startWorker('us', short);
    await us.next('shadowed');
    eu.child.kill('SIGSTOP'); // frozen: its connections stay open, so only the lease can tell
    expect(await us.next('takeover')).toMatchObject({
      jobId: id,
      reason: 'expired',
      fence: clockFence,
    });
    eu.child.kill('SIGCONT');
    expect(await eu.next('leaseLost')).toMatchObject({ jobId: id, fence: clockFence });
    const jobs = await copiesIn(queue, id, ['eu', 'us'], 'completed', 30_000);
    expect(jobs.eu.returnvalue).toEqual({ by: 'us', fence: clockFence });
    expect(jobs.us.returnvalue).toEqual({ by: 'us', fence: clockFence });
    const ledger = await kit.ledger();
    // The frozen run never finished: it was aborted when it woke and found a higher fence.
    expect(ledger.filter((e) => e.phase === 'end').map((e) => [e.twin, e.fence])).toEqual([
      ['us', jobs.us.returnvalue.fence],
    ]);
  });

  it('hands over on worker.close(): the twin takes over at once, the closed copy completes from the record', async () => {
    const eu = await kit.startWorker('eu');
    const queue = kit.pairedQueue();
    const { id } = await queue.add('notify', { ms: 5_000 });
    await eu.next('started');
    const us = await kit.startWorker('us');
    await us.next('shadowed');
    eu.child.kill('SIGTERM');
    expect(await us.next('takeover')).toMatchObject({
      jobId: id,
      reason: 'released',
      fence: clockFence,
    });
    await eu.next('closed');
    const { eu: parked } = await copiesIn(queue, id, ['eu'], 'delayed');
    expect((await queue.queue('eu').getJobLogs(id)).logs).toContainEqual(
      expect.stringMatching(
        /^bullmq-paired: released by eu on shutdown \(fence \d{13}\); the twin takes over$/,
      ),
    );
    await kit.startWorker('eu');
    await parked.promote(); // as if its park ran out: it must complete with us's result
    const jobs = await copiesIn(queue, id, ['eu', 'us'], 'completed', 40_000);
    const euLogs = (await queue.queue('eu').getJobLogs(id)).logs;
    expect(jobs.eu.returnvalue, euLogs.join('\n')).toEqual({ by: 'us', fence: clockFence });
  });

  it('drains a late twin backlog of 100 jobs without executing any of them', async () => {
    await kit.startWorker('eu');
    const queue = kit.pairedQueue();
    const added = await queue.addBulk(
      Array.from({ length: 100 }, () => ({ name: 'notify', data: {} })),
    );
    for (const { id } of added) await copiesIn(queue, id, ['eu']);
    const us = await kit.startWorker('us');
    for (const { id } of added) await copiesIn(queue, id, ['us']);
    const ran = executions(await kit.ledger());
    expect(ran).toHaveLength(100);
    expect(ran.every((e) => e.twin === 'eu')).toBe(true);
    expect(us.lines.filter((l) => l.event === 'twinCompleted')).toHaveLength(100);
    expect(us.lines.filter((l) => l.event === 'executed')).toHaveLength(0);
  });
});
