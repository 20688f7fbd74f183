/**
 * Every error bullmq-paired throws on purpose extends `PairedError` and carries a stable
 * `code`, so callers can branch on `err.code` without parsing messages.
 */
export type PairedErrorCode =
  | 'ERR_PAIRED_LEASE_LOST'
  | 'ERR_PAIRED_STALE_FENCE'
  | 'ERR_PAIRED_PEER_FAILED'
  | 'ERR_PAIRED_CORRUPT_RECORD'
  | 'ERR_PAIRED_RESULT_NOT_SERIALIZABLE'
  | 'ERR_PAIRED_CLOSED'
  | 'ERR_PAIRED_ABORTED';

export class PairedError extends Error {
  readonly code: PairedErrorCode;

  constructor(code: PairedErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Why an executor lost its lease. */
export type LeaseLossReason =
  /** Another member holds the record now, with a higher fence. */
  | 'superseded'
  /** No heartbeat got through before the lease ran out (e.g. the lock store is unreachable). */
  | 'expired'
  /** The record disappeared (its retention passed while the task still ran). */
  | 'missing';

/** The reason an executor's `signal` aborts with when its lease is lost. */
export class LeaseLostError extends PairedError {
  readonly id: string;
  readonly fence: number;
  readonly reason: LeaseLossReason;
  /** The fence that holds the record now, when known. */
  readonly currentFence: number | undefined;

  constructor(id: string, fence: number, reason: LeaseLossReason, currentFence?: number) {
    super(
      'ERR_PAIRED_LEASE_LOST',
      `lease on "${id}" lost (fence ${fence}, ${reason}${currentFence === undefined ? '' : `, record now at fence ${currentFence}`}): stop work and do not publish effects without checking the fence`,
    );
    this.id = id;
    this.fence = fence;
    this.reason = reason;
    this.currentFence = currentFence;
  }
}

/** A heartbeat, complete, fail or release by an owner that is no longer the owner. */
export class StaleFenceError extends PairedError {
  readonly id: string;
  readonly fence: number;
  readonly currentFence: number | undefined;
  readonly currentState: string | undefined;

  constructor(id: string, fence: number, currentFence?: number, currentState?: string) {
    super(
      'ERR_PAIRED_STALE_FENCE',
      `"${id}" refused fence ${fence}: the record is ${currentState ?? 'gone'}${currentFence === undefined ? '' : ` at fence ${currentFence}`}; another member took over, so this result was not stored`,
    );
    this.id = id;
    this.fence = fence;
    this.currentFence = currentFence;
    this.currentState = currentState;
  }
}

/** What a failed executor left in the record: never a stack, never job data. */
export interface PeerErrorInfo {
  name: string;
  message: string;
  code?: string;
}

/** With `onPeerFailure: 'respect'`, a shadow rejects with this when the executor failed. */
export class PeerFailedError extends PairedError {
  readonly id: string;
  readonly fence: number;
  readonly owner: string;
  readonly peerError: PeerErrorInfo | undefined;

  constructor(id: string, fence: number, owner: string, peerError?: PeerErrorInfo) {
    super(
      'ERR_PAIRED_PEER_FAILED',
      `"${id}" failed on member "${owner}" (fence ${fence}): ${peerError ? `${peerError.name}: ${peerError.message}` : 'no error recorded'}; use onPeerFailure: 'takeover' to run it here instead`,
    );
    this.id = id;
    this.fence = fence;
    this.owner = owner;
    this.peerError = peerError;
  }
}

export class CorruptRecordError extends PairedError {
  readonly key: string;

  constructor(key: string, field: string) {
    super(
      'ERR_PAIRED_CORRUPT_RECORD',
      `the pair record at ${field ? `${key} field ${field}` : key} is not a record bullmq-paired wrote; delete it (it holds no job data) to let the task run`,
    );
    this.key = key;
  }
}

export class ResultNotSerializableError extends PairedError {
  constructor(id: string, cause: unknown) {
    super(
      'ERR_PAIRED_RESULT_NOT_SERIALIZABLE',
      `the result of "${id}" cannot be stored as JSON (${cause instanceof Error ? cause.message : String(cause)}): return plain JSON data`,
      { cause },
    );
  }
}

export class ClosedError extends PairedError {
  constructor(what: string) {
    super('ERR_PAIRED_CLOSED', `${what} is closed: create a new instance`);
  }
}

/** A shadow stopped waiting because the caller's `signal` aborted. */
export class AbortedError extends PairedError {
  constructor(id: string, cause: unknown) {
    super('ERR_PAIRED_ABORTED', `waiting for "${id}" was aborted by the caller's signal`, {
      cause,
    });
  }
}
