import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import type { Cluster } from 'ioredis';
import {
  asError,
  ClosedError,
  CorruptRecordError,
  LivenessSubscriberError,
  LockStoreUnavailableError,
  SessionLostError,
} from '../errors.js';
import { Replication } from './durability.js';
import {
  type ClaimReply,
  type ExecuteExtras,
  type ExecuteHost,
  execute,
  type RunContext,
} from './execute.js';
import { FlapGrace } from './flap-grace.js';
import { type RecordAddress, recordAddress, settleChannel } from './keys.js';
import type { LeaseKeeper } from './lease-keeper.js';
import { Notifier } from './notifier.js';
import type { ResolvedLockOptions } from './options.js';
import { ownersAlive } from './owners.js';
import { LIVENESS_WARMUP_S, type Place, Placement } from './placement.js';
import { misconfigured, preflight } from './preflight.js';
import { type PairRecord, settledReply, toPairRecord } from './record.js';
import { backoffMs } from './reply-errors.js';
import {
  type AcquireReply,
  acquire,
  type Completion,
  type Grant,
  inspect,
  type RedisConnection,
  settle,
  type TakeoverReason,
} from './scripts.js';
import { type Outcome, Settler } from './settle.js';
import type { Ticket } from './ticket.js';

export interface Acquired {
  reply: Exclude<AcquireReply, { kind: 'noSession' | 'taken' | 'unplaced' }>;
  /** performance.now() when the acquire was sent: the lease cannot end on Redis before sentAt + lease. */
  sentAt: number;
  token: string;
}

/** What one acquire script call answered (a lost session already handled), and when it was sent. */
interface Asked {
  reply: Exclude<AcquireReply, { kind: 'noSession' | 'unplaced' }>;
  sentAt: number;
  token: string;
}

/** How an acquire asks: lowest fence, a claim, how long a 'waiting' record is left to a claim. */
interface AskHow {
  minFence: number;
  claim?: 'started' | 'waiting';
  waitForClaimMs?: number;
  /** A started claim's run already ended with this result: settled in the same call. */
  completion?: Completion;
}

/** Tokens of acquires whose replies were lost, kept at most (one per record in doubt). */
const MAX_UNCERTAIN_TOKENS = 10_000;

/** Longest pause between acquires a Cluster answered `unplaced` (see the acquire script). */
const UNPLACED_RETRY_CAP_MS = 1_000;
/** How many such answers in a row before the acquire fails (transient: the copy parks). */
const UNPLACED_RETRIES = 20;

/**
 * A claim stamps the lock store's epoch (one `PTTL`, a write when the key is absent or half
 * spent) at most this often per process (ms). A claim meets no other grant's owner, so the
 * key is only stamped there, not read: the stamp is needed once per server (it tells a
 * promoted replica or a restarted server that its epoch is new), and every takeover's
 * acquire, which does read it, still carries it.
 */
const CLAIM_EPOCH_EVERY_MS = 10_000;

/** Sets `key` in `map`, dropping the oldest entry beyond MAX_UNCERTAIN_TOKENS. */
function rememberCapped<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key); // re-inserted last: the oldest go first
  map.set(key, value);
  if (map.size > MAX_UNCERTAIN_TOKENS) {
    const oldest = map.keys().next().value;
    if (oldest !== undefined) map.delete(oldest);
  }
}

function unplacedError(what: 'moved' | 'unsubscribed', place: Place): Error {
  if (what === 'unsubscribed') {
    return new LivenessSubscriberError(
      'unhealthy',
      `the Cluster master serving ${place.liveChannel} lists no subscriber on it`,
    );
  }
  const err = new Error(
    `the lock store's Cluster moved the slots of ${place.sessionKey} while this process's slot map was stale; it is refreshing`,
  );
  err.name = 'ClusterSlotsMovedError';
  return err;
}

/**
 * The pair-record machinery shared by `PairedLock` and `PairedProcessor`: acquire, the
 * executor's lease and settle, shadow wake-ups and this process's liveness channel.
 */
export class PairCore {
  readonly channel: string;
  /** This process's liveness channel on one Redis (on a Cluster: one per master, `placement`). */
  private readonly liveChannel: string | undefined;
  /** This process's session keys and liveness channels (one per master on a Cluster). */
  private readonly placement: Placement;
  private readonly notifier: Notifier;
  /** Our grace, raised a while after a reset of a connection holding our liveness. */
  private readonly flapGrace: FlapGrace;
  private started: Promise<void> | undefined;
  /** `started` has resolved: the lock store passed its checks and we are subscribed. */
  private isReady = false;
  /** Rejects the bounded calls in flight (see `bounded`) with `ClosedError`, at close. */
  private readonly waiting = new Set<() => void>();
  /** The lock store passed `preflight` once: later starts only subscribe. */
  private preflighted = false;
  /** Running routines, with the session they run under. */
  private readonly running = new Map<LeaseKeeper, Place | undefined>();
  /** Running routines being re-stamped after a resharding (`relocateMoved`). */
  private readonly relocating = new Set<LeaseKeeper>();
  /** Per grant (token), where it named this process's keys, until `execute` takes it. */
  private readonly grantPlaces = new Map<string, Place>();
  /** Settles sent without waiting (`ExecuteExtras.pipeline`): close() waits for them. */
  private readonly settling = new Set<Promise<void>>();
  /** Per record: the token of an acquire that ended in an error (its reply may be lost). */
  private readonly uncertainTokens = new Map<string, string>();
  /** When a claim of this process last carried the epoch key (`CLAIM_EPOCH_EVERY_MS`). */
  private claimStampedAt = Number.NEGATIVE_INFINITY;
  /** WAITs after grants and settles (the `durability` option); undefined: off. */
  private readonly replication: Replication | undefined;
  /** What `execute` (src/lock/execute.ts) reads and keeps of this core. */
  private readonly host: ExecuteHost;
  closing = false;

  constructor(
    readonly client: RedisConnection,
    readonly options: Readonly<ResolvedLockOptions>,
    private readonly report: (err: Error) => void,
  ) {
    this.channel = settleChannel(options.prefix);
    this.replication = options.durability && new Replication(client, options.durability);
    const isClosing = (): boolean => this.closing;
    this.host = {
      client,
      options,
      report,
      isClosing,
      isSharded: () => this.placement.sharded,
      takePlace: (token, key) => {
        const place = this.grantPlaces.get(token) ?? this.placement.nearNow(key);
        this.grantPlaces.delete(token);
        return place;
      },
      running: this.running,
      settling: this.settling,
      claim: (address, token, completion) => this.claim(address, token, 'started', completion),
      replicated: this.replication !== undefined,
      settler: new Settler({
        client,
        options,
        channel: this.channel,
        replication: this.replication,
        report,
        isClosing,
      }),
    };
    const instanceId = randomUUID();
    // On a Cluster the liveness channels are sharded, one per master (`placement`).
    this.placement = new Placement(client, options.prefix, instanceId, options.liveness, options, {
      onSessionLost: (key) => {
        for (const [keeper, place] of this.running) if (place?.sessionKey === key) keeper.expire();
      },
      onRefreshed: () => this.relocateMoved(),
      report,
      ssubscribe: (channel) => this.notifier.ssubscribe(channel),
    });
    this.liveChannel = this.placement.singleChannel;
    // Our liveness connection dropped and came back: a shadow may have taken over meanwhile.
    const onReconnect = (): void => {
      for (const keeper of this.running.keys()) keeper.check();
    };
    this.notifier = new Notifier(
      client,
      this.channel,
      this.liveChannel,
      options.livenessIntervalMs,
      report,
      onReconnect,
      options.pollIntervalMs,
      // Our subscriber ended for good: the twin takes our runs over after the grace anyway,
      // so hand them over now (released) rather than let them run twice.
      () => this.abortAll(new ClosedError("this process's lock-store subscriber")),
      options.retentionMs,
    );
    // A reset of a connection holding our liveness: ask twins for a longer grace a while.
    this.flapGrace = new FlapGrace(
      () => this.usualGraceMs(),
      options.leaseMs,
      (raised) => {
        for (const session of this.placement.sessions()) session.setGrace(raised);
      },
    );
    this.notifier.onConnectionReset = () => {
      if (!this.closing) this.flapGrace.reset();
    };
  }

  /**
   * `listener(reason)` when this process stops taking grants because its lock-store
   * subscriber is away, `listener(undefined)` when it is back. Returns the unsubscribe.
   */
  onSubscriberAway(listener: (reason: string | undefined) => void): () => void {
    this.notifier.awayListeners.add(listener);
    return () => void this.notifier.awayListeners.delete(listener);
  }

  /** Reports `err` as the core's own errors are (to every user of a shared core). */
  reportError(err: Error): void {
    this.report(err);
  }

  address(id: string, hash?: string): RecordAddress {
    return recordAddress(this.options.prefix, id, hash);
  }

  /**
   * Once, before the first acquire: checks the lock store (`preflight`, until it passes once)
   * and subscribes (settle channel, own liveness channel). Rejects with
   * `LockStoreMisconfiguredError` for what only a person can fix, with
   * `LockStoreUnavailableError` when it takes longer than `lockStoreTimeoutMs`, else with the
   * error as is; either way the next call tries again. An attempt that is still waiting for
   * the store is not started twice: the next call waits for it again (its own bound).
   */
  ready(id?: string): Promise<void> {
    if (this.isReady) return Promise.resolve();
    if (this.closing) return Promise.reject(new ClosedError('PairedLock'));
    this.started ??= this.start().then(
      () => {
        this.isReady = true;
      },
      (err: unknown) => {
        this.started = undefined;
        throw misconfigured(err, this.options.prefix) ?? err;
      },
    );
    return this.bounded(this.started, id);
  }

  /**
   * `work`, or `LockStoreUnavailableError` once it has taken `lockStoreTimeoutMs`, whatever
   * the connection's retry settings (ioredis' defaults alone retry a command for about a
   * minute, and forever under `maxRetriesPerRequest: null`). `work` goes on meanwhile.
   */
  private bounded<T>(work: Promise<T>, id: string | undefined): Promise<T> {
    if (this.closing) return Promise.reject(new ClosedError('PairedLock'));
    const ms = this.options.lockStoreTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    let onClose = (): void => {};
    const timeout = new Promise<never>((_, reject) => {
      // A close does not wait for the store either.
      onClose = () => reject(new ClosedError('PairedLock'));
      this.waiting.add(onClose);
      timer = setTimeout(() => {
        const status = this.client.status;
        const last = this.notifier.lastError;
        const cause = new Error(
          `no answer from the lock store within ${ms} ms (lock connection: ${status}${last ? `; last connection error: ${last.message}` : ''})`,
          last ? { cause: last } : undefined,
        );
        cause.name = 'TimeoutError';
        reject(new LockStoreUnavailableError({ id, cause, timeoutMs: ms }));
      }, ms);
    });
    return Promise.race([work, timeout]).finally(() => {
      clearTimeout(timer);
      this.waiting.delete(onClose);
    });
  }

  private async start(): Promise<void> {
    if (!this.preflighted) {
      const { prefix, allowEviction } = this.options;
      await preflight(this.client, prefix, this.channel, this.report, allowEviction);
      this.preflighted = true;
    }
    await Promise.all([this.notifier.start(), this.placement.start()]);
  }

  /** Interest in a record's next settle or its executor's death; register it before acquiring. */
  ticket(address: RecordAddress): Ticket {
    return this.notifier.ticket(address.key, address.field);
  }

  /**
   * Asks for the record. An acquire whose reply was lost (a timeout, a dropped connection)
   * may still have granted the record to its token on the store: under this live process's
   * session nobody else would ever take it, and a new token would find it busy. So the
   * token of an acquire that ended in an error is kept, and the next acquire of the same
   * record in this process reuses it: the script recognises it and keeps that grant. An
   * acquire that takes longer than `lockStoreTimeoutMs` rejects with
   * `LockStoreUnavailableError` and counts as such an error: its token is kept too.
   */
  async acquire(
    address: RecordAddress,
    token?: string,
    how: { minFence: number; waitForClaimMs?: number } = { minFence: 1 },
  ): Promise<Acquired> {
    const acquired = await this.ask(address, token, how);
    if (acquired.reply.kind === 'taken') throw new CorruptRecordError(address.key, address.field);
    return acquired as Acquired;
  }

  /**
   * Claims the record for the job's chosen executor: granted while nobody else holds or held
   * it, else `taken`. `started`: for a run that has already started with fence 1 (see
   * `ExecuteExtras.claim`), granted fence 1; `waiting`: for a run that starts once granted,
   * fenced on the store's clock as any grant (fence 1 would repeat after a lost record).
   */
  async claim(
    address: RecordAddress,
    token: string,
    kind: 'started' | 'waiting' = 'started',
    completion?: Completion,
  ): Promise<{ reply: ClaimReply; sentAt: number; token: string }> {
    const asked = await this.ask(address, token, {
      minFence: 1,
      claim: kind,
      ...(completion === undefined ? {} : { completion }),
    });
    const { reply } = asked;
    if (reply.kind === 'granted' || reply.kind === 'taken') return { ...asked, reply };
    // A settled record (done, or failed for good) is someone else's run too.
    return {
      ...asked,
      reply: { kind: 'taken', fence: reply.fence, state: reply.kind, owner: reply.owner },
    };
  }

  /**
   * How long this process's liveness channel may stay empty before a twin takes its records
   * over: `livenessGraceMs`, or longer when this process is far from the lock store. A
   * dropped subscriber is back after a reconnect (TCP handshake, ready check, SUBSCRIBE:
   * without a ready check: 1.5–2 round trips, measured 131–167 ms at 80 ms with 20 ms
   * jitter), so the grace covers three measured round trips plus 50 ms, margin for a loaded
   * CPU included (loopback: 51 ms, under the default 100; 80 ms away: 290 ms). Kept with each grant, so the twin applies the
   * owner's own figure. At most a quarter of the lease.
   */
  ownGraceMs(): number {
    return Math.max(this.usualGraceMs(), this.flapGrace.currentMs);
  }

  /** `ownGraceMs` while none of our connections has been reset lately (`FlapGrace`). */
  private usualGraceMs(): number {
    const derived = Math.min(3 * this.notifier.rttMs + 50, this.options.leaseMs / 4);
    return Math.ceil(Math.max(this.options.livenessGraceMs, derived));
  }

  /**
   * Whether this process would have heard it if a pair begun at `wallTime` (a job's
   * timestamp, ms) had settled `done` (see `RecentSettles.covers`): a copy may then wait for
   * the settle message instead of reading the record.
   */
  heardSince(wallTime: number): boolean {
    return this.notifier.recent.covers(wallTime);
  }

  /** This process's measured round trip to the lock store, ms (0 until measured). */
  get rttMs(): number {
    return this.notifier.rttMs;
  }

  /** How far the lock store is, ms: the least recent round trip, unlike `rttMs`'s peak. */
  get distanceMs(): number {
    return this.notifier.distanceMs;
  }

  /** Whether a grant can be used before its reply arrives (no `durability` WAIT to pass first). */
  get speculative(): boolean {
    return this.replication === undefined && this.isReady && this.notifier.healthy;
  }

  private async ask(
    address: RecordAddress,
    token: string | undefined,
    how: AskHow,
  ): Promise<Asked> {
    const tag = `${address.key}\n${address.field}`;
    const chosen = token ?? this.uncertainTokens.get(tag) ?? randomUUID();
    try {
      // Given up on (lockStoreTimeoutMs, close): the attempt stops asking again.
      const attempt = { abandoned: false };
      const acquired = await this.bounded(
        this.acquireWith(address, chosen, how, attempt),
        address.id,
      ).catch((err: unknown) => {
        attempt.abandoned = true;
        throw err;
      });
      this.uncertainTokens.delete(tag);
      return acquired;
    } catch (err) {
      rememberCapped(this.uncertainTokens, tag, chosen);
      throw err;
    }
  }

  private async acquireWith(
    address: RecordAddress,
    token: string,
    how: AskHow,
    attempt: { abandoned: boolean },
  ): Promise<Asked> {
    const o = this.options;
    let unplaced = 0;
    let restored = 0;
    for (;;) {
      // Never take a grant while our liveness channel is empty; a settled record can still be
      // read meanwhile, so a shadow learns the result without waiting for the subscriber.
      const settled = await this.notifier.live(async () =>
        settledReply((await inspect(this.client, address)).raw, o.onPeerFailure),
      );
      if (settled !== undefined) return { reply: settled, sentAt: performance.now(), token };
      const place = await this.placement.near(address.key);
      const sentAt = performance.now();
      const stampEpoch =
        how.claim === undefined ||
        place.sharded ||
        sentAt - this.claimStampedAt >= CLAIM_EPOCH_EVERY_MS;
      if (how.claim !== undefined && stampEpoch) this.claimStampedAt = sentAt;
      const reply = await acquire(
        this.client,
        address,
        {
          member: o.member,
          token,
          leaseMs: o.leaseMs,
          retentionMs: o.retentionMs,
          policy: o.onPeerFailure,
          graceMs: o.livenessGraceMs,
          warmupS: LIVENESS_WARMUP_S,
          liveChannel: place.liveChannel,
          sessionKey: place.sessionKey,
          ...(stampEpoch ? { epochKey: place.epochKey } : {}),
          sharded: place.sharded,
          minFence: how.minFence,
          ...(how.claim ? { claim: how.claim } : {}),
          ...(how.completion === undefined ? {} : { completion: how.completion }),
          waitForClaimMs: how.waitForClaimMs ?? 0,
          channel: this.channel,
          ownGraceMs: this.ownGraceMs(),
        },
        this.replication?.withWrites,
      );
      if (reply.kind === 'granted') {
        // A started claim's run took its place before the answer (`execute`).
        if (how.claim !== 'started') rememberCapped(this.grantPlaces, token, place);
        await this.confirmGrant(address, { token, fence: reply.fence }, reply.acked);
      }
      if (reply.kind === 'unplaced') {
        // Cluster: our slot map is stale (a resharding), or our sharded subscriber on this
        // master is still on its way (a failover): ask again once that has settled.
        if (this.closing) throw new ClosedError('PairedLock');
        if (attempt.abandoned || ++unplaced > UNPLACED_RETRIES) {
          throw unplacedError(reply.what, place);
        }
        if (reply.what === 'moved') (this.client as Cluster).refreshSlotsCache();
        await delay(backoffMs(unplaced, UNPLACED_RETRY_CAP_MS));
        continue;
      }
      if (reply.kind !== 'noSession') return { reply, sentAt, token };
      // Our session key vanished: our runs stop (the twin may take them over) and the key is
      // made anew before any grant, which would otherwise look like a dead owner's at once.
      this.report(new SessionLostError(o.member));
      if (place.session === undefined || restored++ >= 3) throw new SessionLostError(o.member);
      await place.session.restore();
    }
  }

  /**
   * With `durability`: a grant counts only once enough replicas hold it. Otherwise it is given
   * back (released, best-effort) and this throws, as an unreachable lock store would.
   */
  private async confirmGrant(address: RecordAddress, grant: Grant, acked?: number): Promise<void> {
    await this.replication?.grant(
      address.id,
      () =>
        settle(this.client, address, grant, this.options.retentionMs, this.channel, {
          state: 'released',
        }),
      acked,
    );
  }

  /**
   * Reads the record. `markWaiting`: a standby twin's look (the job's chosen executor is the
   * other twin): an absent record is marked 'waiting', and the executor's grant then
   * announces itself on the settle channel.
   */
  async inspect(address: RecordAddress, markWaiting = false): Promise<PairRecord | null> {
    const mark = markWaiting ? this.options.retentionMs : undefined;
    return toPairRecord(address, await inspect(this.client, address, mark));
  }

  /**
   * Runs `fn` as the executor of a granted record, heartbeating its lease, and settles the
   * record according to how the run ended (see `Outcome`). Never throws the routine's error:
   * it comes back inside the outcome. The run itself: src/lock/execute.ts.
   */
  execute<T>(
    address: RecordAddress,
    grant: Grant,
    context: { takeover: TakeoverReason | undefined; attempts: number },
    sentAt: number,
    fn: (ctx: RunContext) => T | Promise<T>,
    signal: AbortSignal | undefined,
    extras: ExecuteExtras = {},
  ): Promise<Outcome<T>> {
    return execute(this.host, address, grant, context, sentAt, fn, signal, extras);
  }

  /**
   * After each read of the slot map (Cluster): the running records whose slot a resharding
   * moved to a master where this process's keys are not are re-stamped with its keys there
   * (made first if new). A failed re-stamp is tried again at the next read.
   */
  private relocateMoved(): void {
    for (const [keeper, was] of this.running) {
      if (was?.session === undefined || this.relocating.has(keeper)) continue;
      if (this.placement.tagOf(keeper.address.key) === was.tag) continue;
      this.relocating.add(keeper);
      void this.placement
        .near(keeper.address.key)
        .then(async (place) => {
          const stamped = await keeper.restamp({
            epochKey: place.epochKey,
            sharded: true,
            sessionKey: place.sessionKey,
            liveChannel: place.liveChannel,
          });
          if (stamped && this.running.has(keeper)) this.running.set(keeper, place);
        })
        .catch((err: unknown) => this.report(asError(err)))
        .finally(() => this.relocating.delete(keeper));
    }
  }

  /** Aborts every running routine's signal with `reason` (a `ClosedError` hands them over). */
  abortAll(reason: unknown): void {
    for (const keeper of this.running.keys()) keeper.abort(reason);
  }

  /** Stops taking work: running routines see their signal abort (a handover). */
  beginClose(): void {
    this.closing = true;
    this.abortAll(new ClosedError('PairedLock'));
    for (const reject of this.waiting) reject();
    this.notifier.wakeAll(); // waiting shadows see the close at once
  }

  /**
   * Waits for the settles sent without waiting (at most `lockStoreTimeoutMs`): a session
   * that ended before its records were stored would hand finished jobs to the twin.
   */
  async flush(): Promise<void> {
    if (this.settling.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.lockStoreTimeoutMs);
    });
    await Promise.race([Promise.allSettled([...this.settling]), bound]);
    clearTimeout(timer);
  }

  /** Ends the subscriber and the session; call once running routines have settled. */
  async close(): Promise<void> {
    await this.flush();
    this.beginClose();
    this.flapGrace.stop();
    await this.notifier.close();
    await this.placement.stop();
  }

  /**
   * This process's liveness channel next to `key` (made first if new), for the siblings of
   * its twin (src/pairing/siblings.ts); undefined with liveness off.
   */
  async channelNear(key: string): Promise<string | undefined> {
    if (!this.options.liveness) return undefined;
    return (await this.placement.near(key)).liveChannel;
  }

  /** How many subscribers each of these liveness channels has (any process's). */
  async subscribers(channels: string[]): Promise<number[]> {
    const owners = channels.map((channel) => ({ channel, sessionKey: '' }));
    const signs = await ownersAlive(this.client, this.placement.sharded, owners);
    return signs.map((sign) => sign.subscribers ?? 0);
  }
}
