import { performance } from 'node:perf_hooks';
import { LeaseLostError } from '../errors.js';
import type { RecordAddress } from './keys.js';
import { type Grant, heartbeat, type RedisConnection } from './scripts.js';

export interface LeaseKeeperOptions {
  leaseMs: number;
  heartbeatMs: number;
  retentionMs: number;
}

/**
 * Keeps an executor's lease alive while its routine runs, and aborts `signal` the moment
 * the lease is lost: either a heartbeat is refused (someone holds a higher fence), or no
 * heartbeat got through before the lease ran out on this process's monotonic clock. The
 * local deadline is computed from when the last successful heartbeat was *sent*, so it
 * always falls before Redis' own deadline: the abort precedes any lease-expiry takeover.
 */
export class LeaseKeeper {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly client: RedisConnection,
    private readonly address: RecordAddress,
    private readonly grant: Grant,
    private readonly options: LeaseKeeperOptions,
    grantedAt: number,
    private readonly onError: (err: Error) => void,
  ) {
    this.armDeadline(grantedAt);
    this.timer = setInterval(() => {
      if (!this.stopped) void this.beat();
    }, options.heartbeatMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Abort from outside (e.g. the caller's own signal). */
  abort(reason: unknown): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /**
   * Stops heartbeating. A heartbeat still in flight needs no waiting for: it went out on the
   * same connection before the settle that follows, and Redis runs them in that order; its
   * late reply is ignored. (Waiting would hang while the lock store is down.)
   */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.deadlineTimer);
    this.timer = undefined;
    this.deadlineTimer = undefined;
  }

  private armDeadline(sentAt: number): void {
    clearTimeout(this.deadlineTimer);
    const left = sentAt + this.options.leaseMs - performance.now();
    this.deadlineTimer = setTimeout(() => this.lose('expired'), Math.max(0, left));
  }

  private lose(reason: 'expired' | 'superseded' | 'missing', currentFence?: number): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.deadlineTimer);
    this.abort(new LeaseLostError(this.address.id, this.grant.fence, reason, currentFence));
  }

  private async beat(): Promise<void> {
    const sentAt = performance.now();
    try {
      const reply = await heartbeat(
        this.client,
        this.address,
        this.grant,
        this.options.leaseMs,
        this.options.retentionMs,
      );
      if (this.stopped) return;
      if (reply.kind === 'ok') this.armDeadline(sentAt);
      else if (reply.kind === 'stale') this.lose('superseded', reply.fence);
      else this.lose('missing');
    } catch (err) {
      // Unreachable lock store: keep trying; the deadline timer aborts if it never returns.
      this.onError(err instanceof Error ? err : new Error(String(err)));
    }
  }
}
