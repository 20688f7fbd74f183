import {
  asError,
  ClosedError,
  LeaseLostError,
  ResultNotSerializableError,
  ResultTooLargeError,
  StaleFenceError,
} from '../errors.js';
import type { RecordAddress } from './keys.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { ResolvedLockOptions } from './options.js';
import { LIVENESS_WARMUP_S, type Place } from './placement.js';
import { classifyError } from './reply-errors.js';
import { retryWithBackoff } from './retry.js';
import type {
  AcquireReply,
  Completion,
  Grant,
  OwnerReply,
  RedisConnection,
  Settlement,
  TakeoverReason,
} from './scripts.js';
import { type Outcome, SETTLE_RETRY_CAP_MS, type Settler, staleError } from './settle.js';
import type { StartedClaim } from './started-claim.js';

/** What an executor's routine receives. */
export interface RunContext {
  id: string;
  /**
   * Higher with every grant of this task, even after its record was lost (the lock store's
   * clock in ms; 1 for a chosen executor's claim): pass it to your sink to reject stale writes.
   */
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
   * (lock store unreachable) aborts it with a `LeaseLostError` (`leaseLost`, released). A
   * run that ends before its claim was sent settles with it in one call (`StartedClaim`).
   */
  claim?: StartedClaim;
  /**
   * Resolve `completed` as soon as the result is sent, without waiting for the lock store to
   * store it: the settle goes on in the background, retried until stored, and `late` hears
   * how it ended when that was not as stored (superseded, or given up at close). The store
   * executes the claim, then the settle, in the order sent on the one connection.
   */
  pipeline?: (late: { error: Error }) => void;
}

/** What running a grant needs from the core (`PairCore`): its connection, state and books. */
export interface ExecuteHost {
  readonly client: RedisConnection;
  readonly options: Readonly<ResolvedLockOptions>;
  report(err: Error): void;
  /** Whether the lock is closing: a run that starts then starts aborted (a handover). */
  isClosing(): boolean;
  /** True on a Cluster (see `Placement.sharded`). */
  isSharded(): boolean;
  /**
   * Where the grant (its token) named this process's keys, taken once; else the place near
   * `key` there is now, undefined for a master this process has not used yet.
   */
  takePlace(token: string, key: string): Place | undefined;
  /** Running routines, with the session they run under (a lost session expires them). */
  readonly running: Map<LeaseKeeper, Place | undefined>;
  /** Settles sent without waiting (`ExecuteExtras.pipeline`): close() waits for them. */
  readonly settling: Set<Promise<void>>;
  /** Asks again for a claim whose answer could not be had (see `PairCore.claim`). */
  claim(
    address: RecordAddress,
    token: string,
    completion?: Completion,
  ): Promise<{ reply: ClaimReply }>;
  /** `durability` is on: a claim-and-complete would need a settle's WAIT, so none is made. */
  readonly replicated: boolean;
  readonly settler: Settler;
}

/**
 * Runs `fn` as the executor of a granted record, heartbeating its lease, and settles the
 * record according to how the run ended (see `Outcome`). Never throws the routine's error:
 * it comes back inside the outcome.
 */
export async function execute<T>(
  host: ExecuteHost,
  address: RecordAddress,
  grant: Grant,
  context: { takeover: TakeoverReason | undefined; attempts: number },
  sentAt: number,
  fn: (ctx: RunContext) => T | Promise<T>,
  signal: AbortSignal | undefined,
  extras: ExecuteExtras,
): Promise<Outcome<T>> {
  const { progress, claim, pipeline } = extras;
  const { options, settler } = host;
  // Where the grant named our keys. A run started before its claim is answered takes the
  // place there is now: undefined only for a master this process has not used yet; the
  // record's own lease then counts.
  const place = host.takePlace(grant.token, address.key);
  const session = place?.session;
  const keeper = new LeaseKeeper(
    host.client,
    address,
    grant,
    {
      ...options,
      perRecord: session === undefined,
      // Per-record heartbeats come more often than the warm-up, which keeps a live record
      // younger than any epoch that could orphan it: stamping the epoch (an INFO) each beat
      // buys nothing. Under a session a record is refreshed every retention / 3: stamp then.
      epochKey:
        session === undefined && options.heartbeatMs < LIVENESS_WARMUP_S * 1000
          ? ''
          : (place?.epochKey ?? ''),
      sharded: host.isSharded(),
    },
    sentAt,
    (err) => host.report(err),
  );
  host.running.set(keeper, place);
  const onAbort = (): void => keeper.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted || host.isClosing())
    keeper.abort(signal?.reason ?? new ClosedError('PairedLock'));
  const finish = (): void => {
    signal?.removeEventListener('abort', onAbort);
    host.running.delete(keeper);
    keeper.stop();
  };
  const assertLease = (): void => keeper.assert(session?.deadlineAt);
  // A run started before its grant: until the claim is answered the record may be another's.
  let refused: StaleFenceError | undefined;
  const refusal = (): StaleFenceError | undefined => refused;
  claim?.reply.then(
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
    await claim?.reply.catch(() => {}); // a release must not overtake its own claim
    // Refused meanwhile: the record is another run's (a failed or released one at fence 1
    // would take this settle for a retry of its own), so nothing is settled.
    const refusedLate = refusal();
    if (refusedLate) return { kind: 'superseded', error: refusedLate, thrown: err };
    return settler.settleThrown(address, grant, keeper.signal.reason, err);
  }
  finish();
  if (refused) return { kind: 'superseded', error: refused };
  let serialized: string;
  try {
    serialized = JSON.stringify(result) ?? '';
  } catch (cause) {
    return settler.unstorable(address, grant, new ResultNotSerializableError(address.id, cause));
  }
  const bytes = Buffer.byteLength(serialized);
  if (bytes > options.maxResultBytes) {
    return settler.unstorable(
      address,
      grant,
      new ResultTooLargeError(address.id, bytes, options.maxResultBytes),
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
  // Only a claim not sent yet can carry the result (not with durability: a settle's WAIT).
  const completion: Completion | undefined =
    claim === undefined || host.replicated || claim.sent
      ? undefined
      : {
          result: serialized,
          ...(settlement.progress === undefined ? {} : { progress: settlement.progress }),
        };
  const stored: Promise<OwnerReply> =
    claim === undefined
      ? settler.store(address, grant, settlement)
      : completion !== undefined && claim.withResult(completion)
        ? // Ended before its claim went out: granted means stored.
          claimAnswer(host, address, grant.token, claim.reply, completion).then(
            (answer): OwnerReply => (answer.kind === 'granted' ? { kind: 'ok' } : stale(answer)),
          )
        : claimAnswer(host, address, grant.token, claim.reply).then((answer) =>
            answer.kind === 'granted' ? settler.store(address, grant, settlement) : stale(answer),
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
    host.settling.add(settling);
    void settling.finally(() => host.settling.delete(settling));
    return { kind: 'completed', result };
  }
  const reply = await stored;
  if (reply.kind === 'ok') return { kind: 'completed', result };
  return { kind: 'superseded', error: staleError(address, grant, reply) };
}

/** A claim refused: the record another grant holds or held, as a settle's refusal reads. */
function stale(answer: Extract<ClaimReply, { kind: 'taken' }>): OwnerReply {
  return { kind: 'stale', state: answer.state, fence: answer.fence, owner: answer.owner };
}

/**
 * The claim's answer, asking again with the same token while it cannot be had (the script
 * recognises its own token and keeps that grant). Throws only once the lock is closing, or
 * on a refusal of ours.
 */
async function claimAnswer(
  host: ExecuteHost,
  address: RecordAddress,
  token: string,
  first: Promise<ClaimReply>,
  completion?: Completion,
): Promise<ClaimReply> {
  return retryWithBackoff(
    (n) =>
      n === 0 ? first : host.claim(address, token, completion).then((claimed) => claimed.reply),
    {
      stop: (error) => host.isClosing() || classifyError(error) === 'ours',
      retrying: (error) => host.report(error),
      capMs: SETTLE_RETRY_CAP_MS,
    },
  );
}
