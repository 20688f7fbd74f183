import {
  asError,
  ClosedError,
  JobCancelledError,
  LeaseLostError,
  type PeerErrorInfo,
  type ResultNotSerializableError,
  type ResultTooLargeError,
  SettleRetryError,
  StaleFenceError,
} from '../errors.js';
import type { Replication } from './durability.js';
import type { RecordAddress } from './keys.js';
import type { ResolvedLockOptions } from './options.js';
import { classifyError } from './reply-errors.js';
import { retryWithBackoff } from './retry.js';
import {
  type Grant,
  type OwnerReply,
  type RedisConnection,
  type Settlement,
  settle,
} from './scripts.js';

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

/** Longest wait between two attempts to settle a record the lock store refused or missed. */
export const SETTLE_RETRY_CAP_MS = 2_000;

export function staleError(
  address: RecordAddress,
  grant: Grant,
  reply: Exclude<OwnerReply, { kind: 'ok' }>,
): StaleFenceError {
  return reply.kind === 'stale'
    ? new StaleFenceError(address.id, grant.fence, reply.fence, reply.state)
    : new StaleFenceError(address.id, grant.fence);
}

export function errorInfo(err: unknown): PeerErrorInfo {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'NonError', message: String(err) };
}

/** What settling needs from the core (`PairCore`): its connection, where it announces, its state. */
export interface SettleHost {
  readonly client: RedisConnection;
  readonly options: Readonly<Pick<ResolvedLockOptions, 'retentionMs'>>;
  /** The settle channel the script publishes on. */
  readonly channel: string;
  /** WAITs after settles (the `durability` option); undefined: off. */
  readonly replication: Replication | undefined;
  report(err: Error): void;
  /** Whether the lock is closing: the retries stop then. */
  isClosing(): boolean;
}

/** Stores how a granted run ended in its record, retried until the lock store takes it. */
export class Settler {
  constructor(private readonly host: SettleHost) {}

  /**
   * The routine threw. Why it stopped decides the record: a close hands the task over
   * (released), a lost lease is not the job's failure (released: the twin, or this member
   * again, runs it), anything else is a failure. A record someone else holds is left alone.
   */
  async settleThrown(
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
      this.host.report(asError(storeError));
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
  async unstorable(
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
  async store(address: RecordAddress, grant: Grant, settlement: Settlement): Promise<OwnerReply> {
    const host = this.host;
    return retryWithBackoff(
      async () => {
        const reply = await settle(
          host.client,
          address,
          grant,
          host.options.retentionMs,
          host.channel,
          settlement,
          host.replication?.withWrites,
        );
        // With `durability`: not on enough replicas yet throws a transient error, so it is retried.
        if (reply.kind === 'ok') {
          await host.replication?.settled(address.id, settlement.state, reply.acked);
        }
        return reply;
      },
      {
        stop: (error) =>
          classifyError(error) === 'ours' || settlement.state === 'released' || host.isClosing(),
        retrying: (error) => host.report(new SettleRetryError(address.id, settlement.state, error)),
        capMs: SETTLE_RETRY_CAP_MS,
      },
    );
  }
}
