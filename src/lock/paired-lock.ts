import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import {
  AbortedError,
  ClosedError,
  type PeerErrorInfo,
  PeerFailedError,
  ResultNotSerializableError,
  StaleFenceError,
} from '../errors.js';
import { assertKnownOptions, optionError } from '../validate.js';
import { livenessChannel, type RecordAddress, recordAddress, settleChannel } from './keys.js';
import { LeaseKeeper } from './lease-keeper.js';
import { Notifier, type Ticket } from './notifier.js';
import { type PairedLockOptions, type ResolvedLockOptions, resolveLockOptions } from './options.js';
import { type PairRecord, parseJson, toPairRecord } from './record.js';
import {
  acquire,
  type Grant,
  inspect,
  type RedisConnection,
  type Settlement,
  settle,
  type TakeoverReason,
} from './scripts.js';

/** What the routine passed to `run` receives. */
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

export interface RunOptions {
  /** Store the record as a field of this hash (the seed's `hlock`) instead of its own key. */
  hash?: string;
  /** Stop waiting (shadow) or abort the routine's signal (executor). */
  signal?: AbortSignal;
}

export interface RunOutcome<T> {
  /** `executor`: this call ran the routine. `shadow`: another member did, and this is its result. */
  role: 'executor' | 'shadow';
  result: T;
  /** The fence of the run that produced `result`. */
  fence: number;
  /** The member that produced `result`. */
  owner: string;
  takeover?: TakeoverReason;
}

export interface PairedLockEvents {
  /** Background trouble that does not fail a run by itself: heartbeats, subscriber, settle refusals. */
  error: [err: Error];
}

const RUN_OPTIONS = ['hash', 'signal'] as const;

function errorInfo(err: unknown): PeerErrorInfo {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'NonError', message: String(err) };
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * Runs a task on exactly one member of a pair at a time, with shadows that return the
 * executor's result or take over when it fails, dies or lets its lease lapse.
 */
export class PairedLock extends EventEmitter<PairedLockEvents> {
  readonly options: Readonly<ResolvedLockOptions>;
  private readonly notifier: Notifier;
  private readonly channel: string;
  private readonly liveChannel: string | undefined;
  private started: Promise<void> | undefined;
  private readonly running = new Set<LeaseKeeper>();
  private readonly active = new Set<Promise<unknown>>();
  private closing = false;

  constructor(
    private readonly client: RedisConnection,
    options: PairedLockOptions,
  ) {
    super();
    if (typeof client !== 'object' || client === null || typeof client.evalsha !== 'function') {
      throw new TypeError(
        `PairedLock: the first argument must be an ioredis Redis or Cluster, received ${String(client)}`,
      );
    }
    this.options = Object.freeze(resolveLockOptions(options));
    this.channel = settleChannel(this.options.prefix);
    // Pub/sub subscriber counts are per node on a Cluster, so liveness would lie there.
    this.liveChannel =
      this.options.liveness && !client.isCluster
        ? livenessChannel(this.options.prefix, randomUUID())
        : undefined;
    this.notifier = new Notifier(
      client,
      this.channel,
      this.liveChannel,
      this.options.livenessIntervalMs,
      (err) => this.report(err),
    );
  }

  /**
   * Runs `fn` for task `id` unless another member is running it or has run it.
   * Resolves with the result of whichever member ran it; rejects with `fn`'s error when this
   * member ran it and it threw, or with `PeerFailedError` under `onPeerFailure: 'respect'`.
   */
  run<T>(
    id: string,
    fn: (ctx: RunContext) => T | Promise<T>,
    options: RunOptions = {},
  ): Promise<RunOutcome<T>> {
    if (typeof id !== 'string' || id.length === 0) {
      throw new TypeError(`PairedLock.run: id must be a non-empty string, received ${String(id)}`);
    }
    if (typeof fn !== 'function') throw new TypeError('PairedLock.run: fn must be a function');
    assertKnownOptions('PairedLock.run', options, RUN_OPTIONS);
    if (
      options.hash !== undefined &&
      (typeof options.hash !== 'string' || options.hash.length === 0)
    ) {
      throw optionError('PairedLock.run', 'hash', options.hash, 'a non-empty string');
    }
    if (this.closing) return Promise.reject(new ClosedError('PairedLock'));
    const address = recordAddress(this.options.prefix, id, options.hash);
    const task = this.runTask(address, fn, options.signal);
    this.active.add(task);
    const forget = (): void => void this.active.delete(task);
    task.then(forget, forget);
    return task;
  }

  /** The record of task `id` as stored now, or null when there is none (never run, or past retention). */
  async inspect(id: string, options: { hash?: string } = {}): Promise<PairRecord | null> {
    const address = recordAddress(this.options.prefix, id, options.hash);
    return toPairRecord(address, await inspect(this.client, address));
  }

  /**
   * Stops: waiting shadows reject with `ClosedError`; running executors see their signal
   * abort, and a run whose routine then throws *releases* its record so the other member
   * takes over at once. Waits for those routines to settle. The client is not closed.
   */
  async close(): Promise<void> {
    if (this.closing) {
      await Promise.allSettled([...this.active]);
      return;
    }
    this.closing = true;
    for (const keeper of this.running) keeper.abort(new ClosedError('PairedLock'));
    await this.notifier.close();
    await Promise.allSettled([...this.active]);
  }

  private ready(): Promise<void> {
    this.started ??= this.notifier.start().catch((err: unknown) => {
      this.started = undefined;
      throw err;
    });
    return this.started;
  }

  private async runTask<T>(
    address: RecordAddress,
    fn: (ctx: RunContext) => T | Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<RunOutcome<T>> {
    await this.ready();
    const ticket = this.notifier.ticket(address.key, address.field);
    try {
      return await this.acquireLoop(address, ticket, fn, signal);
    } finally {
      ticket.close();
    }
  }

  private async acquireLoop<T>(
    address: RecordAddress,
    ticket: Ticket,
    fn: (ctx: RunContext) => T | Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<RunOutcome<T>> {
    const token = randomUUID();
    const o = this.options;
    for (;;) {
      if (this.closing) throw new ClosedError('PairedLock');
      if (signal?.aborted) throw new AbortedError(address.id, signal.reason);
      const sentAt = performance.now();
      const reply = await acquire(this.client, address, {
        member: o.member,
        token,
        leaseMs: o.leaseMs,
        retentionMs: o.retentionMs,
        policy: o.onPeerFailure,
        liveChannel: this.liveChannel ?? '',
        graceMs: o.livenessGraceMs,
      });
      switch (reply.kind) {
        case 'granted':
          ticket.close(); // an executor needs no wake-ups
          return this.execute(address, { token, fence: reply.fence }, reply, sentAt, fn, signal);
        case 'done':
          return {
            role: 'shadow',
            result: parseJson<T>(reply.result) as T,
            fence: reply.fence,
            owner: reply.owner,
          };
        case 'failed':
          throw new PeerFailedError(
            address.id,
            reply.fence,
            reply.owner,
            parseJson<PeerErrorInfo>(reply.error),
          );
        case 'busy': {
          const waitMs = Math.min(Math.max(reply.recheckMs, 0) + 5, o.pollIntervalMs);
          try {
            await ticket.wait(reply.ownerChannel, waitMs, signal);
          } catch (reason) {
            throw new AbortedError(address.id, reason);
          }
        }
      }
    }
  }

  private async execute<T>(
    address: RecordAddress,
    grant: Grant,
    granted: { takeover: TakeoverReason | undefined; attempts: number },
    sentAt: number,
    fn: (ctx: RunContext) => T | Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<RunOutcome<T>> {
    const o = this.options;
    const keeper = new LeaseKeeper(this.client, address, grant, o, sentAt, (err) =>
      this.report(err),
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
      result = await fn({
        id: address.id,
        fence: grant.fence,
        signal: keeper.signal,
        takeover: granted.takeover,
        attempts: granted.attempts,
      });
    } catch (err) {
      finish();
      // Closing hands the task over regardless of the peer's failure policy.
      const closed = this.closing && keeper.signal.reason instanceof ClosedError;
      await this.settleQuietly(
        address,
        grant,
        closed ? { state: 'released' } : { state: 'failed', error: JSON.stringify(errorInfo(err)) },
      );
      throw err;
    }
    finish();
    let serialized: string;
    try {
      serialized = JSON.stringify(result) ?? '';
    } catch (cause) {
      const err = new ResultNotSerializableError(address.id, cause);
      await this.settleQuietly(address, grant, {
        state: 'failed',
        error: JSON.stringify(errorInfo(err)),
      });
      throw err;
    }
    const reply = await settle(this.client, address, grant, o.retentionMs, this.channel, {
      state: 'done',
      result: serialized,
    });
    if (reply.kind === 'stale')
      throw new StaleFenceError(address.id, grant.fence, reply.fence, reply.state);
    if (reply.kind === 'missing') throw new StaleFenceError(address.id, grant.fence);
    return {
      role: 'executor',
      result,
      fence: grant.fence,
      owner: o.member,
      ...(granted.takeover ? { takeover: granted.takeover } : {}),
    };
  }

  /** Records a failure or release; a refusal or error here must never hide the routine's error. */
  private async settleQuietly(
    address: RecordAddress,
    grant: Grant,
    settlement: Settlement,
  ): Promise<void> {
    try {
      const reply = await settle(
        this.client,
        address,
        grant,
        this.options.retentionMs,
        this.channel,
        settlement,
      );
      if (reply.kind === 'stale')
        this.report(new StaleFenceError(address.id, grant.fence, reply.fence, reply.state));
    } catch (err) {
      this.report(asError(err));
    }
  }

  private report(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
