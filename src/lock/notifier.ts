import type { Cluster, Redis } from 'ioredis';
import { addressTag } from './keys.js';
import type { RedisConnection } from './scripts.js';

/**
 * One shadow's interest in one record. It is registered *before* the acquire that may
 * answer "busy", because the settle message travels on another connection and can arrive
 * before that reply: a message that lands in between is remembered, not lost.
 */
export class Ticket {
  /** Liveness channel of the executor being shadowed ('' when unknown). */
  ownerChannel = '';
  private pending = false;
  private listener: (() => void) | undefined;

  constructor(
    readonly tag: string,
    private readonly notifier: Notifier,
  ) {}

  wake(): void {
    const listener = this.listener;
    this.listener = undefined;
    if (listener) listener();
    else this.pending = true;
  }

  /**
   * Calls `listener` once, at the next settle message or sign of a dead executor, or at
   * once if one arrived since the ticket was made or last woke.
   */
  onNextWake(ownerChannel: string, listener: () => void): void {
    this.ownerChannel = ownerChannel;
    if (this.pending) {
      this.pending = false;
      listener();
      return;
    }
    this.listener = listener;
    if (ownerChannel !== '') this.notifier.watchLiveness();
  }

  /** Whether the last `wait` ended by a wake-up rather than by its timeout. */
  woke = false;

  /** Resolves at the next wake or after `timeoutMs`; rejects when `signal` aborts. */
  wait(ownerChannel: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
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
      this.onNextWake(ownerChannel, () => {
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
 * Wakes waiting shadows. One subscriber connection per lock instance does two jobs:
 * it receives settle notifications, and its own subscription to this process's liveness
 * channel is what tells other members that this process is alive. A liveness watcher
 * asks Redis how many subscribers the executors' channels have (one PUBSUB NUMSUB for all
 * of them) and wakes the shadows of an executor whose process is gone.
 */
export class Notifier {
  private readonly tickets = new Map<string, Set<Ticket>>();
  private readonly subscriber: Redis;
  private watchTimer: NodeJS.Timeout | undefined;
  private watching = false;

  constructor(
    private readonly client: RedisConnection,
    private readonly settleChannel: string,
    private readonly liveChannel: string | undefined,
    private readonly livenessIntervalMs: number,
    onError: (err: Error) => void,
  ) {
    // A Cluster's duplicate() is a Cluster; subscribing works the same on both.
    this.subscriber = (
      client.isCluster ? (client as Cluster).duplicate() : (client as Redis).duplicate()
    ) as Redis;
    this.subscriber.on('error', onError);
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.settleChannel) this.wakeTag(message);
    });
  }

  /** Subscribes before any acquire, so neither a notification nor our liveness is missed. */
  async start(): Promise<void> {
    const channels = [this.settleChannel];
    if (this.liveChannel !== undefined) channels.push(this.liveChannel);
    await this.subscriber.subscribe(...channels);
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
    for (const ticket of this.tickets.get(tag) ?? []) ticket.wake();
  }

  watchLiveness(): void {
    if (this.watchTimer !== undefined || this.livenessIntervalMs <= 0) return;
    this.watchTimer = setInterval(() => void this.checkLiveness(), this.livenessIntervalMs);
  }

  private async checkLiveness(): Promise<void> {
    if (this.watching) return; // a slow reply must not pile up checks
    const byChannel = new Map<string, Ticket[]>();
    for (const set of this.tickets.values()) {
      for (const ticket of set) {
        if (ticket.ownerChannel === '') continue;
        const list = byChannel.get(ticket.ownerChannel) ?? [];
        list.push(ticket);
        byChannel.set(ticket.ownerChannel, list);
      }
    }
    if (byChannel.size === 0) {
      clearInterval(this.watchTimer);
      this.watchTimer = undefined;
      return;
    }
    this.watching = true;
    try {
      const reply = (await this.client.call('PUBSUB', 'NUMSUB', ...byChannel.keys())) as (
        | string
        | number
      )[];
      for (let i = 0; i < reply.length; i += 2) {
        if (Number(reply[i + 1]) === 0) {
          // The acquire script re-checks atomically and applies the grace period.
          for (const ticket of byChannel.get(String(reply[i])) ?? []) ticket.wake();
        }
      }
    } catch {
      // The lock store is unreachable: the waiters' own timers keep polling.
    } finally {
      this.watching = false;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    for (const set of this.tickets.values()) for (const ticket of set) ticket.wake();
    try {
      await this.subscriber.quit();
    } catch {
      this.subscriber.disconnect();
    }
  }
}
