import { Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import type { InspectReport } from '../../src/cli/inspect.js';
import type { StatsReport } from '../../src/cli/stats.js';
import { PairedProcessor, PairedQueue, type PairInfo } from '../../src/index.js';
import { recordKey, recordKeyPattern } from '../../src/lock/keys.js';
import { groupIdPrefix, recordId } from '../../src/pairing/keys.js';
import { useClosers } from '../support/closers.js';
import { deferred } from '../support/deferred.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { parseJson, runCli } from './run-cli.js';

const redis = useRedis();
const closers = useClosers();

type Kind = 'plain' | 'fail' | 'hold';

describe('bullmq-paired inspect and stats', () => {
  it('show a completed, a failed-over and a running pair on two queue names of one Redis', async () => {
    const base = uniquePrefix('cli');
    const lockPrefix = `${base}-lock`;
    const connection = redis().connect();
    // 'first': the twin started first executes every job, so each pair's state is certain.
    const queue = new PairedQueue<{ kind: Kind }>(base, {
      executor: 'first',
      twins: { a: { connection, queue: `${base}-a` }, b: { connection, queue: `${base}-b` } },
    });
    closers.push(() => queue.close());
    const entered = deferred();
    const gate = deferred();
    const processor = async (
      job: { data: { kind: Kind } },
      _t?: string,
      _s?: AbortSignal,
      pair?: PairInfo,
    ) => {
      if (job.data.kind === 'fail' && pair?.twin === 'a') throw new Error('gateway down on a');
      if (job.data.kind === 'hold') {
        entered.resolve();
        await gate.promise;
      }
      return { by: pair?.twin, fence: pair?.fence };
    };
    const startTwin = (twin: 'a' | 'b'): void => {
      const paired = new PairedProcessor(processor, {
        twin,
        lockConnection: redis().connect(),
        group: base,
        prefix: lockPrefix,
      });
      const worker = new Worker(`${base}-${twin}`, paired.processor, {
        connection: redis().connect(),
      });
      worker.on('error', () => {});
      paired.attach(worker);
      closers.push(async () => {
        gate.resolve(); // a held job must end before worker.close() can
        await worker.close();
        await paired.close();
      });
    };
    const state = (twin: 'a' | 'b', id: string) => queue.queue(twin).getJobState(id);
    const poll = { timeout: 20_000, interval: 50 };

    // Only twin a runs at first, so which twin executes each job is certain.
    startTwin('a');
    await queue.addBulk([
      { name: 'push', data: { kind: 'plain' }, opts: { jobId: 'plain-1' } },
      { name: 'push', data: { kind: 'fail' }, opts: { jobId: 'fail-1' } },
      { name: 'push', data: { kind: 'hold' }, opts: { jobId: 'hold-1' } },
    ]);
    await expect.poll(() => state('a', 'plain-1'), poll).toBe('completed');
    await expect.poll(() => state('a', 'fail-1'), poll).toBe('failed');
    await entered.promise;
    // Twin b: completes plain-1 from the record, takes fail-1 over, parks its hold-1 copy.
    startTwin('b');
    await expect.poll(() => state('b', 'plain-1'), poll).toBe('completed');
    await expect.poll(() => state('b', 'fail-1'), poll).toBe('completed');
    await expect.poll(() => state('b', 'hold-1'), poll).toBe('delayed');

    const target = [
      '--redis',
      redis().url,
      '--queue',
      `${base}-a`,
      '--twin-queue',
      `${base}-b`,
      '--group',
      base,
      '--lock-prefix',
      lockPrefix,
    ];
    const ids = ['plain-1', 'fail-1', 'hold-1'] as const;
    const [human, json, stats, statsHuman] = await Promise.all([
      Promise.all(ids.map((id) => runCli(['inspect', ...target, id]))),
      Promise.all(ids.map((id) => runCli(['inspect', ...target, '--json', id]))),
      runCli(['stats', ...target, '--json']),
      runCli(['stats', ...target]),
    ]);
    for (const run of [...human, ...json, stats, statsHuman]) {
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
    }
    const [plain, fail, hold] = json.map((run) => parseJson<InspectReport>(run)) as [
      InspectReport,
      InspectReport,
      InspectReport,
    ];

    expect(plain.recordId).toBe(`${base}:plain-1`);
    expect(plain.record).toMatchObject({
      key: recordKey(lockPrefix, recordId(base, 'plain-1')),
      state: 'done',
      owner: 'a',
      fence: clockFence,
      attempts: 1,
      takeover: null,
      leaseLeftMs: null,
      result: { by: 'a', fence: clockFence },
      error: null,
    });
    expect(plain.record?.retentionLeftMs).toBeGreaterThan(0);
    expect(plain.copies.map((c) => [c.queue, c.found, c.state, c.returnvalue])).toEqual([
      [`${base}-a`, true, 'completed', { by: 'a', fence: clockFence }],
      [`${base}-b`, true, 'completed', { by: 'a', fence: clockFence }],
    ]);

    expect(fail.record).toMatchObject({
      state: 'done',
      owner: 'b',
      fence: clockFence,
      attempts: 2,
      takeover: 'failed',
      result: { by: 'b', fence: clockFence },
    });
    const [failA, failB] = fail.copies;
    expect(failA).toMatchObject({ state: 'failed', failedReason: 'gateway down on a' });
    expect(failA?.finishedOn).toBeGreaterThan(0);
    expect(failB).toMatchObject({ state: 'completed', failedReason: null });

    expect(hold.record).toMatchObject({
      state: 'running',
      owner: 'a',
      fence: clockFence,
      ownerConnected: true,
    });
    expect(hold.record?.leaseLeftMs).toBeGreaterThan(0);
    expect(hold.record?.leaseLeftMs).toBeLessThanOrEqual(30_000);
    const [holdA, holdB] = hold.copies;
    expect(holdA).toMatchObject({ state: 'active', parked: false, delayedUntil: null });
    expect(holdB).toMatchObject({ state: 'delayed', parked: true, attemptsMade: 0 });
    expect(holdB?.delayedUntil).toBeGreaterThan(Date.now());

    const [plainText, failText, holdText] = human.map((run) => run.stdout);
    expect(plainText).toContain(`pair record ${base}:plain-1 on ${redis().url}`);
    expect(plainText).toMatch(/state\s+done/);
    expect(plainText).toMatch(/owner\s+a\n/);
    expect(plainText).toMatch(/result\s+\{"by":"a","fence":\d{13}\}/);
    expect(plainText).toMatch(/retention\s+23 h 59 min left/);
    expect(failText).toMatch(/owner\s+b\n/);
    expect(failText).toMatch(/fence\s+\d{13}\n/);
    expect(failText).toMatch(/takeover\s+failed/);
    expect(failText).toMatch(
      new RegExp(`${base}-a\\s+\\S+\\s+failed\\s+1/1\\s+\\S+\\s+-\\s+gateway down on a`),
    );
    expect(holdText).toMatch(/state\s+running/);
    expect(holdText).toMatch(/lease left\s+\d/);
    expect(holdText).toMatch(/owner process\s+connected/);
    expect(holdText).toMatch(new RegExp(`${base}-a\\s+\\S+\\s+active`));
    expect(holdText).toMatch(
      new RegExp(`${base}-b\\s+\\S+\\s+delayed\\s+0/1\\s+-\\s+parked, back in \\d`),
    );

    const counts = parseJson<StatsReport>(stats);
    expect(counts.records).toEqual({
      waiting: 0,
      running: 1,
      done: 2,
      failed: 0,
      released: 0,
      corrupt: 0,
      total: 3,
    });
    expect(counts.patterns).toEqual([recordKeyPattern(lockPrefix, groupIdPrefix(base))]);
    expect(counts.queues.map((q) => q.queue)).toEqual([`${base}-a`, `${base}-b`]);
    expect(counts.queues[0]?.counts).toMatchObject({
      completed: 1,
      failed: 1,
      active: 1,
      delayed: 0,
    });
    expect(counts.queues[1]?.counts).toMatchObject({
      completed: 2,
      failed: 0,
      active: 0,
      delayed: 1,
    });
    expect(statsHuman.stdout).toMatch(
      /waiting\s+running\s+done\s+failed\s+released\s+corrupt\s+total\n\s+0\s+1\s+2\s+0\s+0\s+0\s+3\n/,
    );
    expect(statsHuman.stdout).toContain(`group ${base}`);

    // Let the held job finish: the shadow copy completes with a's result.
    gate.resolve();
    await expect.poll(() => state('b', 'hold-1'), poll).toBe('completed');
  });
});
