import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { DelayedError, type Job, UnrecoverableError } from 'bullmq';
import {
  ClosedError,
  JobCancelledError,
  LeaseLostError,
  LockStoreUnavailableError,
} from '../errors.js';
import type { PairCore } from '../lock/core.js';
import type { ExecuteExtras, RunContext } from '../lock/execute.js';
import type { RecordAddress } from '../lock/keys.js';
import { misconfigured } from '../lock/preflight.js';
import type { AcquireReply } from '../lock/scripts.js';
import { StartedClaim } from '../lock/started-claim.js';
import { cancelledByBullMQ, cancelledCopyError } from './cancel.js';
import type { Decisions } from './decisions.js';
import type { ResolvedProcessorOptions } from './options.js';
import type { Parking } from './parking.js';
import { ProgressTracker } from './progress.js';
import type { PairedProcessorFunction, PairInfo } from './types.js';

export type Granted = Extract<AcquireReply, { kind: 'granted' }>;

/** How a granted run started: after its grant, or before (its claim decides). */
export interface Start {
  token: string;
  sentAt: number;
  reply: Granted;
  claim?: StartedClaim;
}

interface Execution {
  controller: AbortController;
  /** The BullMQ worker that runs it (a job's `queue` is its worker). */
  owner: unknown;
}

/** Marks a copy that was parked: BullMQ must not fail or complete it. */
const PARKED = Symbol('parked');

/**
 * A `PairedProcessor`'s executor role: runs the wrapped processor for the copies granted here
 * (or started before their claim), settles the pair by how the run ended, hands runs over
 * when their worker closes, and runs a copy uncoordinated or parks it when the lock store is
 * down. It learns how long this twin's jobs take (`holdMs`), which a shadow's wait follows.
 */
export class ExecutorRuns<DataType, ResultType, NameType extends string> {
  private readonly executions = new Set<Execution>();
  /** Moving average of this twin's own execution times: the other twin's are alike. */
  private typicalMs: number | undefined;

  constructor(
    private readonly wrapped: PairedProcessorFunction<DataType, ResultType, NameType>,
    private readonly core: PairCore,
    private readonly options: Readonly<ResolvedProcessorOptions>,
    private readonly parking: Parking,
    private readonly report: (err: Error) => void,
  ) {}

  /**
   * The chosen executor's first pickup: the processor starts now, with fence 1, and the claim
   * travels meanwhile. The standby never takes fence 1 and waits `standbyGraceMs` for this
   * claim, so the two overlap only if the claim loses (the standby ran it, fenced higher):
   * then this run's signal aborts and its copy ends as the pair does. The result is stored
   * after BullMQ completes the copy, not before.
   */
  async runAtOnce(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    signal: AbortSignal | undefined,
    address: RecordAddress,
    say: Decisions,
  ): Promise<ResultType> {
    const claimToken = randomUUID();
    const sentAt = performance.now();
    const claim = new StartedClaim((completion) =>
      this.core.claim(address, claimToken, 'started', completion).then((claimed) => claimed.reply),
    );
    const reply: Granted = {
      kind: 'granted',
      fence: 1,
      takeover: undefined,
      attempts: 1,
      idleMs: undefined,
    };
    const start: Start = { token: claimToken, sentAt, reply, claim };
    return this.runGranted(job, token, signal, address, start, say);
  }

  /** Runs a granted copy; one that ends parked goes back to BullMQ as delayed. */
  async runGranted(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    signal: AbortSignal | undefined,
    address: RecordAddress,
    start: Start,
    say: Decisions,
  ): Promise<ResultType> {
    const result = await this.execute(job, token, signal, address, start, say);
    if (result === PARKED) throw new DelayedError();
    return result;
  }

  private async execute(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    bullSignal: AbortSignal | undefined,
    address: RecordAddress,
    start: Start,
    say: Decisions,
  ): Promise<ResultType | typeof PARKED> {
    const { reply } = start;
    const twin = this.options.twin;
    if (reply.takeover) say.takeover(reply.fence, reply.takeover, reply.idleMs);
    // BullMQ builds a worker's jobs with the worker as their (protected) `queue`: that tells
    // which worker's close() must hand this execution over.
    const owner = (job as unknown as { queue: unknown }).queue;
    const execution: Execution = { controller: new AbortController(), owner };
    this.executions.add(execution);
    // BullMQ's own signal (worker.cancelJob) aborts the run too: forwarded by one listener,
    // removed when the run ends (AbortSignal.any costs far more per job, weak refs and all).
    const signal = execution.controller.signal;
    const forward = (): void => execution.controller.abort(bullSignal?.reason);
    if (bullSignal?.aborted) forward();
    else bullSignal?.addEventListener('abort', forward, { once: true });
    const pair: Omit<PairInfo, 'assertLease'> = {
      twin,
      fence: reply.fence,
      takeover: reply.takeover,
      attempts: reply.attempts,
      coordinated: true,
    };
    const startedAt = performance.now();
    // The processor's last job.updateProgress goes into the record with its result.
    const progress = new ProgressTracker(job);
    try {
      const extras: ExecuteExtras = {
        progress: () => progress.reported?.value,
        ...(start.claim === undefined
          ? {}
          : {
              claim: start.claim,
              // A result stored after the copy completed, or refused: reported, not lost.
              pipeline: ({ error }) => this.report(error),
            }),
      };
      const outcome = await this.core.execute(
        address,
        { token: start.token, fence: reply.fence },
        { takeover: reply.takeover, attempts: reply.attempts },
        start.sentAt,
        (ctx) => {
          ctx.signal.addEventListener('abort', () => {
            const reason = ctx.signal.reason;
            if (reason instanceof LeaseLostError) say.leaseLost(reply.fence, reason.reason);
          });
          return this.run(job, token, ctx, pair, bullSignal);
        },
        signal,
        extras,
      );
      switch (outcome.kind) {
        case 'completed': {
          const durationMs = performance.now() - startedAt;
          this.typicalMs =
            this.typicalMs === undefined ? durationMs : 0.9 * this.typicalMs + 0.1 * durationMs;
          await say.executed(reply.fence, reply.takeover, durationMs);
          return outcome.result;
        }
        case 'superseded':
          // The twin holds a higher fence, whether this run returned or threw (e.g. its sink
          // refused the stale fence): this copy becomes its shadow and ends as the pair does.
          await say.superseded(reply.fence, outcome.error.currentFence);
          return await this.parkCopy(job, token, 0);
        case 'handedOver':
          // Released: the twin runs it; this copy waits for its result.
          await say.handedOver(reply.fence);
          return await this.parkCopy(job, token, this.options.maxParkMs);
        case 'leaseLost':
          // Released, never failed: the job is not over. This copy asks again at once, as a
          // shadow of the twin's takeover or as the executor again.
          await say.stopped(reply.fence, outcome.lost.message);
          return await this.parkCopy(job, token, 0);
        case 'unstorable':
          // The pair failed for good: the twin's copy fails with it instead of running again.
          await say.failed(reply.fence);
          // BullMQ retries nothing after an UnrecoverableError; the typed error is its cause.
          throw Object.assign(new UnrecoverableError(outcome.error.message), {
            code: outcome.error.code,
            cause: outcome.error,
          });
        default:
          if (outcome.error instanceof JobCancelledError) {
            // Cancelled: the pair is failed for good (the twin's copy fails too, unrun).
            await say.cancelled(reply.fence, outcome.error.reason);
            throw cancelledCopyError(outcome.error.message, outcome.error);
          }
          await say.failed(reply.fence);
          throw outcome.error;
      }
    } finally {
      bullSignal?.removeEventListener('abort', forward);
      progress.stop();
      this.executions.delete(execution);
    }
  }

  /**
   * Runs the wrapped processor as the executor. A run that BullMQ cancelled (`worker.cancelJob`) and
   * that then threw fails the pair for good before the core settles it, so the twin does not
   * take the cancelled job over.
   */
  private async run(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    ctx: RunContext,
    pair: Omit<PairInfo, 'assertLease'>,
    bullSignal: AbortSignal | undefined,
  ): Promise<ResultType> {
    try {
      return await this.wrapped(job, token, ctx.signal, {
        ...pair,
        assertLease: ctx.assertLease,
      });
    } catch (err) {
      if (!cancelledByBullMQ(bullSignal, ctx.signal)) throw err;
      const cancelled = new JobCancelledError(
        job.id as string,
        this.options.twin,
        ctx.signal.reason,
        err,
      );
      throw cancelled; // the core fails the pair for good with it
    }
  }

  /**
   * How long a shadow waits in its slot before parking: about twice a typical execution when
   * that fits in `shadowHoldMs` (short jobs finish meanwhile), else nothing (a slot held for a
   * long job is capacity lost). Before any execution is seen, `shadowHoldMs`.
   */
  holdMs(): number {
    const cap = this.options.shadowHoldMs;
    if (cap === 0 || this.typicalMs === undefined) return cap;
    const twice = 2 * this.typicalMs + 5;
    return twice <= cap ? twice : 0;
  }

  /** Parks the copy (see `Parking.park`); BullMQ must then neither fail nor complete it. */
  async parkCopy(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    delayMs: number,
  ): Promise<typeof PARKED> {
    await this.parking.park(job, token, delayMs);
    return PARKED;
  }

  async lockStoreDown(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    signal: AbortSignal | undefined,
    cause: unknown,
    say: Decisions,
  ): Promise<ResultType> {
    const jobId = job.id as string;
    // A refusal no retry cures (password, ACL, replica) is reported as such, not as an outage.
    const policy = this.options.whenLockStoreDown;
    // A lock-store call that outlasted lockStoreTimeoutMs: its cause says so.
    const why = cause instanceof LockStoreUnavailableError ? cause.cause : cause;
    this.report(
      misconfigured(cause, this.options.lock.prefix) ??
        new LockStoreUnavailableError(jobId, why, policy),
    );
    if (this.options.whenLockStoreDown === 'run') {
      await say.uncoordinated();
      const pair: PairInfo = {
        twin: this.options.twin,
        fence: 0,
        takeover: undefined,
        attempts: 0,
        coordinated: false,
        assertLease: () => {},
      };
      return this.wrapped(job, token, signal ?? new AbortController().signal, pair);
    }
    await this.parkCopy(job, token, this.options.lockStoreRetryMs);
    throw new DelayedError();
  }

  handOver(matches: (owner: unknown) => boolean): void {
    for (const execution of this.executions) {
      if (matches(execution.owner)) execution.controller.abort(new ClosedError('the worker'));
    }
  }
}
