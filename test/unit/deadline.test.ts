import { describe, expect, it } from 'vitest';
import { LEASE_MARGIN, localDeadline } from '../../src/lock/deadline.js';

describe('localDeadline', () => {
  it('falls a tenth of the lease before the lease ends, counted from when the refresh was sent', () => {
    expect(LEASE_MARGIN).toBe(0.1);
    expect(localDeadline(0, 30_000, 10_000)).toBe(27_000);
    expect(localDeadline(5_000, 2_000, 500)).toBe(6_800);
  });

  it('never takes more than half the gap between two refreshes', () => {
    // A heartbeat close to the lease: the margin shrinks so the next refresh lands first.
    expect(localDeadline(0, 2_000, 1_900)).toBe(1_950);
    expect(localDeadline(100, 1_000, 1_000)).toBe(1_100);
  });

  it('always falls after the next refresh is due and no later than the lease', () => {
    for (const [leaseMs, heartbeatMs] of [
      [2_000, 500],
      [30_000, 10_000],
      [1_000, 999],
      [60_000, 59_000],
    ] as const) {
      const deadline = localDeadline(0, leaseMs, heartbeatMs);
      expect(deadline).toBeGreaterThan(heartbeatMs);
      expect(deadline).toBeLessThanOrEqual(leaseMs);
    }
  });
});
