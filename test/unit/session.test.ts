/**
 * Session's timekeeping on fake timers, against a fake lock store answering the SET and DEL
 * a session sends (how a real Redis expires the key is test/faults' business).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { localDeadline } from '../../src/lock/deadline.js';
import { sessionKey } from '../../src/lock/keys.js';
import type { RedisConnection } from '../../src/lock/scripts.js';
import { Session } from '../../src/lock/session.js';
import { never, useFakeClock } from './fake-clock.js';

const clock = useFakeClock();

const LEASE_MS = 3_000;
const HEARTBEAT_MS = 1_000;
const KEY = sessionKey('unit', 'one');

const sessions: Session[] = [];
afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.stop()));
});

/** A session on a fake store whose SET … XX (a renewal) answers `renew()`. */
function session(renew: () => Promise<string | null> = async () => 'OK') {
  const set = vi.fn(async (...args: unknown[]) => (args.includes('XX') ? renew() : 'OK'));
  const del = vi.fn(async () => 1);
  const client = { set, del, status: 'ready' } as unknown as RedisConnection;
  const onLost = vi.fn();
  const onError = vi.fn();
  const s = new Session(client, KEY, LEASE_MS, HEARTBEAT_MS, onLost, onError);
  sessions.push(s);
  return { session: s, set, del, onLost, onError };
}

describe('Session', () => {
  it('start() makes the key with the lease, and sets the deadline from when it was sent', async () => {
    const { session: s, set } = session();
    clock.freeze(100);
    await s.start();
    expect(set).toHaveBeenCalledWith(KEY, '1', 'PX', LEASE_MS);
    expect(s.deadlineAt).toBe(localDeadline(100, LEASE_MS, HEARTBEAT_MS));
  });

  it('renews every heartbeat with SET XX, moving the deadline each time', async () => {
    const { session: s, set, onLost } = session();
    await s.start();
    await clock.advance(HEARTBEAT_MS);
    expect(set).toHaveBeenLastCalledWith(KEY, '1', 'PX', LEASE_MS, 'XX');
    expect(s.deadlineAt).toBe(localDeadline(HEARTBEAT_MS, LEASE_MS, HEARTBEAT_MS));
    await clock.advance(HEARTBEAT_MS * 10);
    expect(set).toHaveBeenCalledTimes(12); // the start, then one renewal a heartbeat
    expect(onLost).not.toHaveBeenCalled();
  });

  it('calls onLost at the local deadline when no renewal gets through', async () => {
    const { session: s, onLost } = session(never);
    await s.start();
    const deadline = localDeadline(0, LEASE_MS, HEARTBEAT_MS);
    expect(deadline).toBe(2_700);
    await clock.advance(deadline - 1);
    expect(onLost).not.toHaveBeenCalled();
    await clock.advance(1);
    expect(onLost).toHaveBeenCalledTimes(1);
  });

  it('keeps renewing through errors, reporting them, until the deadline', async () => {
    const {
      session: s,
      onLost,
      onError,
    } = session(async () => {
      throw new Error('ECONNREFUSED');
    });
    await s.start();
    await clock.advance(2_700);
    expect(onError).toHaveBeenCalledTimes(2);
    expect(onLost).toHaveBeenCalledTimes(1);
  });

  it('a renewal that finds the key gone calls onLost, makes it anew and re-arms', async () => {
    let renewals = 0;
    const { session: s, set, onLost } = session(async () => (++renewals === 2 ? null : 'OK'));
    await s.start();
    await clock.advance(HEARTBEAT_MS * 2);
    expect(onLost).toHaveBeenCalledTimes(1);
    expect(set).toHaveBeenLastCalledWith(KEY, '1', 'PX', LEASE_MS);
    expect(s.deadlineAt).toBe(localDeadline(HEARTBEAT_MS * 2, LEASE_MS, HEARTBEAT_MS));
    await clock.advance(HEARTBEAT_MS * 5);
    expect(onLost).toHaveBeenCalledTimes(1);
  });

  it('restore() stops what runs (onLost), makes the key anew and re-arms from then', async () => {
    const { session: s, set, onLost } = session(never);
    await s.start();
    await clock.advance(2_000);
    set.mockClear();
    await s.restore();
    expect(onLost).toHaveBeenCalledTimes(1);
    expect(set).toHaveBeenCalledWith(KEY, '1', 'PX', LEASE_MS);
    expect(s.deadlineAt).toBe(localDeadline(2_000, LEASE_MS, HEARTBEAT_MS));
    await clock.advance(2_699); // past the first deadline (2 700), short of the new one
    expect(onLost).toHaveBeenCalledTimes(1);
    await clock.advance(1);
    expect(onLost).toHaveBeenCalledTimes(2);
  });

  it('stop() ends renewals and the deadline and deletes the key', async () => {
    const { session: s, set, del, onLost } = session();
    await s.start();
    await s.stop();
    expect(del).toHaveBeenCalledWith(KEY);
    await clock.advance(LEASE_MS * 3);
    expect(set).toHaveBeenCalledTimes(1);
    expect(onLost).not.toHaveBeenCalled();
  });

  it('stop() before start() sends nothing', async () => {
    const { session: s, set, del } = session();
    await s.stop();
    expect(set).not.toHaveBeenCalled();
    expect(del).not.toHaveBeenCalled();
  });
});
