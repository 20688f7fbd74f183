/** A process's grace while its lock-store connections are being reset (src/lock/flap-grace.ts). */
import { describe, expect, it, vi } from 'vitest';
import { FLAP_WINDOW_MS, FlapGrace } from '../../src/lock/flap-grace.js';
import { useFakeClock } from './fake-clock.js';

const clock = useFakeClock();

function flapGrace(usualMs: number, leaseMs = 30_000) {
  const applied: (number | undefined)[] = [];
  const grace = new FlapGrace(
    () => usualMs,
    leaseMs,
    (raised) => applied.push(raised),
  );
  return { grace, applied };
}

describe('FlapGrace', () => {
  it('raises the grace at a reset (2 s at least, 4 times the usual), for a minute after the last one', async () => {
    const { grace, applied } = flapGrace(100);
    expect(grace.currentMs).toBe(0);
    grace.reset();
    expect(grace.currentMs).toBe(2_000);
    expect(applied).toEqual([2_000]);
    await clock.advance(FLAP_WINDOW_MS - 1_000);
    // Another reset: raised as long again from now, told once only.
    grace.reset();
    expect(applied).toEqual([2_000]);
    await clock.advance(FLAP_WINDOW_MS - 1);
    expect(grace.currentMs).toBe(2_000);
    await clock.advance(1);
    expect(grace.currentMs).toBe(0);
    expect(applied).toEqual([2_000, undefined]);
    grace.stop();
  });

  it('asks for 4 times a far process grace, at most a quarter of the lease', () => {
    expect(raisedFor(800, 30_000)).toBe(3_200);
    expect(raisedFor(800, 8_000)).toBe(2_000);
    expect(raisedFor(50, 4_000)).toBe(1_000);
  });

  it('stops its timer at stop()', () => {
    const { grace } = flapGrace(100);
    grace.reset();
    grace.stop();
    expect(vi.getTimerCount()).toBe(0);
  });
});

function raisedFor(usualMs: number, leaseMs: number): number {
  const { grace } = flapGrace(usualMs, leaseMs);
  grace.reset();
  const raised = grace.currentMs;
  grace.stop();
  return raised;
}
