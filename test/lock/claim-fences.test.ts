/**
 * Which claims keep fence 1. Only a run that started before its claim was answered (a chosen
 * executor's speculative start) has fence 1; everything else, a claim sent before its run
 * included, is fenced on the store's clock, so fence 1 cannot come twice for a job (found in
 * review of the clock fences: a claim that waited for its answer got 1 after a lost record).
 */
import { describe, expect, it } from 'vitest';
import { PairCore } from '../../src/lock/core.js';
import type { ClaimReply, ExecuteExtras } from '../../src/lock/execute.js';
import { recordAddress, settleChannel } from '../../src/lock/keys.js';
import { resolveLockOptions } from '../../src/lock/options.js';
import { acquire, type Completion } from '../../src/lock/scripts.js';
import { parseSettled } from '../../src/lock/settle-message.js';
import { StartedClaim } from '../../src/lock/started-claim.js';
import { deferred } from '../support/deferred.js';
import { clockFence, fenceAbove } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { sentClaim, usAcquire } from './lock-test-kit.js';

const redis = useRedis();

describe('claims and fence 1', () => {
  it('grants fence 1 only to a claim of a run already started; a waiting claim is fenced on the clock', async () => {
    const client = redis().connect();
    const prefix = uniquePrefix('claims');
    const started = recordAddress(prefix, 'started');
    const waiting = recordAddress(prefix, 'waiting');
    const eu = usAcquire({ member: 'eu', token: 'eu-claim' });
    expect(await acquire(client, started, { ...eu, claim: 'started' })).toMatchObject({
      kind: 'granted',
      fence: 1,
    });
    // The same claim asked again (its reply lost) keeps its grant and its fence.
    expect(await acquire(client, started, { ...eu, claim: 'started' })).toMatchObject({
      kind: 'granted',
      fence: 1,
    });
    expect(await acquire(client, waiting, { ...eu, claim: 'waiting' })).toMatchObject({
      kind: 'granted',
      fence: clockFence,
    });
  });

  it('fences anew a started claim token asked again by a new run (a lost reply, then a new pickup)', async () => {
    const client = redis().connect();
    const address = recordAddress(uniquePrefix('claims'), 'job');
    const eu = usAcquire({ member: 'eu', token: 'eu-claim' });
    expect(await acquire(client, address, { ...eu, claim: 'started' })).toMatchObject({
      fence: 1,
    });
    // The process kept the token of the claim whose reply it lost and asks with it again.
    expect(await acquire(client, address, eu)).toMatchObject({
      kind: 'granted',
      fence: fenceAbove(1),
      attempts: 2,
    });
  });

  it('settles nothing when the claim is refused after the routine threw (a record at fence 1 is another run)', async () => {
    const client = redis().connect();
    const prefix = uniquePrefix('claims');
    const core = new PairCore(client, resolveLockOptions({ member: 'eu', prefix }), () => {});
    try {
      await core.ready();
      const address = core.address('job-1');
      // An earlier run of this id claimed fence 1 and released its record.
      const first = await acquire(client, address, {
        ...usAcquire({ member: 'eu', token: 'first-claim' }),
        claim: 'started',
      });
      expect(first).toMatchObject({ kind: 'granted', fence: 1 });
      // A run with fence 1 whose routine throws `message`, started before `claim` answers.
      const failingRun = (token: string, message: string, extras?: ExecuteExtras) =>
        core.execute(
          address,
          { token, fence: 1 },
          { takeover: undefined, attempts: 1 },
          performance.now(),
          () => {
            throw new Error(message);
          },
          undefined,
          extras,
        );
      const released = await failingRun('first-claim', 'first run gives up');
      expect(released.kind).not.toBe('completed');
      const before = await core.inspect(address);
      expect(before).toMatchObject({ fence: 1 });
      // The job again, started before its claim's answer; the routine throws before it.
      const claim = deferred<ClaimReply>();
      const outcome = failingRun('second-claim', 'second run fails at once', {
        claim: await sentClaim(claim.promise),
      });
      // Answered only now: refused, the record holds the first run.
      claim.resolve((await core.claim(address, 'second-claim')).reply);
      expect(await outcome).toMatchObject({ kind: 'superseded' });
      // The first run's record is as it was: no settle of the second run was taken for a retry.
      const after = await core.inspect(address);
      expect(after).toMatchObject({ state: before?.state, fence: 1, updatedAt: before?.updatedAt });
    } finally {
      await core.close();
    }
  });
});

describe('a run that ends before its claim went out (a short job)', () => {
  /** eu's core, and a run of `routine` on `id` started before its claim, with fence 1. */
  async function setUp(routine: () => unknown) {
    const client = redis().connect();
    const prefix = uniquePrefix('claim-complete');
    const core = new PairCore(client, resolveLockOptions({ member: 'eu', prefix }), () => {});
    await core.ready();
    const address = core.address('job-1');
    const sends: (Completion | undefined)[] = [];
    const run = () => {
      const claim = new StartedClaim((completion) => {
        sends.push(completion);
        return core.claim(address, 'eu-claim', 'started', completion).then((c) => c.reply);
      });
      return core.execute(
        address,
        { token: 'eu-claim', fence: 1 },
        { takeover: undefined, attempts: 1 },
        performance.now(),
        routine,
        undefined,
        { claim },
      );
    };
    return { client, prefix, core, address, sends, run };
  }

  it('claims and completes in one call, announced to waiting shadows with its result', async () => {
    const { client, prefix, core, address, sends, run } = await setUp(() => ({ sent: 1 }));
    try {
      const listener = redis().connect();
      const heard = new Promise<string>((resolve) => listener.on('message', (_c, m) => resolve(m)));
      await listener.subscribe(settleChannel(prefix));
      expect(await run()).toEqual({ kind: 'completed', result: { sent: 1 } });
      // One call, carrying the result; none without it.
      expect(sends).toEqual([{ result: '{"sent":1}' }]);
      expect(await core.inspect(address)).toMatchObject({
        state: 'done',
        owner: 'eu',
        fence: 1,
        attempts: 1,
        result: { sent: 1 },
      });
      const raw = await client.get(address.key);
      expect(JSON.parse(raw ?? '{}')).not.toHaveProperty('skey');
      expect(parseSettled(await heard)).toMatchObject({ done: { fence: 1, owner: 'eu' } });
    } finally {
      await core.close();
    }
  });

  it('is refused when another run holds the record, and stores nothing', async () => {
    const { client, core, address, sends, run } = await setUp(() => 'late');
    try {
      // us took the job meanwhile (the chosen twin looked gone), fenced on the clock.
      expect(await acquire(client, address, usAcquire())).toMatchObject({ kind: 'granted' });
      const outcome = await run();
      expect(outcome).toMatchObject({ kind: 'superseded' });
      expect(sends).toEqual([{ result: '"late"' }]);
      expect(await core.inspect(address)).toMatchObject({ state: 'running', owner: 'us' });
    } finally {
      await core.close();
    }
  });

  it('asked again after a lost reply, keeps its grant and its stored result', async () => {
    const client = redis().connect();
    const address = recordAddress(uniquePrefix('claim-complete'), 'job');
    const eu = {
      ...usAcquire({ member: 'eu', token: 'eu-claim' }),
      claim: 'started' as const,
      completion: { result: '"once"' },
    };
    expect(await acquire(client, address, eu)).toMatchObject({ kind: 'granted', fence: 1 });
    expect(await acquire(client, address, eu)).toMatchObject({ kind: 'granted', fence: 1 });
    // Another run's claim of the same job is refused: the job is done.
    expect(
      await acquire(client, address, { ...eu, token: 'other', completion: { result: '"x"' } }),
    ).toMatchObject({ kind: 'taken', state: 'done' });
  });

  it('a run that awaits I/O first sends its claim before it ends, then completes', async () => {
    const { core, address, sends, run } = await setUp(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return 'slow';
    });
    try {
      expect(await run()).toEqual({ kind: 'completed', result: 'slow' });
      expect(sends).toEqual([undefined]);
      expect(await core.inspect(address)).toMatchObject({ state: 'done', result: 'slow' });
    } finally {
      await core.close();
    }
  });
});
