/**
 * A shadow's Ticket on fake timers. Its Notifier is a fake with the two calls a ticket makes
 * (watch the owners' liveness, forget the ticket); the Notifier's own work against Redis is
 * test/lock's business.
 */
import { describe, expect, it, vi } from 'vitest';
import { livenessChannel, sessionKey } from '../../src/lock/keys.js';
import type { Notifier } from '../../src/lock/notifier.js';
import { NO_OWNER, type Owner, Ticket } from '../../src/lock/ticket.js';
import { useFakeClock } from './fake-clock.js';

const clock = useFakeClock();

const OWNER: Owner = {
  channel: livenessChannel('unit', 'eu'),
  sessionKey: sessionKey('unit', 'eu'),
};

function ticket() {
  const notifier = { watchLiveness: vi.fn(), forget: vi.fn() };
  return { ticket: new Ticket('tag', notifier as unknown as Notifier), notifier };
}

/** Whether `promise` has settled, after the microtasks now queued have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await clock.advance(0);
  return done;
}

describe('Ticket', () => {
  it('remembers a wake that came before anyone listened, and hands it over once', () => {
    const { ticket: t } = ticket();
    t.wake('settled');
    const first = vi.fn();
    t.onNextWake(NO_OWNER, first);
    expect(first).toHaveBeenCalledWith('settled');
    const second = vi.fn();
    t.onNextWake(NO_OWNER, second);
    expect(second).not.toHaveBeenCalled();
    t.wake('gone');
    expect(second).toHaveBeenCalledWith('gone');
    t.wake('recheck'); // nobody listens now: kept for the next one
    const third = vi.fn();
    t.onNextWake(NO_OWNER, third);
    expect(third).toHaveBeenCalledWith('recheck');
  });

  it('asks the notifier to watch liveness only for a known owner', () => {
    const { ticket: t, notifier } = ticket();
    t.onNextWake(NO_OWNER, () => {});
    expect(notifier.watchLiveness).not.toHaveBeenCalled();
    t.onNextWake(OWNER, () => {});
    expect(t.owner).toBe(OWNER);
    expect(notifier.watchLiveness).toHaveBeenCalledTimes(1);
  });

  it('wait() resolves after its timeout when nothing wakes it', async () => {
    const { ticket: t } = ticket();
    const waiting = t.wait(OWNER, 1_000);
    await clock.advance(999);
    expect(await settled(waiting)).toBe(false);
    await clock.advance(1);
    expect(await settled(waiting)).toBe(true);
    expect(t.woke).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('wait() resolves at a wake, a pending one included, and clears its timer', async () => {
    const { ticket: t } = ticket();
    const waiting = t.wait(OWNER, 1_000);
    await clock.advance(10);
    t.wake('gone');
    expect(await settled(waiting)).toBe(true);
    expect(t.woke).toBe(true);
    expect(vi.getTimerCount()).toBe(0);

    t.wake('settled');
    await t.wait(OWNER, 1_000);
    expect(t.woke).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('wait() rejects with the reason of an aborted signal, and hears no later wake', async () => {
    const { ticket: t } = ticket();
    const controller = new AbortController();
    const waiting = t.wait(OWNER, 1_000, controller.signal);
    const reason = new Error('closing');
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    expect(vi.getTimerCount()).toBe(0);
    t.wake('settled'); // kept for the next listener, not lost to the aborted one
    const next = vi.fn();
    t.onNextWake(NO_OWNER, next);
    expect(next).toHaveBeenCalledWith('settled');
  });

  it('close() drops the listener and unregisters from the notifier', () => {
    const { ticket: t, notifier } = ticket();
    const listener = vi.fn();
    t.onNextWake(NO_OWNER, listener);
    t.close();
    t.wake('settled');
    expect(listener).not.toHaveBeenCalled();
    expect(notifier.forget).toHaveBeenCalledWith(t);
  });
});
