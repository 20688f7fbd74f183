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

/** How often a process looks at the sibling it watches, in ms. */
const SIBLING_CHECK_MS = 1_000;
/** How long a sibling's liveness channel must stay empty before it counts as dead, in ms. */
const SIBLING_GRACE_MS = 1_000;
/** How often the list of siblings is read again (a newcomer is watched within this), in ms. */
const SIBLING_READ_MS = 10_000;
/** How often a process renews its own entry (and prunes stale ones), in ms. */
const SIBLING_REFRESH_MS = 60_000;
/** An entry not renewed for this long belongs to a process long gone: pruned without a word. */
const STALE_ENTRY_MS = 600_000;

/** One siblings key (a twin and queue) as this process takes part in it. */
interface Listed {
  ownChannel: string;
  /** Every listed channel, sorted: the ring. */
  members: string[];
  readAt: number;
  refreshedAt: number;
  /** The sibling this process watches (the next one on the ring), and since when it looked dead. */
  watched: string | undefined;
  goneSince: number | undefined;
  onDeath: Set<() => void>;
  /** Off the list while this process's queue server does not answer (`setDark`). */
  dark: boolean;
}

/**
 * The other processes of the same twin and queue. A copy parked by a process is woken only by
 * that process; when it dies, a sibling must adopt its parked copies, or they wait for their
 * park delay (minutes). Each process keeps its liveness channel in a sorted set per twin and
 * queue (`<prefix>:siblings:<twin>:<queue>`, also read by the other twin's standbys: see
 * `TwinPresence`), and watches **one** sibling: the next channel on the ring of listed
 * channels. One subscriber count per check covers every queue of the process (one script
 * call per master), so a process's cost is flat in the number of its siblings and nearly
 * flat in its queues: the total grows with the processes, not with their square. When the
 * watched sibling's channel stays empty for `SIBLING_GRACE_MS`, it is removed from the set
 * and `onDeath` adopts; the next check watches the one after it, so a run of dead siblings
 * is walked one check each. One registry per shared core (`siblingsOf`).
 */
export class SiblingRegistry {
  private readonly listed = new Map<string, Listed>();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    private readonly client: RedisConnection,
    private readonly liveness: SiblingLiveness,
    private readonly report: (err: Error) => void,
  ) {}

  /**
   * Lists this process under `key`, so siblings adopt its parked copies if it dies, and
   * watches its neighbour there. Resolves once listed; the returned function stops watching
   * for `onDeath` (the entry stays: once this process's channel is empty, siblings adopt
   * what it leaves parked, which a clean exit leaves as much as a crash does).
   */
  async register(key: string, onDeath: () => void): Promise<() => void> {
    let listed = this.listed.get(key);
    if (listed === undefined) {
      const ownChannel = await this.liveness.channelNear(key);
      if (ownChannel === undefined) return () => {};
      listed = this.listed.get(key) ?? {
        ownChannel,
        members: [],
        readAt: Number.NEGATIVE_INFINITY,
        refreshedAt: Number.NEGATIVE_INFINITY,
        watched: undefined,
        goneSince: undefined,
        onDeath: new Set(),
        dark: false,
      };
      this.listed.set(key, listed);
      await this.renew(key, listed);
    }
    const entry = listed;
    entry.onDeath.add(onDeath);
    this.timer ??= setInterval(() => void this.check(), SIBLING_CHECK_MS);
    this.timer.unref();
    return () => {
      entry.onDeath.delete(onDeath);
      if (entry.onDeath.size > 0) return;
      this.listed.delete(key);
      if (this.listed.size === 0) this.stop();
    };
  }

  /**
   * Takes this process off `key`'s list while its queue server does not answer (`dark`), and
   * puts it back once it does: the other twin's standbys then count this twin as gone if no
   * other process of it is listed, and run the jobs chosen for it at once instead of waiting
   * `standbyGraceMs` for claims this process cannot make (it cannot fetch its copies).
   */
  async setDark(key: string, dark: boolean): Promise<void> {
    const listed = this.listed.get(key);
    if (listed === undefined || listed.dark === dark) return;
    listed.dark = dark;
    // Due for renewal at the first check once back: a failed re-listing here is retried then.
    listed.refreshedAt = Number.NEGATIVE_INFINITY;
    if (dark) await this.client.zrem(key, listed.ownChannel);
    else await this.renew(key, listed);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async renew(key: string, listed: Listed): Promise<void> {
    const now = Date.now();
    await this.client.zadd(key, String(now), listed.ownChannel);
    await this.client.zremrangebyscore(key, '-inf', String(now - STALE_ENTRY_MS));
    listed.refreshedAt = now;
  }

  private async check(): Promise<void> {
    if (this.checking) return; // a slow reply must not pile up checks
    this.checking = true;
    try {
      const now = Date.now();
      const watching: [string, Listed][] = [];
      for (const [key, listed] of this.listed) {
        if (!listed.dark && now - listed.refreshedAt >= SIBLING_REFRESH_MS) {
          await this.renew(key, listed);
        }
        if (now - listed.readAt >= SIBLING_READ_MS) {
          listed.members = (await this.client.zrange(key, '0', '-1')).sort();
          listed.readAt = now;
        }
        const next = neighbour(listed.members, listed.ownChannel);
        if (next !== listed.watched) listed.goneSince = undefined;
        listed.watched = next;
        if (next !== undefined) watching.push([key, listed]);
      }
      if (watching.length === 0) return;
      const channels = [...new Set(watching.map(([, l]) => l.watched as string))];
      const counts = await this.liveness.subscribers(channels);
      const live = new Map(channels.map((channel, i) => [channel, (counts[i] ?? 0) > 0]));
      for (const [key, listed] of watching) {
        const channel = listed.watched as string;
        if (live.get(channel)) {
          listed.goneSince = undefined;
          continue;
        }
        listed.goneSince ??= now;
        if (now - listed.goneSince < SIBLING_GRACE_MS) continue;
        // Gone: off the ring (for every process), and the next check watches the one after.
        await this.client.zrem(key, channel);
        listed.members = listed.members.filter((m) => m !== channel);
        listed.watched = undefined;
        listed.goneSince = undefined;
        for (const adopt of listed.onDeath) adopt();
      }
    } catch (err) {
      this.report(asError(err));
    } finally {
      this.checking = false;
    }
  }
}

/** The channel after `own` on the ring of `members` (sorted), other than `own`. */
function neighbour(members: readonly string[], own: string): string | undefined {
  const others = members.filter((m) => m !== own);
  if (others.length === 0) return undefined;
  return others.find((m) => m > own) ?? others[0];
}

const registries = new WeakMap<object, SiblingRegistry>();

/** The one registry of the processors sharing `core` (a `PairCore`); it reports as the core does. */
export function siblingsOf(
  core: SiblingLiveness & { client: RedisConnection; reportError(err: Error): void },
): SiblingRegistry {
  let registry = registries.get(core);
  if (registry === undefined) {
    registry = new SiblingRegistry(core.client, core, (err) => core.reportError(err));
    registries.set(core, registry);
  }
  return registry;
}
