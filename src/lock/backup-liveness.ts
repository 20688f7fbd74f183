import type { Redis } from 'ioredis';
import { CLOSE_TIMEOUT_MS, TIMED_OUT, within } from './bounded.js';
import { subscriberOptions } from './subscriber-options.js';

/**
 * A second subscriber connection (one Redis only) that holds this process's backup liveness
 * channel (`backupLivenessChannel`). Twins count it with the main one (includes/liveness.lua):
 * a crash closes both connections at once, while a connection reset, or a burst of them
 * within one reconnect, seldom catches both, so a live process is not taken for dead (bench
 * geo_false_takeovers at 15 times its reset rate: 16 takeovers of live executors in 30 s with
 * one connection). It carries nothing else; its trouble is no process's trouble while the main
 * subscriber holds `live`, so its errors are not reported, and a subscription the lock store
 * no longer lists is made anew at the next health check (`recheck`).
 */
export class BackupLiveness {
  private readonly connection: Redis;
  private closing = false;

  constructor(
    client: Redis,
    readonly channel: string,
    /** Its connection closed after it was up (a reset, say): it reconnects by itself. */
    onReset: () => void = () => {},
  ) {
    this.connection = client.duplicate(subscriberOptions(client));
    this.connection.on('error', () => {});
    // Made anew after each reconnect by us, not ioredis (see subscriberOptions). A failure is
    // the connection's own trouble: the next health check's count repairs it (`recheck`).
    let readies = 0;
    this.connection.on('ready', () => {
      if (++readies > 1 && !this.closing) this.connection.subscribe(this.channel).catch(() => {});
    });
    this.connection.on('close', () => {
      if (readies > 0 && !this.closing) onReset();
    });
  }

  /** Subscribes it (and again after each reconnect). */
  async start(): Promise<void> {
    await this.connection.subscribe(this.channel);
  }

  /** The lock store's count of the channel: none while connected means it was dropped. */
  recheck(subscribers: number): void {
    if (subscribers === 0 && this.connection.status === 'ready' && !this.closing) {
      this.connection.disconnect(true);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.connection.status === 'ready') {
      try {
        if ((await within(this.connection.quit(), CLOSE_TIMEOUT_MS)) !== TIMED_OUT) return;
      } catch {
        // fall through
      }
    }
    this.connection.disconnect();
  }
}
