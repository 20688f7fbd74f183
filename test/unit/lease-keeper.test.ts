/**
 * LeaseKeeper's timekeeping on fake timers. The lock store is a fake answering `evalsha` (and `eval`)
 * (the heartbeat script) only: what it replies is all the keeper reads. How the script
 * itself behaves is test/lock's business, against a real Redis.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LeaseLostError } from '../../src/errors.js';
import { localDeadline } from '../../src/lock/deadline.js';
import { recordAddress } from '../../src/lock/keys.js';
import { LeaseKeeper, type LeaseKeeperOptions } from '../../src/lock/lease-keeper.js';
import { REPLY } from '../../src/lock/lua/scripts.generated.js';
import type { RedisConnection } from '../../src/lock/scripts.js';
import { never, useFakeClock } from './fake-clock.js';

const clock = useFakeClock();

const OPTIONS: LeaseKeeperOptions = {
  leaseMs: 2_000,
  heartbeatMs: 500,
  retentionMs: 60_000,
  perRecord: true,
  epochKey: '',
  sharded: false,
};
/** Where the first deadline falls: the lease less its margin, from the grant at 0. */
const DEADLINE = localDeadline(0, OPTIONS.leaseMs, OPTIONS.heartbeatMs);

const keepers: LeaseKeeper[] = [];
afterEach(() => {
  for (const keeper of keepers.splice(0)) keeper.stop();
});

/** A keeper of fence 1, granted now, whose heartbeats get `reply()`. */
function keeper(reply: () => Promise<unknown>, options: Partial<LeaseKeeperOptions> = {}) {
  // Every script call, whether EVAL (a client's first of each script) or EVALSHA.
  const evalsha = vi.fn(reply);
  const client = { evalsha, eval: evalsha } as unknown as RedisConnection;
  const onError = vi.fn();
  const k = new LeaseKeeper(
    client,
    recordAddress('unit', 'task-1'),
    { token: 'token-1', fence: 1 },
    { ...OPTIONS, ...options },
    clock.now(),
    onError,
  );
  keepers.push(k);
  return { keeper: k, evalsha, onError };
}

function lossOf(signal: AbortSignal): LeaseLostError {
  expect(signal.aborted).toBe(true);
  expect(signal.reason).toBeInstanceOf(LeaseLostError);
  return signal.reason as LeaseLostError;
}

describe('LeaseKeeper', () => {
  it('aborts at localDeadline when no heartbeat gets through', async () => {
    const { keeper: k, evalsha } = keeper(never);
    expect(DEADLINE).toBe(1_800); // 2 s lease less its tenth
    await clock.advance(DEADLINE - 1);
    expect(evalsha).toHaveBeenCalledTimes(3); // at 500, 1 000, 1 500: none answered
    expect(k.signal.aborted).toBe(false);
    await clock.advance(1);
    expect(lossOf(k.signal)).toMatchObject({ id: 'task-1', fence: 1, reason: 'expired' });
  });

  it('moves the deadline to localDeadline of the last heartbeat that got through', async () => {
    const { keeper: k } = keeper(async () => [REPLY.OK, 1]);
    await clock.advance(DEADLINE);
    expect(k.signal.aborted).toBe(false);
    expect(() => k.assert()).not.toThrow();
  });

  it('aborts with superseded when a heartbeat is refused, naming the fence that holds it', async () => {
    const { keeper: k, evalsha } = keeper(async () => [REPLY.STALE, 'running', 2, 'us']);
    await clock.advance(OPTIONS.heartbeatMs);
    expect(evalsha).toHaveBeenCalledTimes(1);
    expect(lossOf(k.signal)).toMatchObject({ reason: 'superseded', currentFence: 2 });
    await clock.advance(OPTIONS.heartbeatMs * 4);
    expect(evalsha).toHaveBeenCalledTimes(1); // stopped beating
  });

  it('aborts with missing when the record is gone', async () => {
    const { keeper: k } = keeper(async () => [REPLY.MISSING]);
    await clock.advance(OPTIONS.heartbeatMs);
    expect(lossOf(k.signal).reason).toBe('missing');
  });

  it('keeps beating through an unreachable lock store, reporting each error', async () => {
    const { keeper: k, onError } = keeper(async () => {
      throw new Error('ECONNREFUSED');
    });
    await clock.advance(1_500);
    expect(onError).toHaveBeenCalledTimes(3);
    expect(k.signal.aborted).toBe(false);
    await clock.advance(DEADLINE - 1_500);
    expect(lossOf(k.signal).reason).toBe('expired');
  });

  it('assert() throws once the deadline has passed, before the deadline timer has run', () => {
    const { keeper: k } = keeper(never);
    clock.freeze(DEADLINE - 1);
    expect(() => k.assert()).not.toThrow();
    clock.freeze(1); // frozen past it: the timer, due now, has not had its turn
    expect(k.signal.aborted).toBe(false);
    expect(() => k.assert()).toThrow(LeaseLostError);
    expect(lossOf(k.signal).reason).toBe('expired');
    expect(() => k.assert()).toThrow(LeaseLostError); // and every time after
  });

  it("assert() throws at the session's deadline when that comes first", () => {
    const { keeper: k } = keeper(never);
    clock.freeze(1_000);
    expect(() => k.assert(1_001)).not.toThrow();
    expect(() => k.assert(1_000)).toThrow(LeaseLostError);
  });

  it('under a session: no deadline of its own, one heartbeat every retention / 3', async () => {
    const { keeper: k, evalsha } = keeper(async () => [REPLY.OK, 1], { perRecord: false });
    await clock.advance(OPTIONS.retentionMs / 3 - 1);
    expect(evalsha).not.toHaveBeenCalled();
    clock.freeze(OPTIONS.leaseMs * 10);
    expect(() => k.assert()).not.toThrow();
    await clock.advance(1);
    expect(evalsha).toHaveBeenCalledTimes(1);
    expect(k.signal.aborted).toBe(false);
  });

  it('stop() ends heartbeats and the deadline; a late reply is ignored', async () => {
    let answer: (reply: unknown) => void = () => {};
    const { keeper: k, evalsha } = keeper(
      () =>
        new Promise((resolve) => {
          answer = resolve;
        }),
    );
    await clock.advance(OPTIONS.heartbeatMs);
    k.stop();
    answer([REPLY.STALE, 'running', 2, 'us']);
    await clock.advance(DEADLINE * 2);
    expect(evalsha).toHaveBeenCalledTimes(1);
    expect(k.signal.aborted).toBe(false);
  });
});
