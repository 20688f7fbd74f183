import { asError } from '../errors.js';
import type { RedisConnection } from '../lock/scripts.js';

/** How a process names its own liveness and counts its siblings' (`PairCore`). */
export interface SiblingLiveness {
  /**
   * This process's liveness channel next to the siblings key (on a Cluster, the sharded
   * channel it keeps on that key's master, where its siblings keep theirs).
   */
  channelNear(key: string): Promise<string | undefined>;
  /** How many subscribers each channel has. */
  subscribers(channels: string[]): Promise<number[]>;
}

/** How often a process looks for siblings that died, in ms. */
const SIBLING_CHECK_MS = 500;
/** How long a sibling's liveness channel must stay empty before it counts as dead, in ms. */
const SIBLING_GRACE_MS = 1_000;
/** An entry not refreshed for this long belongs to a process long gone: pruned without a word. */
const STALE_ENTRY_MS = 600_000;

/**
 * Watches the other processes of the same twin (same twin name and queue). A copy parked by a
 * process is woken only by that process; when it dies, a sibling that lives on must adopt its
 * parked copies, or they wait for their park delay (minutes). Each process keeps its liveness
 * channel in a sorted set; every `SIBLING_CHECK_MS` it asks whether the others' channels
 * still have a subscriber (the owners script: one call per node), and calls `onDeath` once for
 * a sibling whose channel stayed empty for `SIBLING_GRACE_MS`. The cost grows with processes,
 * not jobs. On a Cluster each process lists the sharded channel it keeps on the set's master
 * (one call there; after a resharding, one per master the listed channels sit on).
 */
export class SiblingWatch {
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private stopped = false;
  private readonly goneSince = new Map<string, number>();
  private ownChannel: string | undefined;

  constructor(
    private readonly client: RedisConnection,
    private readonly key: string,
    private readonly liveness: SiblingLiveness,
    private readonly onDeath: () => void,
    private readonly report: (err: Error) => void,
  ) {}

  /** Lists this process among its twin's, so siblings adopt its parked copies if it dies. */
  async register(): Promise<void> {
    this.ownChannel ??= await this.liveness.channelNear(this.key);
    if (this.ownChannel === undefined) return;
    await this.client.zadd(this.key, String(Date.now()), this.ownChannel);
  }

  start(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setInterval(() => void this.check(), SIBLING_CHECK_MS);
    void this.check();
  }

  private async check(): Promise<void> {
    if (this.checking) return; // a slow reply must not pile up checks
    this.checking = true;
    try {
      const now = Date.now();
      await this.register();
      await this.client.zremrangebyscore(this.key, '-inf', String(now - STALE_ENTRY_MS));
      const others = (await this.client.zrange(this.key, '0', '-1')).filter(
        (channel) => channel !== this.ownChannel,
      );
      if (others.length === 0) return;
      const counts = await this.liveness.subscribers(others);
      let died = false;
      for (const [i, channel] of others.entries()) {
        if ((counts[i] ?? 0) > 0) {
          this.goneSince.delete(channel);
          continue;
        }
        const since = this.goneSince.get(channel) ?? now;
        this.goneSince.set(channel, since);
        if (now - since >= SIBLING_GRACE_MS) {
          // Only one survivor need remove it; each that sees it gone adopts (harmless twice).
          await this.client.zrem(this.key, channel);
          this.goneSince.delete(channel);
          died = true;
        }
      }
      if (died) this.onDeath();
    } catch (err) {
      this.report(asError(err));
    } finally {
      this.checking = false;
    }
  }

  /**
   * Stops watching. This process stays in the set: once its liveness channel is empty, its
   * siblings adopt what it leaves parked (copies handed over on close, its parked shadows),
   * which a clean exit leaves as much as a crash does; they then remove it.
   */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
