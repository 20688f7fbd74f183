/**
 * Share of a lease that an executor gives up on its own clock. It must stop before the lock
 * store lets its lease end, since a shadow takes over from then on. Measured from when the
 * refresh was sent, the local deadline fell only one network hop before the store's; a
 * shadow needs 5–50 ms to notice, so an event loop running later than that (a long
 * synchronous task, a GC pause) fired the abort after the twin had started. A tenth of the
 * lease absorbs such a stall (200 ms at a 2 s lease, 3 s at the default 30 s) at the price
 * of aborting that much earlier when the lock store is really out of reach.
 */
export const LEASE_MARGIN = 0.1;

/**
 * When, on `performance.now()`'s clock, an executor whose last refresh was sent at `sentAt`
 * must have stopped. The margin never takes more than half the gap between two refreshes,
 * so a heartbeat close to the lease still lands before its deadline.
 */
export function localDeadline(sentAt: number, leaseMs: number, heartbeatMs: number): number {
  const margin = Math.min(leaseMs * LEASE_MARGIN, (leaseMs - heartbeatMs) / 2);
  return sentAt + leaseMs - margin;
}
