import { performance } from 'node:perf_hooks';
import { asError, LeaseLostError } from '../errors.js';
import { localDeadline } from './deadline.js';
import type { RecordAddress } from './keys.js';
import { type Grant, type HeartbeatPlace, heartbeat, type RedisConnection } from './scripts.js';

export interface LeaseKeeperOptions {
  leaseMs: number;
  heartbeatMs: number;
  retentionMs: number;
  /**
   * Heartbeat this record and watch its lease here. False when the process's `Session`
   * leases every record at once: the record is then only refreshed every retention / 3.
   */
  perRecord: boolean;
  /** The lock store's epoch key ('' none): a heartbeat stamps the epoch it lands in. */
  epochKey: string;
  /** A Cluster lock store (see `HeartbeatPlace`). */
  sharded: boolean;
}

/**
 * Keeps an executor's lease alive while its routine runs, and aborts `signal` the moment
 * the lease is lost: either a heartbeat is refused (someone holds a higher fence), or no
 * heartbeat got through before the lease ran out on this process's monotonic clock. The
 * local deadline is computed from when the last successful heartbeat was *sent*, less a
 * margin (`LEASE_MARGIN`), so it falls before Redis' own deadline even when this process's
 * event loop runs late: the abort precedes any lease-expiry takeover.
 */
export class LeaseKeeper {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  /** The epoch key a heartbeat stamps (changes when a resharding moves the record). */
  private epochKey: string;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** When this record's own lease may end on our clock (per-record leases only). */
  private deadlineAt = Number.POSITIVE_INFINITY;

  constructor(
    private readonly client: RedisConnection,
    readonly address: RecordAddress,
    private readonly grant: Grant,
    private readonly options: LeaseKeeperOptions,
    grantedAt: number,
    private readonly onError: (err: Error) => void,
  ) {
    this.epochKey = options.epochKey;
    if (options.perRecord) this.armDeadline(grantedAt);
    // Under a session the record needs no lease of its own, but a rare heartbeat still keeps
    // it within retention and notices a takeover or a lost record before the routine ends.
    const every = options.perRecord ? options.heartbeatMs : Math.floor(options.retentionMs / 3);
    this.timer = setInterval(() => {
      if (!this.stopped) void this.beat();
    }, every);
  }

  /**
   * A resharding moved the record's slot to another master (Cluster): re-stamps the record with
   * this process's keys there (heartbeat-2.lua), so twins judge its owner on the record's new
   * node; until then they give it one lease (includes/owner.lua). True once the lock store
   * took it; false (reported or refused) means the caller should try again.
   */
  async restamp(place: HeartbeatPlace): Promise<boolean> {
    if (this.stopped) return false;
    const ok = await this.beat(place);
    // Later beats stamp the epoch of the record's new master.
    if (ok && place.epochKey !== undefined) this.epochKey = place.epochKey;
    return ok;
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
    this.deadlineAt = localDeadline(sentAt, this.options.leaseMs, this.options.heartbeatMs);
    const left = this.deadlineAt - performance.now();
    this.deadlineTimer = setTimeout(() => this.lose('expired'), Math.max(0, left));
  }

  /**
   * Throws the lease loss now if the lease may be over on this process's clock, before the
   * deadline timer has had its turn: after a freeze (SIGSTOP, a long GC, a blocked loop)
   * timers that were due run in any order, so a side effect scheduled before the deadline
   * could otherwise run after the twin took over. `sessionDeadline`: the process session's.
   */
  assert(sessionDeadline = Number.POSITIVE_INFINITY): void {
    if (!this.controller.signal.aborted) {
      if (performance.now() >= Math.min(this.deadlineAt, sessionDeadline)) this.lose('expired');
    }
    const reason: unknown = this.controller.signal.reason;
    if (reason instanceof LeaseLostError) throw reason;
  }

  /** The process's session lease was lost: stop as if this record's lease ran out. */
  expire(): void {
    if (!this.stopped) this.lose('expired');
  }

  /** One ownership check now (e.g. after a reconnect that may have let a shadow take over). */
  check(): void {
    if (!this.stopped) void this.beat();
  }

  private lose(reason: 'expired' | 'superseded' | 'missing', currentFence?: number): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.deadlineTimer);
    this.abort(new LeaseLostError(this.address.id, this.grant.fence, reason, currentFence));
  }

  /**
   * One heartbeat; true when the lock store took it. `place`: the owner's keys on the record's
   * new master, after a resharding.
   */
  private async beat(place?: HeartbeatPlace): Promise<boolean> {
    const sentAt = performance.now();
    try {
      const reply = await heartbeat(
        this.client,
        this.address,
        this.grant,
        this.options.leaseMs,
        this.options.retentionMs,
        place ?? { epochKey: this.epochKey, sharded: this.options.sharded },
      );
      if (this.stopped) return false;
      if (reply.kind === 'ok') {
        if (this.options.perRecord) this.armDeadline(sentAt);
        return true;
      }
      if (reply.kind === 'stale') this.lose('superseded', reply.fence);
      else this.lose('missing');
    } catch (err) {
      // Unreachable lock store: keep trying; the deadline timer aborts if it never returns.
      this.onError(asError(err));
    }
    return false;
  }
}
