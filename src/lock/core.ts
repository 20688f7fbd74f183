import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import {
  asError,
  ClosedError,
  PairedError,
  type PeerErrorInfo,
  ResultNotSerializableError,
  ResultTooLargeError,
  StaleFenceError,
} from '../errors.js';
import {
  livenessChannel,
  type RecordAddress,
  recordAddress,
  sessionKey,
  settleChannel,
} from './keys.js';
import { LeaseKeeper } from './lease-keeper.js';
import { Notifier, type Ticket } from './notifier.js';
import type { ResolvedLockOptions } from './options.js';
import { type PairRecord, toPairRecord } from './record.js';
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
import { Session } from './session.js';

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
}

export type Executed<T> =
  | { kind: 'completed'; result: T }
  /** The routine finished, but another member holds the record now: the result was not stored. */
  | { kind: 'superseded'; error: StaleFenceError };

export interface Acquired {
  reply: AcquireReply;
  /** performance.now() when the acquire was sent: the lease cannot end on Redis before sentAt + lease. */
  sentAt: number;
  token: string;
}

/**
 * After the lock store restarts, every subscriber reconnects on its own schedule (ioredis'
 * default back-off reaches 2 s), so empty liveness channels prove nothing for a while.
 */
export const LIVENESS_WARMUP_S = 10;

/** How long an executor waits between attempts to store its result while the lock store is down. */
const SETTLE_RETRY_MS = 250;

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
  readonly liveChannel: string | undefined;
  /** This process's lease (standalone Redis with liveness on); undefined: per-record leases. */
  readonly session: Session | undefined;
  private readonly notifier: Notifier;
  private started: Promise<void> | undefined;
  private readonly running = new Set<LeaseKeeper>();
  closing = false;

  constructor(
    readonly client: RedisConnection,
    readonly options: Readonly<ResolvedLockOptions>,
    private readonly report: (err: Error) => void,
  ) {
    this.channel = settleChannel(options.prefix);
    // Pub/sub subscriber counts are per node on a Cluster, and session keys would be read
    // across slots: on a Cluster, records keep leases of their own instead.
    const instanceId = randomUUID();
    const sessions = options.liveness && !client.isCluster;
    this.liveChannel = sessions ? livenessChannel(options.prefix, instanceId) : undefined;
    const onSessionLost = (): void => {
      for (const keeper of this.running) keeper.expire();
    };
    this.session = sessions
      ? new Session(
          client,
          sessionKey(options.prefix, instanceId),
          options.leaseMs,
          options.heartbeatMs,
          onSessionLost,
          report,
        )
      : undefined;
    // Our liveness connection dropped and came back: a shadow may have taken over meanwhile.
    const onReconnect = (): void => {
      for (const keeper of this.running) keeper.check();
    };
    this.notifier = new Notifier(
      client,
      this.channel,
      this.liveChannel,
      options.livenessIntervalMs,
      report,
      onReconnect,
    );
  }

  address(id: string, hash?: string): RecordAddress {
    return recordAddress(this.options.prefix, id, hash);
  }

  /** Subscribes (settle channel, own liveness channel) once, before the first acquire. */
  ready(): Promise<void> {
    this.started ??= Promise.all([this.notifier.start(), this.session?.start()])
      .then(() => {})
      .catch((err: unknown) => {
        this.started = undefined;
        throw err;
      });
    return this.started;
  }

  /** Interest in a record's next settle or its executor's death; register it before acquiring. */
  ticket(address: RecordAddress): Ticket {
    return this.notifier.ticket(address.key, address.field);
  }

  async acquire(address: RecordAddress, token: string = randomUUID()): Promise<Acquired> {
    const o = this.options;
    await this.notifier.live(); // never take a grant while our liveness channel is empty
    const sentAt = performance.now();
    const reply = await acquire(this.client, address, {
      member: o.member,
      token,
      leaseMs: o.leaseMs,
      retentionMs: o.retentionMs,
      policy: o.onPeerFailure,
      liveChannel: this.liveChannel ?? '',
      graceMs: o.livenessGraceMs,
      warmupS: LIVENESS_WARMUP_S,
      sessionKey: this.session?.key ?? '',
    });
    return { reply, sentAt, token };
  }

  async inspect(address: RecordAddress): Promise<PairRecord | null> {
    return toPairRecord(address, await inspect(this.client, address));
  }

  /**
   * Runs `fn` as the executor of a granted record, heartbeating its lease, and settles the
   * record: done with the result, or failed (released, when the routine was stopped by a
   * `ClosedError`: a handover) and the routine's error rethrown.
   */
  async execute<T>(
    address: RecordAddress,
    grant: Grant,
    context: { takeover: TakeoverReason | undefined; attempts: number },
    sentAt: number,
    fn: (ctx: RunContext) => T | Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<Executed<T>> {
    const keeper = new LeaseKeeper(
      this.client,
      address,
      grant,
      { ...this.options, perRecord: this.session === undefined },
      sentAt,
      this.report,
    );
    this.running.add(keeper);
    const onAbort = (): void => keeper.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted || this.closing)
      keeper.abort(signal?.reason ?? new ClosedError('PairedLock'));
    const finish = (): void => {
      signal?.removeEventListener('abort', onAbort);
      this.running.delete(keeper);
      keeper.stop();
    };
    let result: T;
    try {
      result = await fn({ id: address.id, fence: grant.fence, signal: keeper.signal, ...context });
    } catch (err) {
      finish();
      // A routine stopped for a shutdown hands the task over, whatever the failure policy.
      const handover = keeper.signal.reason instanceof ClosedError;
      await this.settleQuietly(
        address,
        grant,
        handover
          ? { state: 'released' }
          : { state: 'failed', error: JSON.stringify(errorInfo(err)) },
      );
      throw err;
    }
    finish();
    let serialized: string;
    try {
      serialized = JSON.stringify(result) ?? '';
    } catch (cause) {
      return this.failWith(address, grant, new ResultNotSerializableError(address.id, cause));
    }
    const bytes = Buffer.byteLength(serialized);
    if (bytes > this.options.maxResultBytes) {
      return this.failWith(
        address,
        grant,
        new ResultTooLargeError(address.id, bytes, this.options.maxResultBytes),
      );
    }
    const reply = await this.settleDone(address, grant, serialized);
    if (reply.kind === 'ok') return { kind: 'completed', result };
    const error =
      reply.kind === 'stale'
        ? new StaleFenceError(address.id, grant.fence, reply.fence, reply.state)
        : new StaleFenceError(address.id, grant.fence);
    return { kind: 'superseded', error };
  }

  /** The routine finished but its result cannot be stored: the record fails with `err`. */
  private async failWith(address: RecordAddress, grant: Grant, err: Error): Promise<never> {
    await this.settleQuietly(address, grant, {
      state: 'failed',
      error: JSON.stringify(errorInfo(err)),
    });
    throw err;
  }

  /** Stores the result: the work is done, and giving up would let the twin run it again. */
  private settleDone(address: RecordAddress, grant: Grant, result: string): Promise<OwnerReply> {
    return this.store(address, grant, { state: 'done', result });
  }

  /** Records a failure or release; a refusal or error here must never hide the routine's error. */
  private async settleQuietly(
    address: RecordAddress,
    grant: Grant,
    settlement: Settlement,
  ): Promise<void> {
    try {
      const reply = await this.store(address, grant, settlement);
      if (reply.kind === 'stale')
        this.report(new StaleFenceError(address.id, grant.fence, reply.fence, reply.state));
    } catch (err) {
      this.report(asError(err));
    }
  }

  /**
   * Settles the record, retrying while the lock store is unreachable: a record left `running`
   * under this live process would keep the twin waiting as long as the process lives (its
   * session and liveness channel vouch for it). Settling twice is harmless (the script
   * recognises its own fence); a takeover meanwhile shows up as a refusal. Throws what
   * retrying cannot change: a refusal of ours (the record was overwritten:
   * `CorruptRecordError`) or of Redis' (`ReplyError`, e.g. NOPERM). A release is tried once:
   * it is a handover by a process that is leaving, whose `worker.close()` must not wait for
   * the store; its session and liveness go with it, so the twin takes over.
   */
  private async store(
    address: RecordAddress,
    grant: Grant,
    settlement: Settlement,
  ): Promise<OwnerReply> {
    for (;;) {
      try {
        return await settle(
          this.client,
          address,
          grant,
          this.options.retentionMs,
          this.channel,
          settlement,
        );
      } catch (err) {
        const error = asError(err);
        if (
          error instanceof PairedError ||
          error.name === 'ReplyError' ||
          settlement.state === 'released' ||
          this.closing
        ) {
          throw error;
        }
        this.report(error);
        await delay(SETTLE_RETRY_MS);
      }
    }
  }

  /** Aborts every running routine's signal with `reason` (a `ClosedError` hands them over). */
  abortAll(reason: unknown): void {
    for (const keeper of this.running) keeper.abort(reason);
  }

  /** Stops taking work: running routines see their signal abort (a handover). */
  beginClose(): void {
    this.closing = true;
    this.abortAll(new ClosedError('PairedLock'));
    this.notifier.wakeAll(); // waiting shadows see the close at once
  }

  /** Ends the subscriber and the session; call once running routines have settled. */
  async close(): Promise<void> {
    this.beginClose();
    await this.notifier.close();
    await this.session?.stop();
  }
}
