import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { addressTag } from './keys.js';
import type { RedisConnection } from './scripts.js';

/**
 * One shadow's interest in one record. It is registered *before* the acquire that may
 * answer "busy", because the settle message travels on another connection and can arrive
 * before that reply: a message that lands in between is remembered, not lost.
 */
/** How to tell whether the executor being shadowed is alive ('' fields: unknown). */
export interface Owner {
  /** Its process's liveness channel: no subscriber means the process is gone. */
  channel: string;
  /** Its process's session key: gone means its lease ran out (frozen or cut off). */
  sessionKey: string;
}

export const NO_OWNER: Owner = { channel: '', sessionKey: '' };

/**
 * Why a ticket woke: the record settled (its settle message), its owner looks gone (empty
 * liveness channel or session), or anything may have changed (the subscriber reconnected).
 */
export type WakeReason = 'settled' | 'gone' | 'recheck';

export class Ticket {
  owner: Owner = NO_OWNER;
  private pending: WakeReason | undefined;
  private listener: ((reason: WakeReason) => void) | undefined;

  constructor(
    readonly tag: string,
    private readonly notifier: Notifier,
  ) {}

  wake(reason: WakeReason): void {
    const listener = this.listener;
    this.listener = undefined;
    if (listener) listener(reason);
    else this.pending = reason;
  }

  /**
   * Calls `listener` once, at the next settle message or sign of a dead executor, or at
   * once if one arrived since the ticket was made or last woke.
   */
  onNextWake(owner: Owner, listener: (reason: WakeReason) => void): void {
    this.owner = owner;
    const pending = this.pending;
    if (pending !== undefined) {
      this.pending = undefined;
      listener(pending);
      return;
    }
    this.listener = listener;
    if (owner.channel !== '' || owner.sessionKey !== '') this.notifier.watchLiveness();
  }

  /** Whether the last `wait` ended by a wake-up rather than by its timeout. */
  woke = false;

  /** Resolves at the next wake or after `timeoutMs`; rejects when `signal` aborts. */
  wait(owner: Owner, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    this.woke = false;
    return new Promise<void>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.listener = undefined;
      };
      const onAbort = (): void => {
        finish();
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        finish();
        resolve();
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.onNextWake(owner, () => {
        this.woke = true;
        finish();
        resolve();
      });
    });
  }

  close(): void {
    this.listener = undefined;
    this.notifier.forget(this);
  }
}

/**
 * The subscriber's liveness channel must be back within `livenessGraceMs` (100 ms) of a
 * dropped connection, or shadows take this process for dead and run its jobs again.
 * ioredis 6 waits 50–250 ms before its first reconnect (a jittered back-off): measured after
 * `CLIENT KILL`, the channel stayed empty 115–207 ms and running jobs were taken over. So
 * this connection retries once at once, then follows the client's own strategy.
 */
function subscriberOptions(client: Redis): Partial<RedisOptions> {
  const strategy = client.options.retryStrategy;
  if (typeof strategy !== 'function') return {}; // reconnects turned off: keep it so
  return { retryStrategy: (times) => (times === 1 ? 0 : strategy(times - 1)) };
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
  private readonly subscriber: Redis;
  private watchTimer: NodeJS.Timeout | undefined;
  private watching = false;
  /** Set while the subscriber is reconnecting: this process's liveness channel is empty. */
  private away: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Rejects if the client gives up on a command while the subscriber is away. */
  private gaveUp: Promise<never> | undefined;

  constructor(
    private readonly client: RedisConnection,
    private readonly settleChannel: string,
    private readonly liveChannel: string | undefined,
    private readonly livenessIntervalMs: number,
    onError: (err: Error) => void,
    onReconnect: () => void,
  ) {
    // A Cluster's duplicate() is a Cluster; subscribing works the same on both.
    this.subscriber = (
      client.isCluster
        ? (client as Cluster).duplicate()
        : (client as Redis).duplicate(subscriberOptions(client as Redis))
    ) as Redis;
    this.subscriber.on('error', onError);
    let readies = 0;
    this.subscriber.on('close', () => {
      if (readies > 0 && this.away === undefined) {
        let resolve = (): void => {};
        const promise = new Promise<void>((r) => {
          resolve = r;
        });
        this.away = { promise, resolve };
      }
    });
    this.subscriber.on('end', () => this.back()); // closed for good: nobody waits any more
    this.subscriber.on('ready', () => {
      if (++readies === 1) return;
      // 'ready' comes before ioredis resubscribes: back only once our own SUBSCRIBE is
      // answered. If the connection drops again first, the next 'ready' tries again.
      this.subscriber.subscribe(...this.channels()).then(
        () => {
          this.back();
          // Settle messages published while we were disconnected are lost: look again now.
          this.wakeAll();
          onReconnect();
        },
        () => {},
      );
    });
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.settleChannel) this.wakeTag(message);
    });
  }

  private channels(): string[] {
    return this.liveChannel === undefined
      ? [this.settleChannel]
      : [this.settleChannel, this.liveChannel];
  }

  private back(): void {
    this.away?.resolve();
    this.away = undefined;
    this.gaveUp = undefined;
  }

  /** Subscribes before any acquire, so neither a notification nor our liveness is missed. */
  async start(): Promise<void> {
    await this.subscriber.subscribe(...this.channels());
  }

  /**
   * Resolves once the subscriber is back, if it is reconnecting. While it is away this
   * process's liveness channel is empty, so a grant taken now would look to the twin like
   * a dead owner's and be taken over after the grace: a duplicate. That happens after a
   * lock-store restart, where the client and the subscriber reconnect on their own
   * back-offs and the client often comes first. Rejects if the client gives up on a
   * command meanwhile (its `maxRetriesPerRequest`), so a caller fails as fast as before.
   */
  async live(): Promise<void> {
    const away = this.away;
    if (away === undefined) return;
    // One probe per absence, shared by every caller: a ping that never settles unless the
    // client gives up on it.
    this.gaveUp ??= this.client.ping().then(
      () => new Promise<never>(() => {}),
      (err: unknown) => {
        this.gaveUp = undefined; // the next caller asks again
        throw err;
      },
    );
    await Promise.race([away.promise, this.gaveUp]);
  }

  /** Registers interest in the record at `key`/`field`; close() the ticket when done. */
  ticket(key: string, field: string): Ticket {
    const ticket = new Ticket(addressTag(key, field), this);
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

  private wakeTag(tag: string): void {
    for (const ticket of this.tickets.get(tag) ?? []) ticket.wake('settled');
  }

  watchLiveness(): void {
    if (this.watchTimer !== undefined || this.livenessIntervalMs <= 0) return;
    this.watchTimer = setInterval(() => void this.checkLiveness(), this.livenessIntervalMs);
  }

  private async checkLiveness(): Promise<void> {
    if (this.watching) return; // a slow reply must not pile up checks
    const byChannel = new Map<string, Ticket[]>();
    const bySession = new Map<string, Ticket[]>();
    const add = (map: Map<string, Ticket[]>, key: string, ticket: Ticket): void => {
      if (key === '') return;
      const list = map.get(key) ?? [];
      list.push(ticket);
      map.set(key, list);
    };
    for (const set of this.tickets.values()) {
      for (const ticket of set) {
        add(byChannel, ticket.owner.channel, ticket);
        add(bySession, ticket.owner.sessionKey, ticket);
      }
    }
    if (byChannel.size === 0 && bySession.size === 0) {
      clearInterval(this.watchTimer);
      this.watchTimer = undefined;
      return;
    }
    this.watching = true;
    // The acquire script re-checks atomically (and applies the grace period) on each wake.
    const wake = (tickets: Ticket[] | undefined): void => {
      for (const ticket of tickets ?? []) ticket.wake('gone');
    };
    try {
      if (byChannel.size > 0) {
        const reply = (await this.client.call('PUBSUB', 'NUMSUB', ...byChannel.keys())) as (
          | string
          | number
        )[];
        for (let i = 0; i < reply.length; i += 2) {
          if (Number(reply[i + 1]) === 0) wake(byChannel.get(String(reply[i])));
        }
      }
      if (bySession.size > 0) {
        const keys = [...bySession.keys()];
        const values = await this.client.mget(...keys);
        values.forEach((value, i) => {
          if (value === null) wake(bySession.get(keys[i] ?? ''));
        });
      }
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
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    this.wakeAll();
    try {
      await this.subscriber.quit();
    } catch {
      this.subscriber.disconnect();
    }
  }
}
