import { performance } from 'node:perf_hooks';
import { asError } from '../errors.js';
import { bestEffort } from './bounded.js';
import { localDeadline } from './deadline.js';
import type { RedisConnection } from './scripts.js';

/** This process's lease on one lock store (or one Cluster master), however it is kept. */
export interface ProcessSession {
  readonly key: string;
  /** When, on `performance.now()`'s clock, the lease may end: runs must be over by then. */
  readonly deadlineAt: number;
  start(): Promise<void>;
  /** Sets the grace the key tells twins (ms; undefined: none beyond the usual), at once. */
  setGrace(graceMs: number | undefined): void;
  /** The key is gone: runs under it stop, and it is made anew for the work that follows. */
  restore(): Promise<void>;
  /** Stops refreshing and deletes the key. */
  stop(): Promise<void>;
}

/**
 * This process's lease, kept from the main thread (a Cluster's masters; and wherever the
 * keeper thread of `ThreadSession` is off or could not start). One key, refreshed every heartbeat, stands for every record the
 * process executes: shadows check it per process instead of a lease per record, so neither
 * side pays per job while jobs run. If a refresh finds the key gone (it ran out while this
 * process was frozen or cut off) or no refresh gets through before the lease would end on
 * this process's own clock (a margin before it can end on the lock store: `localDeadline`),
 * `onLost` fires: every execution must stop, since a shadow may have taken over. The key is
 * then made anew for the work that follows.
 */
export class Session implements ProcessSession {
  private timer: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private stopped = false;
  private started = false;
  /** When, on `performance.now()`'s clock, the lease may end: runs must be over by then. */
  deadlineAt = Number.POSITIVE_INFINITY;
  /**
   * The key's value: '1', or this process's raised liveness grace in ms while its
   * connections are being reset (`FlapGrace`), which a twin reads before taking it for dead.
   */
  private value = '1';

  constructor(
    private readonly client: RedisConnection,
    readonly key: string,
    private readonly leaseMs: number,
    private readonly heartbeatMs: number,
    private readonly onLost: () => void,
    private readonly onError: (err: Error) => void,
  ) {}

  async start(): Promise<void> {
    const sentAt = performance.now();
    await this.client.set(this.key, this.value, 'PX', this.leaseMs);
    this.started = true;
    this.arm(sentAt);
    this.timer = setInterval(() => void this.renew(), this.heartbeatMs);
  }

  /** Sets the grace the key tells twins (ms; undefined: none beyond the usual), at once. */
  setGrace(graceMs: number | undefined): void {
    this.value = graceMs === undefined ? '1' : String(graceMs);
    if (this.started && !this.stopped) void this.renew();
  }

  private arm(sentAt: number): void {
    clearTimeout(this.deadline);
    this.deadlineAt = localDeadline(sentAt, this.leaseMs, this.heartbeatMs);
    const left = this.deadlineAt - performance.now();
    this.deadline = setTimeout(() => this.onLost(), Math.max(0, left));
  }

  private async renew(): Promise<void> {
    const sentAt = performance.now();
    try {
      const renewed = await this.client.set(this.key, this.value, 'PX', this.leaseMs, 'XX');
      if (this.stopped) return;
      if (renewed !== 'OK') await this.restore();
      else this.arm(sentAt);
    } catch (err) {
      // Unreachable: keep trying; the deadline fires if no refresh gets through in time.
      this.onError(asError(err));
    }
  }

  /**
   * The lock store says the key is gone (evicted, lost in a failover, or it ran out while
   * this process was frozen): whatever runs under it may have been taken over, so it stops,
   * and the key is made anew for the work that follows.
   */
  async restore(): Promise<void> {
    this.onLost();
    const sentAt = performance.now();
    await this.client.set(this.key, this.value, 'PX', this.leaseMs);
    if (!this.stopped) this.arm(sentAt);
  }

  /** Stops refreshing and deletes the key, so shadows see at once that this process left. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.deadline);
    if (!this.started) return;
    // Unreachable (or slow to answer): the key runs out by itself.
    await bestEffort(this.client, () => this.client.del(this.key));
  }
}
