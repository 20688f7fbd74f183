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
  | 'ERR_PAIRED_LIVENESS_LOST'
  | 'ERR_PAIRED_MISCONFIGURED_GROUP'
  | 'ERR_PAIRED_MISCONFIGURED_TWIN'
  | 'ERR_PAIRED_ADD_REFUSED'
  | 'ERR_PAIRED_DEDUPLICATION_MISMATCH'
  | 'ERR_PAIRED_SCHEDULER_NOT_PAIRED'
  | 'ERR_PAIRED_PARTIAL_OPERATION'
  | 'ERR_PAIRED_JOB_CANCELLED';

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

/**
 * The lock store could not be reached. From a `PairedProcessor` (`error` event): the job was
 * parked (policy 'wait') or runs uncoordinated ('run'). From `PairedLock.run()` and
 * `waitUntilReady()` (the `{ id, cause, timeoutMs }` form): the call was given up, nothing ran.
 * `cause` is the connection's error, or, when the store did not answer within
 * `lockStoreTimeoutMs`, an Error saying so.
 */
export class LockStoreUnavailableError extends PairedError {
  /** The job (PairedProcessor) or task (PairedLock) id, when one was being worked on. */
  readonly id: string | undefined;
  /** Set when the store did not answer within `lockStoreTimeoutMs`: that bound, in ms. */
  readonly timeoutMs: number | undefined;

  constructor(jobId: string, cause: unknown, policy?: 'wait' | 'run');
  constructor(given: { id?: string; cause: unknown; timeoutMs?: number });
  constructor(
    first: string | { id?: string; cause: unknown; timeoutMs?: number },
    cause?: unknown,
    policy: 'wait' | 'run' = 'wait',
  ) {
    if (typeof first === 'string') {
      super(
        'ERR_PAIRED_LOCK_STORE_DOWN',
        policy === 'run'
          ? `the lock store is unreachable, so job "${first}" runs without coordination (whenLockStoreDown: 'run'): the twin may run it too (pair.coordinated is false, fence 0). Check lockConnection`
          : `the lock store is unreachable, so job "${first}" was parked instead of run (whenLockStoreDown: 'wait'); it retries by itself. Check lockConnection, or set whenLockStoreDown: 'run' to run without coordination`,
        { cause },
      );
      this.id = first;
      this.timeoutMs = undefined;
      return;
    }
    const { id, timeoutMs } = first;
    const why =
      timeoutMs === undefined
        ? `is unreachable (${first.cause instanceof Error ? first.cause.message : String(first.cause)})`
        : `did not answer within lockStoreTimeoutMs (${timeoutMs} ms)`;
    super(
      'ERR_PAIRED_LOCK_STORE_DOWN',
      `the lock store ${why}${id === undefined ? '' : `, so "${id}" was not run here`}. Check lockConnection (host, port, TLS, password) and that the lock store is up`,
      { cause: first.cause },
    );
    this.id = id;
    this.timeoutMs = timeoutMs;
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
 * `noeviction`): an evicted pair record lets the twin run its job again. With
 * `allowEviction: true`, reported on the `error` event when the lock starts and nothing stops
 * (without it, such a store is refused with `LockStoreMisconfiguredError`).
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
 * the twin run the job while this run goes on. Treated like an unreachable lock store.
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

/** What `PairingMismatchError` found. */
export interface PairingMismatch {
  /** Who found it: a worker (`PairedProcessor`) or a producer (`PairedQueue`). */
  by: 'PairedProcessor' | 'PairedQueue';
  /** The option that disagrees with the pairing recorded in the queue's Redis. */
  option: 'group' | 'twin';
  /** The BullMQ queue. */
  queue: string;
  /** The key holding the recorded pairing, `<prefix>:<queue>:paired`. */
  key: string;
  /** The recorded value (the group, or the twin this queue belongs to). */
  recorded: string;
  /** The configured value. */
  configured: string;
  /** The recorded twins' queues, e.g. "eu → push-eu, us → push-us". */
  twins: string;
}

/**
 * Pairing options that disagree with how `PairedQueue` paired the queue (it records the pair
 * in each twin's queue Redis, at `<prefix>:<queue>:paired`). `group`: the twins would name
 * their pair records differently, never meet on one, and both run every job; a worker
 * refuses such copies (they fail with this error) and reports it on its `error` event, and a
 * `PairedQueue` that would re-pair a queue under another group refuses to add. `twin`: the
 * worker's `twin` option names another twin than the one whose queue it consumes; reported
 * on the `error` event only (the name is a label), since it usually means a wrong queue name.
 */
export class PairingMismatchError extends PairedError {
  readonly by: PairingMismatch['by'];
  readonly option: PairingMismatch['option'];
  readonly queue: string;
  readonly key: string;
  readonly recorded: string;
  readonly configured: string;

  constructor(found: PairingMismatch) {
    const { by, option, queue, key, recorded, configured, twins } = found;
    let message: string;
    if (by === 'PairedQueue') {
      message = `queue "${queue}" is paired under group "${recorded}" (${key}), and this PairedQueue would pair it under group "${configured}": workers name each pair record after the group, so changing it while jobs are in flight runs them twice. Use the PairedQueue name and twin queues that recorded it, or delete ${key} in both twins' Redis once no job of the old pairing is left`;
    } else if (option === 'group') {
      message = `PairedProcessor option group "${configured}" differs from the group "${recorded}" that PairedQueue recorded for queue "${queue}" (${key}; twins ${twins}): twins whose groups differ never meet on a pair record and both run every job, so this copy was refused. Set group: '${recorded}' on both twins' workers, or leave group out (it defaults to the recorded group)`;
    } else {
      message = `PairedProcessor option twin "${configured}" consumes queue "${queue}", which PairedQueue recorded as twin "${recorded}" (${key}; twins ${twins}). Give each twin's workers that twin's queue and name; jobs still run once, but logs, events and metrics name the wrong twin`;
    }
    super(
      option === 'group' ? 'ERR_PAIRED_MISCONFIGURED_GROUP' : 'ERR_PAIRED_MISCONFIGURED_TWIN',
      message,
    );
    this.by = by;
    this.option = option;
    this.queue = queue;
    this.key = key;
    this.recorded = recorded;
    this.configured = configured;
  }
}

/**
 * BullMQ refused a job on one twin or both (e.g. `opts.parent` names a parent that does not
 * exist: BullMQ's "Missing key for parent job …"). `refused` holds BullMQ's own error per
 * twin (with BullMQ's numeric `code`, e.g. -5); `cause` is the first of them. `added` lists
 * the twins that do hold the job: there it runs unpaired, as a job nobody shadows.
 */
export class AddRefusedError extends PairedError {
  readonly jobIds: string[];
  /** BullMQ's error, per twin that refused. */
  readonly refused: Record<string, Error>;
  /** Twins that hold the refused job(s) all the same. */
  readonly added: string[];

  constructor(jobIds: string[], refused: Record<string, Error>, added: string[]) {
    const reasons = Object.entries(refused)
      .map(([twin, err]) => `${twin}: ${err.message}`)
      .join('; ');
    const which = jobIds.length === 1 ? `job "${jobIds[0]}"` : `jobs ${jobIds.join(', ')}`;
    super(
      'ERR_PAIRED_ADD_REFUSED',
      `BullMQ refused ${which} on twin(s) ${Object.keys(refused).join(', ')} (${reasons}); ${
        added.length === 0
          ? 'nothing was added'
          : `twin(s) ${added.join(', ')} hold it and run it unpaired. Remove it there, or fix the cause and add it again with the same id`
      }`,
      { cause: Object.values(refused)[0] },
    );
    this.jobIds = jobIds;
    this.refused = refused;
    this.added = added;
  }
}

/**
 * The twins answered one deduplicated add (`opts.deduplication`) with different existing
 * jobs: each twin's deduplication key names another job, so no pair was added. `ids` holds
 * the id each twin returned.
 */
export class DeduplicationMismatchError extends PairedError {
  readonly jobId: string;
  readonly deduplicationId: string | undefined;
  /** The id each twin returned (the job it deduplicated the add into). */
  readonly ids: Record<string, string>;

  constructor(jobId: string, deduplicationId: string | undefined, ids: Record<string, string>) {
    const answers = Object.entries(ids)
      .map(([twin, id]) => `${twin}: "${id}"`)
      .join(', ');
    super(
      'ERR_PAIRED_DEDUPLICATION_MISMATCH',
      `the twins deduplicated job "${jobId}" (deduplication id ${JSON.stringify(deduplicationId)}) into different existing jobs (${answers}), so nothing was added: their deduplication keys disagree. Add it again once those jobs have finished, or without deduplication`,
    );
    this.jobId = jobId;
    this.deduplicationId = deduplicationId;
    this.ids = ids;
  }
}

/**
 * A job scheduler (`PairedQueue.upsertJobScheduler`) whose iterations the twins could not be
 * made to name alike: each twin's scheduler names an iteration `repeat:<schedulerId>:<millis>`,
 * and only iterations with the same id on both twins pair (run once). `reason` says what
 * stands in the way (an option, or twins whose next iterations stayed off the common grid).
 */
export class JobSchedulerNotPairedError extends PairedError {
  readonly schedulerId: unknown;
  readonly reason: string;

  constructor(schedulerId: unknown, reason: string) {
    super(
      'ERR_PAIRED_SCHEDULER_NOT_PAIRED',
      `job scheduler ${JSON.stringify(schedulerId) ?? String(schedulerId)} cannot be paired: ${reason}`,
    );
    this.schedulerId = schedulerId;
    this.reason = reason;
  }
}

/**
 * An operation on both twins (a job scheduler's upsert or removal, a read of a job) that one
 * twin's Redis refused or did not answer within `addTimeoutMs`. `done` lists the twins where
 * it took effect; `failed` holds each other twin's error. Scheduler upserts and removals are
 * idempotent: call again to complete them.
 */
export class PartialTwinOperationError extends PairedError {
  readonly operation: string;
  /** Twins where the operation took effect. */
  readonly done: string[];
  /** Twins that refused or did not answer, with their errors. */
  readonly failed: Record<string, Error>;

  constructor(operation: string, done: string[], failed: Record<string, Error>) {
    const reasons = Object.entries(failed)
      .map(([twin, err]) => `${twin}: ${err.message}`)
      .join('; ');
    super(
      'ERR_PAIRED_PARTIAL_OPERATION',
      `${operation} reached only twin(s) ${done.join(', ') || 'none'} (${reasons}); call it again once every twin's Redis answers`,
      { cause: Object.values(failed)[0] },
    );
    this.operation = operation;
    this.done = done;
    this.failed = failed;
  }
}

/**
 * A paired job was cancelled (BullMQ's `worker.cancelJob(jobId, reason)`) while it executed,
 * and its processor stopped by throwing. The pair record is failed for good: the executor's
 * copy fails with this error and the twin's copy fails instead of running the job again.
 * `reason` is the cancel's reason as text; `cause` is what the processor threw.
 */
export class JobCancelledError extends PairedError {
  readonly jobId: string;
  /** The twin whose execution was cancelled. */
  readonly twin: string;
  readonly reason: string;

  constructor(jobId: string, twin: string, reason: unknown, cause?: unknown) {
    const text = cancelReason(reason);
    super(
      'ERR_PAIRED_JOB_CANCELLED',
      `job "${jobId}" was cancelled on twin ${twin} (${text}): neither twin runs it again`,
      { cause },
    );
    this.jobId = jobId;
    this.twin = twin;
    this.reason = text;
  }
}

/** A cancel's reason as short text: BullMQ passes the caller's value, or an AbortError. */
function cancelReason(reason: unknown): string {
  const text =
    reason instanceof Error ? reason.message : reason === undefined ? 'no reason' : String(reason);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
