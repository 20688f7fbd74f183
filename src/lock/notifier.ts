import { performance } from 'node:perf_hooks';
import type { Cluster, Redis } from 'ioredis';
import { asError, ClosedError, LivenessSubscriberError } from '../errors.js';
import { BackupLiveness } from './backup-liveness.js';
import { CLOSE_TIMEOUT_MS, TIMED_OUT, within } from './bounded.js';
import { addressTag, backupLivenessChannel } from './keys.js';
import { ownersAlive } from './owners.js';
import { RecentSettles } from './recent-settles.js';
import { readStoredRecord } from './record.js';
import type { RedisConnection } from './scripts.js';
import { parseSettled, type SettledDone } from './settle-message.js';
import { shardedHealth } from './sharded-health.js';
import { subscriberOptions } from './subscriber-options.js';
import { type Owner, Ticket } from './ticket.js';

/**
 * How often the subscriber's health is checked (well below any lease), and how long its PING
 * (and the lock store's count of our liveness channel's subscribers) may take to answer.
 */
const HEALTH_INTERVAL_MS = 1_000;

/** Round-trip samples kept for `distanceMs` (one per health check: the last 10 s). */
const RTT_SAMPLES = 10;
const HEALTH_TIMEOUT_MS = 1_500;

/** Whether a raw pair record has settled (done, failed, released): what a settle message says. */
function settledRaw(raw: string | null): boolean {
  const state = raw === null ? undefined : readStoredRecord(raw)?.state;
  return state !== undefined && state !== 'running' && state !== 'waiting';
}

/**
 * Wakes waiting shadows. One subscriber connection per lock instance does two jobs:
 * it receives settle notifications, and its own subscription to this process's liveness
 * channel is what tells other members that this process is alive. A watcher asks Redis,
 * for all the executors being shadowed at once, how many subscribers their channels have
 * (one PUBSUB NUMSUB) and whether their session keys still exist (one MGET), and wakes the
 * shadows of an executor that is gone or whose lease ran out. Its cost grows with the
 * number of executor *processes*, not with the number of jobs shadowed.
 */
export class Notifier {
  private readonly tickets = new Map<string, Set<Ticket>>();
  /**
   * Called when a connection holding this process's liveness (the subscriber, the backup)
   * closes after it was up: set by the core, which raises its grace for a while (`FlapGrace`).
   */
  onConnectionReset: () => void = () => {};
  /** Pairs heard settle `done` lately: a ticket made for one starts with its outcome. */
  readonly recent: RecentSettles;
  private readonly subscriber: Redis;
  /** One Redis with liveness: the second connection holding this process's liveness. */
  private readonly backup: BackupLiveness | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private watching = false;
  /**
   * Set while the subscriber is reconnecting or unhealthy: this process's liveness channel
   * is (or may be) empty and settle messages do not arrive.
   */
  private away: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Rejects if the client gives up on a command while the subscriber is away. */
  private gaveUp: Promise<never> | undefined;
  /** Set once the subscriber has ended for good while we were not closing: no grant ever again. */
  private lost: LivenessSubscriberError | undefined;
  /** The subscriber's connection ended while we were not closing (lost, with a liveness channel). */
  private ended = false;
  private closing = false;
  /** Grows at each close of the subscriber's connection: a check that spans one proves nothing. */
  private generation = 0;
  private healthTimer: NodeJS.Timeout | undefined;
  private checkingHealth = false;
  /** While away, reads the waiters' records every poll interval, since settle messages are lost. */
  private awayTimer: NodeJS.Timeout | undefined;
  private polling = false;
  /**
   * Round trip to the lock store, ms: the largest recent sample (subscribe at start, each
   * health PING), decaying by a tenth per sample so a past spike fades.
   */
  rttMs = 0;
  /** The last round-trip samples, ms: their minimum is the distance to the store. */
  private readonly rttSamples: number[] = [];
  /**
   * The subscriber's last connection error since it was last ready (e.g. ECONNREFUSED): it
   * reaches the same server as the lock connection, so it says why that one gets no answer.
   */
  lastError: Error | undefined;

  constructor(
    private readonly client: RedisConnection,
    private readonly settleChannel: string,
    private readonly liveChannel: string | undefined,
    private readonly livenessIntervalMs: number,
    private readonly onError: (err: Error) => void,
    onReconnect: () => void,
    private readonly pollIntervalMs = 1_000,
    /** The subscriber ended for good: this process's runs will be taken over. */
    private readonly onLost: () => void = () => {},
    /** How long the store keeps records: bounds how long a heard result is remembered. */
    retentionMs?: number,
  ) {
    this.recent = new RecentSettles(retentionMs);
    // A Cluster's duplicate() is a Cluster; subscribing works the same on both. Its sharded
    // channels (the liveness channels, one per master) get a subscriber per master, which
    // ioredis moves to the new master after a failover.
    this.subscriber = (
      client.isCluster
        ? (client as Cluster).duplicate([], { shardedSubscribers: true })
        : (client as Redis).duplicate(subscriberOptions(client as Redis))
    ) as Redis;
    this.subscriber.on('error', (err: Error) => {
      this.lastError = err;
      onError(err);
    });
    const backupChannel =
      liveChannel === undefined || client.isCluster
        ? undefined
        : backupLivenessChannel(liveChannel);
    this.backup =
      backupChannel === undefined
        ? undefined
        : new BackupLiveness(client as Redis, backupChannel, () => this.onConnectionReset());
    let readies = 0;
    this.subscriber.on('close', () => {
      this.generation++;
      if (readies > 0) {
        this.goAway('its connection closed; reconnecting');
        if (!this.closing) this.onConnectionReset();
      }
    });
    // Closed for good (reconnects off or given up): unless we are closing, this process's
    // liveness channel stays empty, so it must never take a grant again.
    this.subscriber.on('end', () => (this.closing ? this.back() : this.lose()));
    this.subscriber.on('ready', () => {
      this.lastError = undefined;
      if (++readies === 1) return;
      // Our own SUBSCRIBE (ioredis's automatic one is off: see subscriberOptions); back only
      // once it is answered. If the connection drops again first, the next 'ready' tries
      // again; if it hangs (half-open again) or is refused on a live connection (an ACL
      // changed meanwhile), the connection is dropped and made anew, so it is tried again.
      const generation = this.generation;
      const retry = (): void => {
        if (generation === this.generation && !this.closing) this.subscriber.disconnect(true);
      };
      const hung = setTimeout(retry, HEALTH_TIMEOUT_MS);
      this.subscriber.subscribe(...this.channels()).then(
        () => {
          clearTimeout(hung);
          this.back();
          // Settle messages published while we were disconnected are lost: look again now.
          this.wakeAll();
          onReconnect();
        },
        (err: unknown) => {
          // Refused on a live connection: the timer above drops it and tries again (not at
          // once: a refusal that lasts must not become a reconnect loop).
          this.lastError = asError(err);
        },
      );
    });
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.settleChannel) return;
      const { tag, done } = parseSettled(message);
      this.recent.heard(tag, done);
      this.wakeTag(tag, done);
    });
    if (client.isCluster) {
      // A sharded subscriber (one per master) that ended is made anew by ioredis after a
      // slot refresh ('-node', then '+subscriber'): our liveness channel on that master was
      // empty meanwhile, so a twin may have taken a run over. Check the runs, as after a
      // reconnect of the subscriber on one Redis.
      let lostOne = false;
      this.subscriber.on('-node', () => {
        lostOne = this.sharded.size > 0;
      });
      this.subscriber.on('+subscriber', () => {
        if (!lostOne || this.closing) return;
        lostOne = false;
        this.wakeAll();
        onReconnect();
      });
    }
  }

  private channels(): string[] {
    return this.liveChannel === undefined
      ? [this.settleChannel]
      : [this.settleChannel, this.liveChannel];
  }

  /**
   * Told when this process stops taking grants because its subscriber is away (`reason`)
   * and when it is back (`reason` undefined): the lock's `subscriberAway` / `subscriberBack`
   * events, which tests and operators wait on.
   */
  readonly awayListeners = new Set<(reason: string | undefined) => void>();

  private tellAway(reason: string | undefined): void {
    for (const listener of this.awayListeners) listener(reason);
  }

  private goAway(reason: string): void {
    this.recent.deaf();
    if (this.away !== undefined) return;
    this.tellAway(reason);
    let resolve = (): void => {};
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.away = { promise, resolve };
    this.pollRecords();
  }

  private pollRecords(): void {
    if (this.awayTimer !== undefined) return;
    this.awayTimer = setInterval(() => void this.pollWhileAway(), this.pollIntervalMs);
    this.awayTimer.unref();
  }

  private back(): void {
    if (this.ended) return;
    this.recent.listening();
    if (this.away !== undefined) this.tellAway(undefined);
    this.away?.resolve();
    this.away = undefined;
    this.gaveUp = undefined;
    clearInterval(this.awayTimer);
    this.awayTimer = undefined;
  }

  private lose(): void {
    if (this.ended) return;
    this.ended = true;
    this.recent.deaf();
    clearInterval(this.healthTimer);
    this.healthTimer = undefined;
    this.pollRecords(); // settle messages no longer arrive
    const why =
      'its connection closed and will not reconnect (reconnects are off or were given up)';
    if (this.liveChannel === undefined && this.sharded.size === 0) {
      // No liveness channel (liveness off): grants do not depend on it.
      this.onError(
        new Error(
          `bullmq-paired: the lock-store subscriber ended for good (${why}): settle messages no longer arrive, so waiting shadows learn results by polling`,
        ),
      );
      this.away?.resolve();
      this.away = undefined;
      return;
    }
    this.lost = new LivenessSubscriberError('ended', why);
    this.onError(this.lost);
    // Its runs are handed over: the process must look gone on both connections.
    void this.backup?.close();
    this.tellAway(`${why}: for good`);
    this.away?.resolve(); // waiters wake and find `lost`
    this.onLost();
  }

  /** Subscribed and well: our liveness channel is held and settle messages arrive. */
  get healthy(): boolean {
    return this.away === undefined && this.lost === undefined;
  }

  /**
   * Subscribes one of this process's sharded liveness channels (a Cluster: one per master),
   * before any grant names it. ioredis keeps it subscribed across failovers and reshardings.
   */
  async ssubscribe(channel: string): Promise<void> {
    await this.subscriber.ssubscribe(channel);
    this.sharded.add(channel);
  }

  /** The sharded liveness channels subscribed (a Cluster), see `ssubscribe`. */
  private readonly sharded = new Set<string>();

  /** Subscribes before any acquire, so neither a notification nor our liveness is missed. */
  async start(): Promise<void> {
    await Promise.all([this.subscriber.subscribe(...this.channels()), this.backup?.start()]);
    this.recent.listening();
    // The first round trip sample, before any grant (the health PINGs follow every second).
    const sent = performance.now();
    await this.subscriber.ping();
    this.sampleRtt(performance.now() - sent);
    if (this.healthTimer === undefined && !this.ended) {
      // A Cluster subscriber's connection is not the one a PING would reach: each sharded
      // connection is looked at on its own (`checkShardedHealth`).
      const check = this.client.isCluster
        ? () => void this.checkShardedHealth()
        : () => void this.checkHealth();
      this.healthTimer = setInterval(check, HEALTH_INTERVAL_MS);
      this.healthTimer.unref();
    }
  }

  /** A sharded connection's problem was reported and has not cleared yet. */
  private shardedReported = false;
  /** Set while this process is away because of that problem (it set the absence). */
  private shardedAway = false;
  /** The subscriber's connection generation when that absence began. */
  private shardedAwayGeneration = 0;
  /** The problem the last sharded health check found: acted on when the next one finds it too. */
  private shardedSuspect: string | undefined;

  /**
   * A Cluster's sharded liveness connections, one per master (`shardedHealth`): the same two
   * looks as one Redis's subscriber gets. A connection that does not answer its PING, or a
   * channel its master lists no subscriber on twice in a row (not the moment a failover moves
   * a subscriber), is reported and marks this process away (no grants); a dropped
   * subscription is subscribed again. The first healthy check after that ends the absence.
   */
  private checkShardedHealth(): Promise<void> {
    if (this.checkingHealth || this.ended || this.closing || this.sharded.size === 0) {
      return Promise.resolve();
    }
    this.checkingHealth = true;
    this.shardedCheck = this.lookAtShards().finally(() => {
      this.checkingHealth = false;
      this.shardedCheck = undefined;
    });
    return this.shardedCheck;
  }

  /** The sharded health check in flight: `close()` waits for it (its timers end with it). */
  private shardedCheck: Promise<void> | undefined;

  private async lookAtShards(): Promise<void> {
    const found = await shardedHealth(
      this.client as Cluster,
      this.subscriber as unknown as Cluster,
      [...this.sharded],
      HEALTH_TIMEOUT_MS,
    );
    if (!found.answered || this.ended || this.closing) return;
    if (found.problem === undefined) {
      this.shardedSuspect = undefined;
      if (this.shardedReported) {
        this.shardedReported = false;
        // Not if the subscriber closed meanwhile: its 'ready' path ends that absence.
        if (this.shardedAway && this.shardedAwayGeneration === this.generation) this.back();
        this.shardedAway = false;
      }
      return;
    }
    const seenBefore = this.shardedSuspect === found.problem;
    this.shardedSuspect = found.problem;
    if (found.kind === 'count' && !seenBefore) return;
    if (!this.shardedReported) {
      this.shardedReported = true;
      this.onError(new LivenessSubscriberError('unhealthy', found.problem));
      // Away for another reason already (reconnecting): that path ends the absence.
      if (this.away === undefined) {
        this.goAway(found.problem);
        this.shardedAway = true;
        this.shardedAwayGeneration = this.generation;
      }
    }
    await found.heal?.().catch((err: unknown) => this.onError(asError(err)));
  }

  /**
   * A subscriber can be gone while its socket looks open to us (a NAT or load balancer dropped
   * it silently): Redis no longer lists it, so the twin takes this process for dead, and
   * settle messages never arrive. Two checks, at once: a PING on the subscriber (no answer in
   * time: half-open, or the server stalls), and, from the server's side, the subscriber count
   * of our liveness channel (0 although we are subscribed: Redis has dropped us). Either one
   * marks us away (no grants), reports it, and makes the connection anew.
   */
  private async checkHealth(): Promise<void> {
    if (this.checkingHealth || this.away !== undefined || this.ended || this.closing) return;
    this.checkingHealth = true;
    const generation = this.generation;
    try {
      // Both answers are needed: a PING that times out while the main connection cannot get
      // an answer either says the lock store is slow or away, not that the subscriber is bad;
      // forcing a reconnect then would only empty our liveness channel (a takeover).
      const [ping, numsub] = await Promise.all([this.pingProblem(), this.numsubProblem()]);
      const problem = numsub.problem ?? (numsub.answered ? ping : undefined);
      // A close meanwhile is the 'close' path's business: away already, reconnecting.
      if (
        problem === undefined ||
        generation !== this.generation ||
        this.away !== undefined ||
        this.ended ||
        this.closing
      ) {
        return;
      }
      this.onError(new LivenessSubscriberError('unhealthy', problem));
      this.goAway(problem);
      this.subscriber.disconnect(true); // reconnects; the 'ready' path ends the absence
    } finally {
      this.checkingHealth = false;
    }
  }

  private sampleRtt(ms: number): void {
    this.rttMs = Math.max(ms, this.rttMs * 0.9);
    this.rttSamples.push(ms);
    if (this.rttSamples.length > RTT_SAMPLES) this.rttSamples.shift();
  }

  /**
   * The least of the last round trips, ms (0 until measured): how far the lock store is. A
   * busy event loop inflates every sample it delays (on loopback, 0.3 ms idle and 100–146 ms
   * in a burst of jobs), so this, not the peak `rttMs`, says whether the store is near.
   */
  get distanceMs(): number {
    return this.rttSamples.length === 0 ? 0 : Math.min(...this.rttSamples);
  }

  private async pingProblem(): Promise<string | undefined> {
    try {
      const sent = performance.now();
      const reply = await within(this.subscriber.ping(), HEALTH_TIMEOUT_MS);
      if (reply === TIMED_OUT) return `its PING got no answer within ${HEALTH_TIMEOUT_MS} ms`;
      this.sampleRtt(performance.now() - sent);
      return undefined;
    } catch (err) {
      return `its PING failed (${asError(err).message})`;
    }
  }

  /** Whether the lock store answered our liveness channel's count in time, and what it says. */
  private async numsubProblem(): Promise<{ answered: boolean; problem?: string }> {
    if (this.liveChannel === undefined) return { answered: true };
    try {
      const channels = [this.liveChannel, ...(this.backup ? [this.backup.channel] : [])];
      const reply = await within(
        this.client.call('PUBSUB', 'NUMSUB', ...channels) as Promise<(string | number)[]>,
        HEALTH_TIMEOUT_MS,
      );
      if (reply === TIMED_OUT) return { answered: false };
      if (reply.length > 3) this.backup?.recheck(Number(reply[3]));
      if (Number(reply[1]) !== 0) return { answered: true };
      return {
        answered: true,
        problem: `the lock store lists no subscriber on this process's liveness channel ${this.liveChannel}`,
      };
    } catch {
      return { answered: false }; // the lock store is unreachable: not the subscriber's problem
    }
  }

  /**
   * Settle messages do not arrive while the subscriber is away: read the records the waiters
   * wait for instead, and wake those that settled, as their message would have.
   */
  private async pollWhileAway(): Promise<void> {
    if (this.polling || this.closing) return;
    this.polling = true;
    try {
      await Promise.all(
        [...this.tickets.keys()].map(async (tag) => {
          const [key, field] = JSON.parse(tag) as [string, string];
          const raw =
            field === '' ? await this.client.get(key) : await this.client.hget(key, field);
          if (settledRaw(raw)) this.wakeTag(tag);
        }),
      );
    } catch {
      // The lock store is unreachable: the waiters' own timers keep polling.
    } finally {
      this.polling = false;
    }
  }

  /**
   * Resolves (undefined) once the subscriber is back, if it is away. While it is away this
   * process's liveness channel is empty, so a grant taken now would look to the twin like
   * a dead owner's and be taken over after the grace: a duplicate. That happens after a
   * lock-store restart, where the client and the subscriber reconnect on their own
   * back-offs and the client often comes first, and when the subscriber is half-open.
   * Rejects if the client gives up on a command meanwhile (its `maxRetriesPerRequest`), so a
   * caller fails as fast as before, and with `LivenessSubscriberError` once the subscriber
   * has ended for good. Meanwhile `peek` is asked every poll interval (and first): what it
   * finds (e.g. a settled record: no grant needed) is returned at once.
   */
  async live<T>(peek?: () => Promise<T | undefined>): Promise<T | undefined> {
    for (;;) {
      if (this.lost === undefined && this.away === undefined) return undefined;
      // An acquire given up on (lockStoreTimeoutMs) may still wait here: not past a close.
      if (this.closing) throw new ClosedError("the lock store's subscriber");
      const found = await peek?.();
      if (found !== undefined) return found;
      if (this.lost !== undefined) throw this.lost;
      const away = this.away;
      if (away === undefined) return undefined;
      // One probe per absence, shared by every caller: a ping that never settles unless the
      // client gives up on it.
      this.gaveUp ??= this.client.ping().then(
        () => new Promise<never>(() => {}),
        (err: unknown) => {
          this.gaveUp = undefined; // the next caller asks again
          throw err;
        },
      );
      let timer: NodeJS.Timeout | undefined;
      const poll = new Promise<void>((resolve) => {
        if (peek !== undefined) timer = setTimeout(resolve, this.pollIntervalMs);
      });
      try {
        await Promise.race([away.promise, this.gaveUp, poll]);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Registers interest in the record at `key`/`field`; close() the ticket when done. */
  ticket(key: string, field: string): Ticket {
    const ticket = new Ticket(addressTag(key, field), this);
    // Settled before anyone here asked: the outcome its message carried stands for the record.
    ticket.done = this.recent.recall(ticket.tag);
    let set = this.tickets.get(ticket.tag);
    if (set === undefined) {
      set = new Set();
      this.tickets.set(ticket.tag, set);
    }
    set.add(ticket);
    return ticket;
  }

  forget(ticket: Ticket): void {
    const set = this.tickets.get(ticket.tag);
    set?.delete(ticket);
    if (set?.size === 0) this.tickets.delete(ticket.tag);
  }

  private wakeTag(tag: string, done?: SettledDone): void {
    for (const ticket of this.tickets.get(tag) ?? []) ticket.wake('settled', done);
  }

  watchLiveness(): void {
    if (this.watchTimer !== undefined || this.livenessIntervalMs <= 0) return;
    this.watchTimer = setInterval(() => void this.checkLiveness(), this.livenessIntervalMs);
  }

  private async checkLiveness(): Promise<void> {
    if (this.watching) return; // a slow reply must not pile up checks
    // One entry per owner (channel and session key), with the tickets waiting for it.
    const byOwner = new Map<string, { owner: Owner; tickets: Ticket[] }>();
    for (const set of this.tickets.values()) {
      for (const ticket of set) {
        const { owner } = ticket;
        if (owner.channel === '' && owner.sessionKey === '') continue;
        // A channel and a session key name one process on one master: either identifies it.
        const id = owner.channel || owner.sessionKey;
        const entry = byOwner.get(id) ?? { owner, tickets: [] };
        entry.tickets.push(ticket);
        byOwner.set(id, entry);
      }
    }
    if (byOwner.size === 0) {
      clearInterval(this.watchTimer);
      this.watchTimer = undefined;
      return;
    }
    this.watching = true;
    try {
      const entries = [...byOwner.values()];
      const signs = await ownersAlive(
        this.client,
        this.client.isCluster,
        entries.map((e) => e.owner),
      );
      // The acquire script re-checks atomically (and applies the grace period) on each wake.
      entries.forEach((entry, i) => {
        const sign = signs[i];
        const gone = sign?.subscribers === 0 || sign?.sessionLeftMs === -2;
        if (gone) for (const ticket of entry.tickets) ticket.wake('gone');
      });
    } catch {
      // The lock store is unreachable: the waiters' own timers keep polling.
    } finally {
      this.watching = false;
    }
  }

  wakeAll(): void {
    for (const set of this.tickets.values()) for (const ticket of set) ticket.wake('recheck');
  }

  async close(): Promise<void> {
    this.closing = true;
    const backupClosed = this.backup?.close();
    this.away?.resolve(); // waiters in live() wake and see the close
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    clearInterval(this.healthTimer);
    this.healthTimer = undefined;
    clearInterval(this.awayTimer);
    this.awayTimer = undefined;
    this.wakeAll();
    // Bounded by its own timeouts (a PING and a count, 1.5 s each).
    await this.shardedCheck?.catch(() => {});
    // QUIT only a ready connection, and not for long: on one that is reconnecting (or never
    // connected) QUIT would queue behind our SUBSCRIBE in ioredis' offline queue, forever
    // under maxRetriesPerRequest: null, and close() with it.
    await Promise.all([this.closeSubscriber(), backupClosed]);
  }

  private async closeSubscriber(): Promise<void> {
    if (this.subscriber.status === 'ready') {
      try {
        if ((await within(this.subscriber.quit(), CLOSE_TIMEOUT_MS)) !== TIMED_OUT) return;
      } catch {
        // fall through
      }
    }
    this.subscriber.disconnect();
  }
}
