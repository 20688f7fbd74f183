import { EventEmitter } from 'node:events';
import { AbortedError, ClosedError, LockStoreUnavailableError, PairedError } from '../errors.js';
import { assertKnownOptions, optionError, show } from '../validate.js';
import { PairCore } from './core.js';
import type { RunContext } from './execute.js';
import type { RecordAddress } from './keys.js';
import { type PairedLockOptions, type ResolvedLockOptions, resolveLockOptions } from './options.js';
import { misconfigured } from './preflight.js';
import { type PairRecord, peerFailure, storedResult } from './record.js';
import { classifyError } from './reply-errors.js';
import { ownerOf, type RedisConnection, type TakeoverReason } from './scripts.js';
import type { Ticket } from './ticket.js';

export type { RunContext } from './execute.js';

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

/** A run that waits on another member's run of its task (the `shadowing` event). */
export interface ShadowingInfo {
  id: string;
  /** The member running it; '' while a chosen executor's claim is awaited. */
  owner: string;
  /** The fence of the run waited on. */
  fence: number;
}

export interface PairedLockEvents {
  /** Background trouble that does not fail a run by itself: heartbeats, subscriber, settle refusals. */
  error: [err: Error];
  /** A run found its task held by another member and waits on it (once per owner and fence). */
  shadowing: [info: ShadowingInfo];
  /** This process takes no grants: its lock-store subscriber is away (half-open, closed, dropped by Redis). */
  subscriberAway: [reason: string];
  /** The subscriber is back: grants resume. */
  subscriberBack: [];
}

const RUN_OPTIONS = ['hash', 'signal'] as const;

/** An execution that lost its lease: the run goes on from a fresh acquire. */
const LEASE_LOST = Symbol('lease lost');

/**
 * Runs a task on exactly one member of a pair at a time, with shadows that return the
 * executor's result or take over when it fails, dies or lets its lease lapse.
 */
export class PairedLock extends EventEmitter<PairedLockEvents> {
  readonly options: Readonly<ResolvedLockOptions>;
  private readonly core: PairCore;
  private readonly active = new Set<Promise<unknown>>();

  constructor(client: RedisConnection, options: PairedLockOptions) {
    super();
    if (typeof client !== 'object' || client === null || typeof client.evalsha !== 'function') {
      throw new TypeError(
        `PairedLock: the first argument must be an ioredis Redis or Cluster, received ${show(client)}`,
      );
    }
    this.options = Object.freeze(resolveLockOptions(options));
    this.core = new PairCore(client, this.options, (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    this.core.onSubscriberAway((reason) => {
      if (reason === undefined) this.emit('subscriberBack');
      else this.emit('subscriberAway', reason);
    });
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
    checkTarget('PairedLock.run', id, options, RUN_OPTIONS);
    if (typeof fn !== 'function') throw new TypeError('PairedLock.run: fn must be a function');
    if (this.core.closing) return Promise.reject(new ClosedError('PairedLock'));
    const task = this.runTask(this.core.address(id, options.hash), fn, options.signal);
    this.active.add(task);
    const forget = (): void => void this.active.delete(task);
    task.then(forget, forget);
    return task;
  }

  /**
   * Checks the lock store and subscribes, as the first `run()` does. Rejects with
   * `LockStoreMisconfiguredError` when the store refuses us for good (a wrong password, an ACL
   * user without the commands, keys or channels needed, a read-only replica, a
   * `maxmemory-policy` that evicts keys unless `allowEviction`), and with
   * `LockStoreUnavailableError` while it is unreachable or does not answer within
   * `lockStoreTimeoutMs` (its `cause`: the connection's error; call again later). Optional: call it at startup to fail fast instead of at the
   * first run.
   */
  waitUntilReady(): Promise<void> {
    if (this.core.closing) return Promise.reject(new ClosedError('PairedLock'));
    return this.core.ready().catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  /** The record of task `id` as stored now, or null when there is none (never run, or past retention). */
  inspect(id: string, options: { hash?: string } = {}): Promise<PairRecord | null> {
    checkTarget('PairedLock.inspect', id, options, ['hash']);
    return this.core.inspect(this.core.address(id, options.hash));
  }

  /**
   * Stops: waiting shadows reject with `ClosedError`; running executors see their signal
   * abort, and a run whose routine then throws *releases* its record so the other member
   * takes over at once. Waits for those routines to settle. The client is not closed.
   */
  async close(): Promise<void> {
    this.core.beginClose();
    await Promise.allSettled([...this.active]);
    await this.core.close();
  }

  private async runTask<T>(
    address: RecordAddress,
    fn: (ctx: RunContext) => T | Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<RunOutcome<T>> {
    await this.core.ready(address.id).catch((err: unknown) => {
      throw unavailable(err, address.id);
    });
    // Registered before each acquire: a settle message may beat the acquire's reply.
    let ticket = this.core.ticket(address);
    try {
      for (;;) {
        const ended = await this.acquireLoop(address, ticket, fn, signal);
        if (ended !== LEASE_LOST) return ended;
        ticket = this.core.ticket(address);
      }
    } finally {
      ticket.close();
    }
  }

  private async acquireLoop<T>(
    address: RecordAddress,
    ticket: Ticket,
    fn: (ctx: RunContext) => T | Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<RunOutcome<T> | typeof LEASE_LOST> {
    let shadowed = '';
    for (let token: string | undefined; ; ) {
      if (this.core.closing) throw new ClosedError('PairedLock');
      if (signal?.aborted) throw new AbortedError(address.id, signal.reason);
      const acquired = await this.core.acquire(address, token).catch((err: unknown) => {
        throw misconfigured(err, this.options.prefix) ?? unavailable(err, address.id);
      });
      token = acquired.token; // the same call keeps its token, so a retried grant is recognised
      const { reply } = acquired;
      switch (reply.kind) {
        case 'granted': {
          ticket.close(); // an executor needs no wake-ups
          const context = { takeover: reply.takeover, attempts: reply.attempts };
          const grant = { token, fence: reply.fence };
          const outcome = await this.core.execute(
            address,
            grant,
            context,
            acquired.sentAt,
            fn,
            signal,
          );
          switch (outcome.kind) {
            case 'completed':
              return {
                role: 'executor',
                result: outcome.result,
                fence: reply.fence,
                owner: this.options.member,
                ...(reply.takeover ? { takeover: reply.takeover } : {}),
              };
            case 'leaseLost':
              // Not the task's failure: the record is released (or already taken over), so
              // this call goes on as a shadow of whoever holds it, or runs it again.
              return LEASE_LOST;
            default:
              // failed, handedOver: the routine's error; superseded: StaleFenceError (the
              // twin holds a higher fence); unstorable: why the result could not be stored.
              throw outcome.error;
          }
        }
        case 'done':
          return {
            role: 'shadow',
            result: storedResult<T>(reply),
            fence: reply.fence,
            owner: reply.owner,
          };
        case 'failed':
          throw peerFailure(address.id, reply);
        case 'busy': {
          const waited = `${reply.owner}\n${reply.fence}`;
          if (waited !== shadowed) {
            shadowed = waited;
            this.emit('shadowing', { id: address.id, owner: reply.owner, fence: reply.fence });
          }
          const waitMs = Math.min(Math.max(reply.recheckMs, 0) + 5, this.options.pollIntervalMs);
          try {
            await ticket.wait(ownerOf(reply), waitMs, signal);
          } catch (reason) {
            throw new AbortedError(address.id, reason);
          }
        }
      }
    }
  }
}

/**
 * A connection error (refused, reset, ioredis' `MaxRetriesPerRequestError`, a closed
 * connection) as `LockStoreUnavailableError`, with it as `cause`; bullmq-paired's own errors
 * (already typed) and permanent refusals (mapped by `misconfigured`) as they are.
 */
function unavailable(err: unknown, id?: string): unknown {
  if (err instanceof PairedError || classifyError(err) !== 'transient') return err;
  return new LockStoreUnavailableError({ id, cause: err });
}

/** The id and `{ hash }` of run() and inspect(): bad ones throw before any Redis call. */
function checkTarget(
  owner: string,
  id: unknown,
  options: { hash?: unknown },
  known: readonly string[],
): void {
  if (typeof id !== 'string' || id.length === 0) {
    throw new TypeError(`${owner}: id must be a non-empty string, received ${show(id)}`);
  }
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${owner}: options must be an object, received ${show(options)}`);
  }
  assertKnownOptions(owner, options, known);
  if (
    options.hash !== undefined &&
    (typeof options.hash !== 'string' || options.hash.length === 0)
  ) {
    throw optionError(owner, 'hash', options.hash, 'a non-empty string');
  }
}
