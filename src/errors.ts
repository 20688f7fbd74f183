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
  | 'ERR_PAIRED_LOCK_STORE_DOWN'
  | 'ERR_PAIRED_LOCK_STORE_MISCONFIGURED'
  | 'ERR_PAIRED_EVICTION_POLICY'
  | 'ERR_PAIRED_SETTLE_RETRY'
  | 'ERR_PAIRED_SESSION_LOST'
  | 'ERR_PAIRED_NOT_REPLICATED'
  | 'ERR_PAIRED_LIVENESS_LOST';

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

/** The lock store could not be reached: the job was parked (policy 'wait') or runs uncoordinated ('run'). */
export class LockStoreUnavailableError extends PairedError {
  constructor(jobId: string, cause: unknown, policy: 'wait' | 'run' = 'wait') {
    super(
      'ERR_PAIRED_LOCK_STORE_DOWN',
      policy === 'run'
        ? `the lock store is unreachable, so job "${jobId}" runs without coordination (whenLockStoreDown: 'run'): the twin may run it too (pair.coordinated is false, fence 0). Check lockConnection`
        : `the lock store is unreachable, so job "${jobId}" was parked instead of run (whenLockStoreDown: 'wait'); it retries by itself. Check lockConnection, or set whenLockStoreDown: 'run' to run without coordination`,
      { cause },
    );
  }
}

/**
 * The lock store refused or missed an executor's settle (its result, failure or release).
 * Reported on the `error` event at each attempt; the settle is retried with back-off until
 * it is stored, because a record left running under a live owner would keep the twin waiting.
 */
export class SettleRetryError extends PairedError {
  readonly id: string;

  constructor(id: string, state: string, cause: Error) {
    super(
      'ERR_PAIRED_SETTLE_RETRY',
      `storing "${id}" as ${state} was refused or missed by the lock store (${cause.message}); retrying until it is stored. If this repeats, fix the lock store: free memory (OOM), point lockConnection at the primary (READONLY), grant the ACL user the scripts and keys (NOPERM)`,
      { cause },
    );
    this.id = id;
  }
}

/**
 * This process's session key (its lease for every record it runs) vanished from the lock
 * store before it ran out: evicted, lost in a failover, or flushed. Its runs are stopped
 * (the twin may take them over) and the key is made anew.
 */
export class SessionLostError extends PairedError {
  constructor(member: string) {
    super(
      'ERR_PAIRED_SESSION_LOST',
      `the session key of member "${member}" vanished from the lock store; its running tasks were stopped and the key is made anew. Keys vanish when the lock store evicts them: set maxmemory-policy noeviction on it`,
    );
  }
}

/**
 * The lock store refuses bullmq-paired in a way no retry changes: a wrong password, an ACL
 * user without the commands, keys or channels it needs, a read-only replica, a server that
 * cannot run its scripts. `waitUntilReady()` rejects with it; jobs wait (or, under
 * `whenLockStoreDown: 'run'`, run uncoordinated) until a person fixes the configuration.
 */
export class LockStoreMisconfiguredError extends PairedError {
  /** What the lock store said or is, e.g. "WRONGPASS invalid username-password pair…". */
  readonly problem: string;

  constructor(problem: string, fix: string, cause?: unknown) {
    super(
      'ERR_PAIRED_LOCK_STORE_MISCONFIGURED',
      `the lock store refuses bullmq-paired: ${problem}. ${fix}`,
      cause === undefined ? undefined : { cause },
    );
    this.problem = problem;
  }
}

/**
 * The lock store may evict keys when its memory fills up (`maxmemory-policy` other than
 * `noeviction`): an evicted pair record lets the twin run its job again. Reported on the
 * `error` event when the lock starts; nothing stops.
 */
export class LockStoreEvictionError extends PairedError {
  readonly policy: string;

  constructor(policy: string) {
    super(
      'ERR_PAIRED_EVICTION_POLICY',
      `the lock store's maxmemory-policy is "${policy}": when its memory fills up it evicts keys, and a job whose pair record or session was evicted runs again on the twin. Set maxmemory-policy noeviction on the lock store (CONFIG SET maxmemory-policy noeviction, and in its config file), and do not share it with data that may fill its memory`,
    );
    this.policy = policy;
  }
}

/**
 * With the `durability` option: a grant that fewer replicas than asked acknowledged within
 * `timeoutMs`. The grant was not used (it was released): a failover now could lose it and let
 * the twin run the job with the same fence. Treated like an unreachable lock store.
 */
export class NotReplicatedError extends PairedError {
  readonly id: string;
  /** Replicas that acknowledged the grant in time. */
  readonly acked: number;
  readonly replicas: number;

  constructor(id: string, acked: number, replicas: number, timeoutMs: number) {
    super(
      'ERR_PAIRED_NOT_REPLICATED',
      `the grant of "${id}" reached ${acked} of ${replicas} replica(s) of the lock store within ${timeoutMs} ms, so it was given back unused (durability); it is retried like an unreachable lock store. Check the lock store's replicas (INFO replication), or lower durability.replicas`,
    );
    this.id = id;
    this.acked = acked;
    this.replicas = replicas;
  }
}

/**
 * This process's pub/sub subscriber to the lock store (its liveness channel and the settle
 * messages) is unhealthy or gone. Without it the twin sees an empty liveness channel and takes
 * this process's runs over, so no grant is taken meanwhile. `state`: 'unhealthy' (a PING went
 * unanswered or the lock store lists no subscriber: the connection is being made anew, and
 * grants resume when it is back) or 'ended' (closed for good: acquires reject with this error).
 */
export class LivenessSubscriberError extends PairedError {
  readonly state: 'unhealthy' | 'ended';

  constructor(state: 'unhealthy' | 'ended', problem: string) {
    super(
      'ERR_PAIRED_LIVENESS_LOST',
      state === 'unhealthy'
        ? `this process's lock-store subscriber is unhealthy (${problem}): the twin may see its liveness channel empty and take its runs over, and settle messages do not arrive. This process takes no grants until it is back; it is reconnecting`
        : `this process's lock-store subscriber ended for good (${problem}): its liveness channel stays empty, so the twin takes its runs over. This process takes no grants until it is back, which it never will: enable reconnects on the lock connection, and create a new PairedLock or worker`,
    );
    this.state = state;
  }
}
