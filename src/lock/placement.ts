import type { Cluster, Redis } from 'ioredis';
import { ClosedError } from '../errors.js';
import { TIMED_OUT, within } from './bounded.js';
import { epochKey, livenessChannel, sessionKey } from './keys.js';
import type { RedisConnection } from './scripts.js';
import { type ProcessSession, Session } from './session.js';
import { ShardMap } from './shards.js';
import { ThreadSession } from './thread-session.js';

/**
 * After the lock store restarts, every subscriber reconnects on its own schedule (ioredis'
 * default back-off reaches 2 s), so empty liveness channels prove nothing for a while.
 */
export const LIVENESS_WARMUP_S = 10;

/** This process's session key, liveness channel and epoch key next to one record. */
export interface Place {
  /** The master's hash tag on a Cluster, '' on one Redis. */
  readonly tag: string;
  /** '' when sessions are off (liveness off). */
  readonly sessionKey: string;
  /** '' when liveness is off. */
  readonly liveChannel: string;
  /** '' when there is none. */
  readonly epochKey: string;
  readonly session: ProcessSession | undefined;
  /** True on a Cluster: the channel is sharded and the keys are read undeclared. */
  readonly sharded: boolean;
}

export interface PlacementHooks {
  /** A session key ran out or vanished: stop the runs under it. */
  onSessionLost(key: string): void;
  report(err: Error): void;
  /** Subscribes a sharded liveness channel (Cluster) before any grant names it. */
  ssubscribe(channel: string): Promise<void>;
  /** The slot map was read again (Cluster): runs whose record moved are re-stamped. */
  onRefreshed(): void;
}

export interface PlacementTiming {
  leaseMs: number;
  heartbeatMs: number;
  /** The session key's time to live under a keeper thread (one Redis); 0: kept from the main thread. */
  sessionTtlMs: number;
  /** Longest a place may take to be made (subscribe, first session write). */
  lockStoreTimeoutMs: number;
}

/**
 * Where this process's liveness lives. On one Redis: one session key and one liveness
 * channel for the process. On a Cluster: one of each per master, made (session started,
 * channel subscribed) before the first grant on that master (see src/lock/shards.ts). With
 * liveness off there are none, and records keep leases of their own.
 */
export class Placement {
  private readonly shards: ShardMap | undefined;
  private readonly places = new Map<string, Promise<Place>>();
  private readonly ready = new Map<string, Place>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** This process's liveness channel on one Redis (undefined on a Cluster or liveness off). */
  readonly singleChannel: string | undefined;

  constructor(
    private readonly client: RedisConnection,
    private readonly prefix: string,
    private readonly instanceId: string,
    private readonly liveness: boolean,
    private readonly timing: PlacementTiming,
    private readonly hooks: PlacementHooks,
  ) {
    this.shards = client.isCluster ? new ShardMap(client as Cluster) : undefined;
    this.singleChannel =
      liveness && !client.isCluster ? livenessChannel(prefix, instanceId) : undefined;
  }

  get sharded(): boolean {
    return this.shards !== undefined;
  }

  /** The tag of the master serving `key` now ('' on one Redis). */
  tagOf(key: string): string {
    return this.shards?.tagOf(key) ?? '';
  }

  /** Makes the places of every master known now (one place on one Redis). */
  async start(): Promise<void> {
    if (this.stopped) throw new ClosedError('PairedLock');
    if (this.shards !== undefined && this.liveness && this.refreshTimer === undefined) {
      // ioredis learns of a resharding only from a MOVED reply, and a running record's slot
      // may see no command of ours for hours: read the slot map every heartbeat (at most a
      // third of the lease), and re-stamp the runs whose record moved right after, well
      // within the one lease a twin gives such an owner.
      const cluster = this.client as Cluster;
      const every = Math.min(this.timing.heartbeatMs, Math.floor(this.timing.leaseMs / 3));
      this.refreshTimer = setInterval(
        () => cluster.refreshSlotsCache(() => this.hooks.onRefreshed()),
        every,
      );
      this.refreshTimer.unref();
    }
    const tags = this.shards?.masterTags() ?? [''];
    await Promise.all(tags.map((tag) => this.place(tag)));
  }

  /** The place next to `key` (made first if new: a master this process has not used yet). */
  near(key: string): Promise<Place> {
    return this.place(this.tagOf(key));
  }

  /** The place next to `key` if it is made already. */
  nearNow(key: string): Place | undefined {
    return this.ready.get(this.tagOf(key));
  }

  private place(tag: string): Promise<Place> {
    if (this.stopped) return Promise.reject(new ClosedError('PairedLock'));
    let place = this.places.get(tag);
    if (place === undefined) {
      place = this.bounded(tag);
      this.places.set(tag, place);
      // A failed start is tried again by the next caller.
      place.then(
        (made) => this.ready.set(tag, made),
        () => this.places.delete(tag),
      );
    }
    return place;
  }

  /**
   * `make`, within lockStoreTimeoutMs (a master that does not answer must not block its tag
   * for good: the next caller tries again). A place that comes too late, or after stop(),
   * has its session stopped: nothing refreshes a key nobody names.
   */
  private async bounded(tag: string): Promise<Place> {
    const making = this.make(tag);
    const made = await within(making, this.timing.lockStoreTimeoutMs);
    if (made === TIMED_OUT || this.stopped) {
      void making.then(
        (late) => late.session?.stop(),
        () => {},
      );
      if (this.stopped) throw new ClosedError('PairedLock');
      throw new Error(
        `this process's liveness on the lock store's master of {${tag}} was not ready within ${this.timing.lockStoreTimeoutMs} ms`,
      );
    }
    return made;
  }

  private async make(tag: string): Promise<Place> {
    const sharded = this.sharded;
    const epoch = epochKey(this.prefix, tag);
    if (!this.liveness) {
      return { tag, sessionKey: '', liveChannel: '', epochKey: epoch, session: undefined, sharded };
    }
    const key = sessionKey(this.prefix, this.instanceId, tag);
    const channel = this.singleChannel ?? livenessChannel(this.prefix, this.instanceId, tag);
    const onLost = (): void => this.hooks.onSessionLost(key);
    const report = (err: Error): void => this.hooks.report(err);
    // On one Redis a thread keeps a short-lived key (a cut-off process is taken over within
    // seconds, a busy one is not); a Cluster's keys, one per master, are kept from here.
    const session: ProcessSession =
      sharded || this.timing.sessionTtlMs === 0
        ? new Session(
            this.client,
            key,
            this.timing.leaseMs,
            this.timing.heartbeatMs,
            onLost,
            report,
          )
        : new ThreadSession(
            this.client as Redis,
            key,
            {
              ttlMs: this.timing.sessionTtlMs,
              leaseMs: this.timing.leaseMs,
              heartbeatMs: this.timing.heartbeatMs,
            },
            onLost,
            report,
          );
    // The channel first: a session key without its channel would look like a dead owner's.
    if (sharded) await this.hooks.ssubscribe(channel);
    await session.start();
    return { tag, sessionKey: key, liveChannel: channel, epochKey: epoch, session, sharded };
  }

  /** Every session made so far. */
  sessions(): ProcessSession[] {
    return [...this.ready.values()].flatMap((p) => (p.session ? [p.session] : []));
  }

  /** Stops every session, those still being made included (after they are). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
    await Promise.allSettled(this.places.values());
    await Promise.all(this.sessions().map((s) => s.stop()));
  }
}
