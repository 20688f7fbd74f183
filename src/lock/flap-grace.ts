import { performance } from 'node:perf_hooks';

/** How long after this process's last connection reset its grace stays raised (ms). */
export const FLAP_WINDOW_MS = 60_000;
/** The least a raised grace is (ms): a reconnect whose own attempt is reset takes seconds. */
const FLAP_GRACE_MIN_MS = 2_000;

/**
 * This process's liveness grace while its lock-store connections are being reset. A process
 * is taken for dead when every connection holding its liveness channels is gone for longer
 * than its grace (3 round trips + 50 ms, enough for one reconnect). In a burst of resets a
 * reconnect is itself reset, and the next attempt waits ioredis' growing retry delay: a live
 * process stays away for seconds. So after a reset, for `FLAP_WINDOW_MS` after the last one,
 * the process asks its twins for more: at least 2 s, 4 times its usual grace, at most a
 * quarter of the lease. It says so through its session key's value, which a twin reads only
 * when it finds the process's channels empty (includes/owner.lua). The price: a process that
 * dies within a minute of a reset is taken over after the raised grace, not the usual one.
 */
export class FlapGrace {
  private raisedUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private raised = 0;

  constructor(
    /** The process's usual grace (ms), from its round trip to the lock store. */
    private readonly usualMs: () => number,
    private readonly leaseMs: number,
    /** Tells the twins the grace now in force: a raised one (ms), or undefined (the usual). */
    private readonly apply: (raisedMs: number | undefined) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The grace in force beyond the usual one: the raised grace (ms) while raised, else 0. */
  get currentMs(): number {
    return this.now() < this.raisedUntil ? this.raised : 0;
  }

  /** One of this process's lock-store connections was reset (it reconnects by itself). */
  reset(): void {
    const raised = Math.ceil(
      Math.min(this.leaseMs / 4, Math.max(FLAP_GRACE_MIN_MS, 4 * this.usualMs())),
    );
    const wasRaised = this.currentMs > 0;
    this.raisedUntil = this.now() + FLAP_WINDOW_MS;
    if (!wasRaised || raised !== this.raised) {
      this.raised = raised;
      this.apply(raised);
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.lower(), FLAP_WINDOW_MS);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private lower(): void {
    this.timer = undefined;
    if (this.currentMs > 0) return;
    this.raised = 0;
    this.apply(undefined);
  }
}
