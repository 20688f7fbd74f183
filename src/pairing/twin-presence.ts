import { asError } from '../errors.js';
import type { RedisConnection } from '../lock/scripts.js';
import type { SiblingLiveness } from './siblings.js';

/** How often a twin that standbys wait for is looked at, in ms. */
const PRESENCE_CHECK_MS = 150;
/**
 * How long a twin must have had no live worker process before it counts as gone, in ms: a
 * subscriber reconnecting after a blip is back well within it, so a live twin's queued jobs
 * are not run here too; a twin whose processes were all SIGKILLed is gone within about this.
 */
const PRESENCE_GRACE_MS = 350;
/** A look older than this (ms) is not trusted to say a twin is gone (see `isGone`). */
const TRUSTED_LOOK_MS = 2 * PRESENCE_CHECK_MS;

interface Watched {
  /** When a look first found no live process (cleared by a look that finds one). */
  emptySince: number | undefined;
  /** When the last look ended (performance.now()), to answer `isGone` from it for a while. */
  lookedAt: number;
  looking: Promise<void> | undefined;
  /** Each listener, with what tells whether it is still wanted (a ticket closed meanwhile is not). */
  listeners: Map<() => void, () => boolean>;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Whether the twin chosen to run a job still has a live worker process for its queue, as its
 * workers list themselves in the siblings registry (`SiblingRegistry`: one sorted set of liveness
 * channels per twin and queue). A standby waits for the chosen twin's claim only while that
 * twin has one: once none is left (every process of a region SIGKILLed, or never started), the
 * jobs chosen for it run on the survivor as soon as it has a slot, not after
 * `standbyGraceMs`. It is looked at only while standbys wait for it (one set read and one
 * subscriber count per twin every `PRESENCE_CHECK_MS`), so its cost is flat in jobs and
 * nothing when idle.
 */
export class TwinPresence {
  private readonly watched = new Map<string, Watched>();

  constructor(
    private readonly client: RedisConnection,
    private readonly liveness: SiblingLiveness,
    private readonly report: (err: Error) => void,
  ) {}

  /**
   * Whether the twin listed at `key` has had no live process for the grace, from what is
   * known now (never waits: a copy in its slot must not wait for the lock store); looks again
   * in the background when the last look is older than a check period.
   */
  isGone(key: string): boolean {
    const entry = this.entry(key);
    const age = performance.now() - entry.lookedAt;
    if (age > PRESENCE_CHECK_MS) void this.look(key, entry);
    // A 'gone' from an old look is not acted on: the twin may be back (restarted) and start
    // its new jobs at once. Until a fresh look, the standby waits as usual; its watch looks.
    return age <= TRUSTED_LOOK_MS && this.gone(entry);
  }

  /**
   * Calls `listener` once, when the twin listed at `key` is gone, unless `wanted()` says no by
   * then (checked at each look, so a listener whose wait ended otherwise stops the looks).
   * Returns a canceller.
   */
  onGone(key: string, listener: () => void, wanted: () => boolean): () => void {
    const entry = this.entry(key);
    entry.listeners.set(listener, wanted);
    entry.timer ??= setInterval(() => void this.look(key, entry), PRESENCE_CHECK_MS);
    entry.timer.unref();
    return () => {
      entry.listeners.delete(listener);
      this.idle(entry);
    };
  }

  /**
   * Drops the listeners no longer wanted (a processor that closed) and stops looking at twins
   * nobody waits for any more: called at a processor's close, so no look outlives it.
   */
  prune(): void {
    for (const entry of this.watched.values()) {
      for (const [listener, wanted] of entry.listeners) {
        if (!wanted()) entry.listeners.delete(listener);
      }
      this.idle(entry);
    }
  }

  private entry(key: string): Watched {
    let entry = this.watched.get(key);
    if (entry === undefined) {
      entry = {
        emptySince: undefined,
        lookedAt: Number.NEGATIVE_INFINITY,
        looking: undefined,
        listeners: new Map(),
        timer: undefined,
      };
      this.watched.set(key, entry);
    }
    return entry;
  }

  private gone(entry: Watched): boolean {
    return (
      entry.emptySince !== undefined && performance.now() - entry.emptySince >= PRESENCE_GRACE_MS
    );
  }

  /** Stops looking at a twin nobody waits for; its last answer is kept for `isGone`. */
  private idle(entry: Watched): void {
    if (entry.listeners.size > 0) return;
    clearInterval(entry.timer);
    entry.timer = undefined;
  }

  private look(key: string, entry: Watched): Promise<void> {
    entry.looking ??= (async () => {
      try {
        const channels = await this.client.zrange(key, '0', '-1');
        const counts = channels.length === 0 ? [] : await this.liveness.subscribers(channels);
        const live = counts.some((n) => n > 0);
        const now = performance.now();
        // An absence counts only as seen without a gap: after a pause in the looks (nobody
        // waited for this twin), it starts again from this look.
        const continuous = now - entry.lookedAt <= 2 * PRESENCE_CHECK_MS + 1_000;
        if (live) entry.emptySince = undefined;
        else if (entry.emptySince === undefined || !continuous) entry.emptySince = now;
      } catch (err) {
        // Unknown: nothing changes; the next look tries again.
        this.report(asError(err));
      } finally {
        entry.lookedAt = performance.now();
        entry.looking = undefined;
      }
      for (const [listener, wanted] of entry.listeners) {
        if (!wanted()) entry.listeners.delete(listener);
      }
      if (!this.gone(entry)) return this.idle(entry);
      const listeners = [...entry.listeners.keys()];
      entry.listeners.clear();
      this.idle(entry);
      for (const listener of listeners) listener();
    })();
    return entry.looking;
  }
}

const presences = new WeakMap<object, TwinPresence>();

/**
 * The one presence watch of the processors sharing `core` (a `PairCore`): a twin that
 * standbys of several queues wait for is looked at once per check period, not once per
 * processor. It reports as the core does.
 */
export function presenceOf(
  core: SiblingLiveness & { client: RedisConnection; reportError(err: Error): void },
): TwinPresence {
  let presence = presences.get(core);
  if (presence === undefined) {
    presence = new TwinPresence(core.client, core, (err) => core.reportError(err));
    presences.set(core, presence);
  }
  return presence;
}
