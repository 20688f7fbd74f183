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
  | 'ERR_PAIRED_RESULT_TOO_LARGE'
  | 'ERR_PAIRED_CLOSED'
  | 'ERR_PAIRED_ABORTED'
  | 'ERR_PAIRED_INVALID_JOB_ID'
  | 'ERR_PAIRED_PARTIAL_ADD'
  | 'ERR_PAIRED_LOCK_STORE_DOWN';

/** Anything thrown, as an Error (for 'error' events, which take only Errors). */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

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

export class ResultTooLargeError extends PairedError {
  readonly bytes: number;
  readonly maxBytes: number;

  constructor(id: string, bytes: number, maxBytes: number) {
    super(
      'ERR_PAIRED_RESULT_TOO_LARGE',
      `the result of "${id}" is ${bytes} bytes as JSON, over maxResultBytes (${maxBytes}): store large results elsewhere and return a reference, or raise maxResultBytes`,
    );
    this.bytes = bytes;
    this.maxBytes = maxBytes;
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

/** A job id that BullMQ refuses or that cannot name a pair (digits only, ':' , empty). */
export class InvalidJobIdError extends PairedError {
  readonly jobId: unknown;

  constructor(jobId: unknown, problem: string) {
    super(
      'ERR_PAIRED_INVALID_JOB_ID',
      `job id ${JSON.stringify(jobId) ?? String(jobId)} ${problem}; use a string with at least one non-digit and no ":" (e.g. "n-123"), or leave jobId out to get a generated one`,
    );
    this.jobId = jobId;
  }
}

/** Fan-out to two Redis servers that reached only one of them: says which twin has the job. */
export class PartialAddError extends PairedError {
  readonly jobIds: string[];
  /** Twins that hold the job(s) now. */
  readonly added: string[];
  /** Twins that refused, with their errors. */
  readonly failed: Record<string, Error>;

  constructor(jobIds: string[], added: string[], failed: Record<string, Error>) {
    const reasons = Object.entries(failed)
      .map(([twin, err]) => `${twin}: ${err.message}`)
      .join('; ');
    super(
      'ERR_PAIRED_PARTIAL_ADD',
      `job ${jobIds.length === 1 ? `"${jobIds[0]}"` : `ids ${jobIds.join(', ')}`} reached only twin(s) ${added.join(', ') || 'none'} (${reasons}); the added copies will run there. Add again with the same job id(s) to complete the pair: BullMQ ignores a duplicate id`,
    );
    this.jobIds = jobIds;
    this.added = added;
    this.failed = failed;
  }
}

/** The lock store could not be reached, so the job was not run (policy 'wait'). */
export class LockStoreUnavailableError extends PairedError {
  constructor(jobId: string, cause: unknown) {
    super(
      'ERR_PAIRED_LOCK_STORE_DOWN',
      `the lock store is unreachable, so job "${jobId}" was parked instead of run (whenLockStoreDown: 'wait'); it retries by itself. Check lockConnection, or set whenLockStoreDown: 'run' to run without coordination`,
      { cause },
    );
  }
}
