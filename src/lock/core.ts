import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import type { Cluster } from 'ioredis';
import {
  asError,
  ClosedError,
  CorruptRecordError,
  JobCancelledError,
  LeaseLostError,
  LivenessSubscriberError,
  LockStoreUnavailableError,
  type PeerErrorInfo,
  ResultNotSerializableError,
  ResultTooLargeError,
  SessionLostError,
  SettleRetryError,
  StaleFenceError,
} from '../errors.js';
import { Replication } from './durability.js';
import { type RecordAddress, recordAddress, settleChannel } from './keys.js';
import { LeaseKeeper } from './lease-keeper.js';
import { Notifier } from './notifier.js';
import type { ResolvedLockOptions } from './options.js';
import { ownersAlive } from './owners.js';
import { type Place, Placement } from './placement.js';
import { misconfigured, preflight } from './preflight.js';
import { type PairRecord, settledReply, toPairRecord } from './record.js';
import { backoffMs, classifyError } from './reply-errors.js';
import { retryWithBackoff } from './retry.js';
import {
  type AcquireReply,
  acquire,
  type Grant,
  inspect,
  type OwnerReply,
  type RedisConnection,
  type Settlement,
  settle,
  type TakeoverReason,
} from './scripts.js';
import type { Ticket } from './ticket.js';

/** What an executor's routine receives. */
export interface RunContext {
  id: string;
  /** Grows by one with every grant of this task: pass it to your sink to reject stale writes. */
  fence: number;
  /** Aborts when the lease is lost (`LeaseLostError`), the caller's signal aborts, or the lock closes. */
  signal: AbortSignal;
  /** Set when this run took the task over from another member. */
  takeover: TakeoverReason | undefined;
  /** Grants so far, this one included. */
  attempts: number;
  /**
   * Throws `LeaseLostError` when the lease may be over on this process's own clock, even if
   * the abort has not been delivered yet (an event loop that was frozen runs its due timers
   * in any order). Call it synchronously right before each side effect, with the fence.
   */
  assertLease: () => void;
}

/**
 * How a granted run ended, as data: the callers (`PairedLock.run`, `PairedProcessor`) act on
 * it instead of guessing from error classes.
 * - `completed`: the routine returned and its result is stored.
 * - `failed`: the routine threw; the record says failed (the twin takes over, or fails too
 *   under `onPeerFailure: 'respect'`).
 * - `handedOver`: the routine was stopped by a close (a `ClosedError`); the record is released.
 * - `leaseLost`: the lease was lost while it ran (frozen, cut off, session gone) and the
 *   routine threw; the record is released, never failed: the job is not over.
 * - `superseded`: another member holds the record now (a higher fence); nothing was stored.
 * - `unstorable`: the routine returned a result the record cannot hold; the pair is failed
 *   for good, so the twin does not run a job that succeeded.
 */
export type Outcome<T> =
  | { kind: 'completed'; result: T }
  | { kind: 'failed'; error: unknown }
  | { kind: 'handedOver'; error: unknown }
  | { kind: 'leaseLost'; error: unknown; lost: LeaseLostError }
  | { kind: 'superseded'; error: StaleFenceError; thrown?: unknown }
  | { kind: 'unstorable'; error: ResultNotSerializableError | ResultTooLargeError };

function staleError(
  address: RecordAddress,
  grant: Grant,
  reply: Exclude<OwnerReply, { kind: 'ok' }>,
): StaleFenceError {
  return reply.kind === 'stale'
    ? new StaleFenceError(address.id, grant.fence, reply.fence, reply.state)
    : new StaleFenceError(address.id, grant.fence);
}

export interface Acquired {
  reply: Exclude<AcquireReply, { kind: 'noSession' | 'taken' | 'unplaced' }>;
  /** performance.now() when the acquire was sent: the lease cannot end on Redis before sentAt + lease. */
  sentAt: number;
  token: string;
}

/**
 * After the lock store restarts, every subscriber reconnects on its own schedule (ioredis'
 * default back-off reaches 2 s), so empty liveness channels prove nothing for a while.
 */
export const LIVENESS_WARMUP_S = 10;

/** What one acquire script call answered (a lost session already handled), and when it was sent. */
interface Asked {
  reply: Exclude<AcquireReply, { kind: 'noSession' | 'unplaced' }>;
  sentAt: number;
  token: string;
}

/** How an acquire asks: lowest fence, a claim, how long a 'waiting' record is left to a claim. */
interface AskHow {
  minFence: number;
  claim?: boolean;
  waitForClaimMs?: number;
}

/** A claim's answer: granted (fence 1), or the record another grant holds or held. */
export type ClaimReply = Extract<AcquireReply, { kind: 'granted' | 'taken' }>;

/** What `execute` may be given beyond the grant. */
export interface ExecuteExtras {
  /** What to keep with the result for the shadows (a processor's last progress). */
  progress?: () => unknown;
  /**
   * The run starts before its grant is answered (a job's chosen executor, fence 1): this
   * claim decides. Refused (another grant holds or held the record), the routine's signal
   * aborts with a `StaleFenceError` and the outcome is `superseded`; a claim that fails
   * (lock store unreachable) aborts it with a `LeaseLostError` (`leaseLost`, released).
   */
  claim?: Promise<ClaimReply>;
  /**
   * Resolve `completed` as soon as the result is sent, without waiting for the lock store to
   * store it: the settle goes on in the background, retried until stored, and `late` hears
   * how it ended when that was not as stored (superseded, or given up at close). The store
   * executes the claim, then the settle, in the order sent on the one connection.
   */
  pipeline?: (late: { error: Error }) => void;
}

/** Tokens of acquires whose replies were lost, kept at most (one per record in doubt). */
const MAX_UNCERTAIN_TOKENS = 10_000;

/** Longest wait between two attempts to settle a record the lock store refused or missed. */
const SETTLE_RETRY_CAP_MS = 2_000;
/** Longest pause between acquires a Cluster answered `unplaced` (see the acquire script). */
const UNPLACED_RETRY_CAP_MS = 1_000;
/** How many such answers in a row before the acquire fails (transient: the copy parks). */
const UNPLACED_RETRIES = 20;

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

export function errorInfo(err: unknown): PeerErrorInfo {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'NonError', message: String(err) };
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
  /** WAITs after grants and settles (the `durability` option); undefined: off. */
  private readonly replication: Replication | undefined;
  closing = false;

  constructor(
    readonly client: RedisConnection,
    readonly options: Readonly<ResolvedLockOptions>,
    private readonly report: (err: Error) => void,
  ) {
    this.channel = settleChannel(options.prefix);
    this.replication = options.durability && new Replication(client, options.durability);
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
    );
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
   * Claims the record for a run that has already started with fence 1 (the job's chosen
   * executor, see `ExecuteExtras.claim`): granted while nobody else holds it, else `taken`.
   */
  async claim(
    address: RecordAddress,
    token: string,
  ): Promise<{ reply: ClaimReply; sentAt: number; token: string }> {
    const asked = await this.ask(address, token, { minFence: 1, claim: true });
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
    const derived = Math.min(3 * this.notifier.rttMs + 50, this.options.leaseMs / 4);
    return Math.ceil(Math.max(this.options.livenessGraceMs, derived));
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
          epochKey: place.epochKey,
          sharded: place.sharded,
          minFence: how.minFence,
          claim: how.claim === true,
          waitForClaimMs: how.waitForClaimMs ?? 0,
          channel: this.channel,
          ownGraceMs: this.ownGraceMs(),
        },
        this.replication?.withWrites,
      );
      if (reply.kind === 'granted') {
        // A claim's run started before its answer and took its place then (`execute`).
        if (how.claim !== true) rememberCapped(this.grantPlaces, token, place);
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
   * it comes back inside the outcome.
   */
  async execute<T>(
    address: RecordAddress,
    grant: Grant,
    context: { takeover: TakeoverReason | undefined; attempts: number },
    sentAt: number,
    fn: (ctx: RunContext) => T | Promise<T>,
    signal: AbortSignal | undefined,
    extras: ExecuteExtras = {},
  ): Promise<Outcome<T>> {
    const { progress, claim, pipeline } = extras;
    // Where the grant named our keys. A run started before its claim is answered takes the
    // place there is now: undefined only for a master this process has not used yet; the
    // record's own lease then counts.
    const place = this.grantPlaces.get(grant.token) ?? this.placement.nearNow(address.key);
    this.grantPlaces.delete(grant.token);
    const session = place?.session;
    const keeper = new LeaseKeeper(
      this.client,
      address,
      grant,
      {
        ...this.options,
        perRecord: session === undefined,
        // Per-record heartbeats come more often than the warm-up, which keeps a live record
        // younger than any epoch that could orphan it: stamping the epoch (an INFO) each beat
        // buys nothing. Under a session a record is refreshed every retention / 3: stamp then.
        epochKey:
          session === undefined && this.options.heartbeatMs < LIVENESS_WARMUP_S * 1000
            ? ''
            : (place?.epochKey ?? ''),
        sharded: this.placement.sharded,
      },
      sentAt,
      this.report,
    );
    this.running.set(keeper, place);
    const onAbort = (): void => keeper.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted || this.closing)
      keeper.abort(signal?.reason ?? new ClosedError('PairedLock'));
    const finish = (): void => {
      signal?.removeEventListener('abort', onAbort);
      this.running.delete(keeper);
      keeper.stop();
    };
    const assertLease = (): void => keeper.assert(session?.deadlineAt);
    // A run started before its grant: until the claim is answered the record may be another's.
    let refused: StaleFenceError | undefined;
    claim?.then(
      (reply) => {
        if (reply.kind === 'granted') return;
        refused = new StaleFenceError(address.id, grant.fence, reply.fence, reply.state);
        keeper.abort(refused);
      },
      (err: unknown) => {
        // Unanswered: the grant is unknown, so the run stops as after a lost lease (released).
        const lost = new LeaseLostError(address.id, grant.fence, 'expired');
        keeper.abort(Object.assign(lost, { cause: asError(err) }));
      },
    );
    let result: T;
    try {
      result = await fn({
        id: address.id,
        fence: grant.fence,
        signal: keeper.signal,
        assertLease,
        ...context,
      });
    } catch (err) {
      finish();
      if (refused) return { kind: 'superseded', error: refused, thrown: err };
      await claim?.catch(() => {}); // a release must not overtake its own claim
      return this.settleThrown(address, grant, keeper.signal.reason, err);
    }
    finish();
    if (refused) return { kind: 'superseded', error: refused };
    let serialized: string;
    try {
      serialized = JSON.stringify(result) ?? '';
    } catch (cause) {
      return this.unstorable(address, grant, new ResultNotSerializableError(address.id, cause));
    }
    const bytes = Buffer.byteLength(serialized);
    if (bytes > this.options.maxResultBytes) {
      return this.unstorable(
        address,
        grant,
        new ResultTooLargeError(address.id, bytes, this.options.maxResultBytes),
      );
    }
    const reported = progress?.();
    const settlement: Settlement = {
      state: 'done',
      result: serialized,
      ...(reported === undefined ? {} : { progress: JSON.stringify(reported) }),
    };
    // After a claim, the result is stored only once the claim is granted: a claim re-sent
    // (a lost session made anew, a reply lost) could otherwise land after the result was
    // refused, leaving a grant nobody runs under a live process.
    const stored: Promise<OwnerReply> =
      claim === undefined
        ? this.store(address, grant, settlement)
        : this.claimAnswer(address, grant.token, claim).then((answer) =>
            answer.kind === 'granted'
              ? this.store(address, grant, settlement)
              : { kind: 'stale', state: answer.state, fence: answer.fence, owner: answer.owner },
          );
    if (pipeline !== undefined) {
      // Completed for BullMQ now; stored in the background. A process that dies before the
      // result lands leaves the record running under a dead owner: the twin runs the job
      // again, fenced higher.
      const settling = stored.then(
        (reply) => {
          if (reply.kind !== 'ok') pipeline({ error: staleError(address, grant, reply) });
        },
        (err: unknown) => pipeline({ error: asError(err) }),
      );
      this.settling.add(settling);
      void settling.finally(() => this.settling.delete(settling));
      return { kind: 'completed', result };
    }
    const reply = await stored;
    if (reply.kind === 'ok') return { kind: 'completed', result };
    return { kind: 'superseded', error: staleError(address, grant, reply) };
  }

  /**
   * The claim's answer, asking again with the same token while it cannot be had (the script
   * recognises its own token and keeps that grant). Throws only once the lock is closing, or
   * on a refusal of ours.
   */
  private async claimAnswer(
    address: RecordAddress,
    token: string,
    first: Promise<ClaimReply>,
  ): Promise<ClaimReply> {
    return retryWithBackoff(
      (n) => (n === 0 ? first : this.claim(address, token).then((claimed) => claimed.reply)),
      {
        stop: (error) => this.closing || classifyError(error) === 'ours',
        retrying: (error) => this.report(error),
        capMs: SETTLE_RETRY_CAP_MS,
      },
    );
  }

  /**
   * The routine threw. Why it stopped decides the record: a close hands the task over
   * (released), a lost lease is not the job's failure (released: the twin, or this member
   * again, runs it), anything else is a failure. A record someone else holds is left alone.
   */
  private async settleThrown(
    address: RecordAddress,
    grant: Grant,
    stopReason: unknown,
    err: unknown,
  ): Promise<Outcome<never>> {
    const handover = stopReason instanceof ClosedError;
    const lost = stopReason instanceof LeaseLostError ? stopReason : undefined;
    // A run its caller cancelled (BullMQ's cancelJob) is over for the pair: final, as an
    // unstorable result is, so the twin fails it too instead of taking it over.
    const settlement: Settlement =
      handover || lost
        ? { state: 'released' }
        : {
            state: 'failed',
            error: JSON.stringify(errorInfo(err)),
            ...(err instanceof JobCancelledError ? { final: true } : {}),
          };
    let reply: OwnerReply;
    try {
      reply = await this.store(address, grant, settlement);
    } catch (storeError) {
      // A release that could not be made (the store is down, or a refusal of ours): the
      // session or the record's lease runs out by itself and the twin takes over then.
      this.report(asError(storeError));
      reply = { kind: 'ok' };
    }
    if (reply.kind !== 'ok') {
      return { kind: 'superseded', error: staleError(address, grant, reply), thrown: err };
    }
    if (handover) return { kind: 'handedOver', error: err };
    if (lost) return { kind: 'leaseLost', error: err, lost };
    return { kind: 'failed', error: err };
  }

  /**
   * The routine finished but its result cannot be stored. The work was done, so the twin must
   * not run it again: the record fails for good (`final`), whatever `onPeerFailure` says.
   */
  private async unstorable(
    address: RecordAddress,
    grant: Grant,
    error: ResultNotSerializableError | ResultTooLargeError,
  ): Promise<Outcome<never>> {
    const reply = await this.store(address, grant, {
      state: 'failed',
      error: JSON.stringify(errorInfo(error)),
      final: true,
    });
    if (reply.kind !== 'ok')
      return { kind: 'superseded', error: staleError(address, grant, reply) };
    return { kind: 'unstorable', error };
  }

  /**
   * Settles the record, retrying until the lock store takes it: a record left `running` under
   * this live process would keep the twin waiting as long as the process lives (its session
   * and liveness channel vouch for it). Every reply Redis can give is retried with back-off:
   * a transient one (connection, LOADING, READONLY during a failover, OOM, NOREPLICAS…) clears
   * by itself, and a permanent one (NOPERM, WRONGPASS…) clears once a person fixes the store;
   * either way the record must end settled, and each refusal is reported. Settling twice is
   * harmless (the script recognises its own fence); a takeover meanwhile shows up as a
   * refusal. Throws only a refusal of ours (`CorruptRecordError`), or once the lock is
   * closing: the process is leaving, its session and liveness go with it, and the twin takes
   * over. A release is tried once: it is a handover by a process that is leaving, whose
   * `worker.close()` must not wait for the store.
   */
  private async store(
    address: RecordAddress,
    grant: Grant,
    settlement: Settlement,
  ): Promise<OwnerReply> {
    return retryWithBackoff(
      async () => {
        const reply = await settle(
          this.client,
          address,
          grant,
          this.options.retentionMs,
          this.channel,
          settlement,
          this.replication?.withWrites,
        );
        // With `durability`: not on enough replicas yet throws a transient error, so it is retried.
        if (reply.kind === 'ok') {
          await this.replication?.settled(address.id, settlement.state, reply.acked);
        }
        return reply;
      },
      {
        stop: (error) =>
          classifyError(error) === 'ours' || settlement.state === 'released' || this.closing,
        retrying: (error) => this.report(new SettleRetryError(address.id, settlement.state, error)),
        capMs: SETTLE_RETRY_CAP_MS,
      },
    );
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
