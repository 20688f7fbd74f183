import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { DelayedError, type Job, type Worker } from 'bullmq';
import {
  ClosedError,
  InvalidJobIdError,
  LockStoreUnavailableError,
  PairedError,
} from '../errors.js';
import type { PairCore } from '../lock/core.js';
import { type CoreLease, leaseCore } from '../lock/shared-core.js';
import { traced, workerTelemetry } from '../observability/tracing.js';
import { show } from '../validate.js';
import { AttachedWorkers, isWorker, workerOf } from './attached-workers.js';
import { Decisions, type Reporting } from './decisions.js';
import type { PairedProcessorEvents } from './events.js';
import { chosenExecutor } from './executor.js';
import { ExecutorRuns } from './executor-runs.js';
import { recordId } from './keys.js';
import {
  type PairedProcessorOptions,
  type ResolvedProcessorOptions,
  resolveProcessorOptions,
} from './options.js';
import { PairingCheck } from './pairing-record.js';
import { Parking } from './parking.js';
import { Shadows } from './shadow-copy.js';
import { completeFromPair, type PairResult, Standbys } from './standby.js';
import { presenceOf, type TwinPresence } from './twin-presence.js';
import type { PairedProcessorFunction } from './types.js';

export type { PairedProcessorFunction, PairInfo } from './types.js';

/**
 * Jobs added this soon (ms) after a process was listed among its twin's processes are not
 * started before their claim (one round trip in the slot instead): while the twin had no live
 * process, the other twin's standbys ran its jobs, and one may still act on an older look
 * that found it gone (a look is reused for 150 ms); the producer's clock may differ too. Every
 * process counts from its own listing: processes of a twin restarted together are listed one
 * after the other, and the first one listed says nothing of the jobs added before it.
 */
const LISTED_MARGIN_MS = 1_000;

/**
 * A lock store this close (round trip, ms) costs a standby less in its slot than a park (a
 * delayed move, a promote and a second pickup): it waits there, as a shadow does.
 */
const NEAR_STORE_MS = 5;

/**
 * Wraps a BullMQ processor so that the twin that picks a job up first executes it and the
 * other shadows it without holding a worker slot, completing with the executor's result,
 * or taking over at once when the executor throws, closes, loses its lease or dies.
 */
export class PairedProcessor<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> extends EventEmitter<PairedProcessorEvents> {
  readonly options: Readonly<ResolvedProcessorOptions>;
  /** Pass this to `new Worker(name, paired.processor, …)`; it declares BullMQ's three parameters. */
  readonly processor: (
    job: Job<DataType, ResultType, NameType>,
    token?: string,
    signal?: AbortSignal,
  ) => Promise<ResultType>;
  private readonly core: PairCore;
  private readonly coreLease: CoreLease;
  /** The group of each queue's record ids, as PairedQueue recorded it, checked against ours. */
  private readonly pairing: PairingCheck;
  /** The copies this process executes. */
  private readonly runs: ExecutorRuns<DataType, ResultType, NameType>;
  /** The copies that ask for the record and may shadow an executor. */
  private readonly shadows: Shadows<DataType, ResultType, NameType>;
  /** Parked copies: what wakes each, results learned meanwhile, promotions. */
  private readonly parking: Parking;
  /** Copies whose job the other twin was chosen to run. */
  private readonly standbys: Standbys;
  /** The workers served: listed among their twin's processes, adopting parked copies. */
  private readonly workers: AttachedWorkers;
  /** Whether a chosen twin still has a live process (liveness on; else standbys wait the grace). */
  private readonly presence: TwinPresence | undefined;
  /** What every copy's Decisions report to: the same for all of them. */
  private readonly reporting: Reporting;
  private closed = false;

  constructor(
    wrapped: PairedProcessorFunction<DataType, ResultType, NameType>,
    options: PairedProcessorOptions,
  ) {
    super();
    if (typeof wrapped !== 'function') {
      throw new TypeError(
        `PairedProcessor: the first argument must be a processor function, received ${show(wrapped)}`,
      );
    }
    this.options = Object.freeze(resolveProcessorOptions(options));
    this.pairing = new PairingCheck(this.options.twin, this.options.group, (err) =>
      this.report(err),
    );
    // Shared by every PairedProcessor of this process on the same lock connection and lock
    // options: one session, subscriber and watch per process and lock store.
    this.coreLease = leaseCore(options.lockConnection, this.options.lock, (err) =>
      this.report(err),
    );
    this.core = this.coreLease.core;
    this.presence = this.core.options.liveness ? presenceOf(this.core) : undefined;
    const isClosed = (): boolean => this.closed;
    const report = (err: Error): void => this.report(err);
    this.parking = new Parking(isClosed, report);
    this.standbys = new Standbys(
      this.core,
      this.options,
      this.parking,
      this.presence,
      isClosed,
      report,
    );
    this.workers = new AttachedWorkers(
      this.core,
      this.options,
      this.pairing,
      this.parking,
      this.standbys,
      this.presence,
      isClosed,
      report,
    );
    this.runs = new ExecutorRuns(wrapped, this.core, this.options, this.parking, report);
    this.shadows = new Shadows(this.core, this.options, this.parking, this.runs, report);
    this.reporting = {
      twin: this.options.twin,
      jobLogs: this.options.jobLogs,
      logger: this.options.logger,
      emitter: this,
      report: (err) => this.report(err),
    };
    this.processor = (job, token, signal) =>
      traced(this.options.telemetry ?? workerTelemetry(job), job, this.options.twin, (trace) =>
        this.process(job, token, signal, new Decisions(job, trace, this.reporting)),
      );
  }

  /**
   * Checks the lock store and subscribes, as the first job does. Rejects with
   * `LockStoreMisconfiguredError` when the store refuses us for good (a wrong password, an ACL
   * user without the commands, keys or channels needed, a read-only replica, a
   * `maxmemory-policy` that evicts keys unless `allowEviction`), and with
   * `LockStoreUnavailableError` (`cause`: the connection's error) while it is unreachable or
   * does not answer within `lockStoreTimeoutMs` (call again later).
   * Call it at startup, next to `worker.waitUntilReady()`, to fail fast: otherwise jobs park
   * (or, under `whenLockStoreDown: 'run'`, run uncoordinated) with an `error` event each.
   * Resolves once every worker attached so far is also listed among its twin's live
   * processes: until then the other twin takes this twin for gone and runs the jobs chosen
   * for it itself (harmless, but a deploy that waits for this starts with its share).
   */
  async waitUntilReady(): Promise<void> {
    if (this.closed) throw new ClosedError('PairedProcessor');
    await this.core.ready().catch((err: unknown) => {
      throw err instanceof PairedError ? err : new LockStoreUnavailableError({ cause: err });
    });
    await this.workers.allListed();
  }

  /** Hands this worker's running jobs over to the twin when the worker starts closing. */
  attach(worker: Worker): this {
    worker.on('closing', () => this.runs.handOver((owner) => owner === worker));
    void this.workers.watch(worker);
    return this;
  }

  /**
   * Stops: running executions see their signal abort with a `ClosedError`, and those that
   * then throw release their record so the twin takes over at once. Close your workers
   * first (`worker.close()` waits for their jobs); the lock connection is not closed.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.runs.handOver(() => true);
    this.parking.closeAll();
    this.presence?.prune(); // this processor's standbys wait no more
    await this.workers.close();
    await this.coreLease.release();
  }

  private async process(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    signal: AbortSignal | undefined,
    say: Decisions,
  ): Promise<ResultType> {
    if (this.closed) throw new ClosedError('PairedProcessor');
    if (!job.id) throw new InvalidJobIdError(job.id, 'is missing');
    // BullMQ builds a worker's jobs with the worker as their `queue`.
    const group = await this.pairing.groupOf((job as unknown as { queue: Worker }).queue);
    const address = this.core.address(recordId(group, job.id));
    try {
      await this.core.ready();
    } catch (err) {
      return this.runs.lockStoreDown(job, token, signal, err, say);
    }
    // Listed among its twin's processes before it runs or parks anything (once per worker).
    const worker = workerOf(job);
    if (isWorker(worker)) await this.workers.watch(worker);
    // An earlier park of this copy is over: it is here. Its watch (a standby's) stops too.
    this.parking.back(address.key);
    const chosen = chosenExecutor(job.opts);
    const self = this.workers.twinOf(worker);
    // A standby's watch learned the pair's result while this copy was parked (for this very
    // job: a later job that reuses the id is not completed with it).
    const learned = this.parking.takeLearned(address.key, job.timestamp);
    if (learned !== undefined) {
      const { fence, owner, progress, result } = learned;
      return this.complete(job, { fence, owner, progress, value: result }, say);
    }
    const first = job.attemptsMade === 0 && (job.attemptsStarted ?? 0) <= 1;
    // The chosen twin has no live process left: nobody will claim the job, run it here now.
    const chosenKey = this.workers.presenceKey(job, chosen);
    const chosenGone =
      this.parking.takeChosenGone(address.key, job.timestamp, this.options.standbyGraceMs / 2) ||
      this.standbys.isGone(chosenKey);
    if (chosen !== undefined && first && !chosenGone) {
      if (chosen !== self) {
        // Longer than a shadow's hold: a standby may look before its executor has even picked
        // its own copy up (another queue, another process), so the wait includes that pickup.
        const hold = this.runs.holdMs() === 0 ? 0 : this.options.shadowHoldMs;
        // Far from the lock store it only looks in this process's memory of settles heard.
        const near = this.core.distanceMs < NEAR_STORE_MS;
        const done = await this.standbys.inSlot<ResultType>(job, address, say, near ? hold : 0);
        if (done !== undefined) return done.result;
        say.standby(chosen);
        await this.standbys.park(job, token, address, chosenKey, (fence, owner) =>
          say.shadowed(fence, owner || chosen),
        );
        throw new DelayedError();
      }
      // Young enough that the standby's grace cannot have run out, and added while this
      // process was listed (a standby may have run what was added while the twin had no
      // live process): see `runAtOnce`.
      const availableAt = job.timestamp + (job.delay ?? 0);
      if (
        this.core.speculative &&
        Date.now() - availableAt < this.options.standbyGraceMs / 2 &&
        job.timestamp >= this.workers.listedAt(worker) + LISTED_MARGIN_MS
      ) {
        return this.runs.runAtOnce(job, token, signal, address, say);
      }
      // The copy's first pickup, not run anywhere by this twin yet: a claim answered before
      // the run (fenced on the store's clock) runs it when the standby has not taken the job.
      let claimed: Awaited<ReturnType<PairCore['claim']>>;
      try {
        claimed = await this.core.claim(address, randomUUID(), 'waiting');
      } catch (err) {
        return await this.runs.lockStoreDown(job, token, signal, err, say);
      }
      if (claimed.reply.kind === 'granted') {
        const start = { token: claimed.token, sentAt: claimed.sentAt, reply: claimed.reply };
        return await this.runs.runGranted(job, token, signal, address, start, say);
      }
      // Taken: the acquire below answers what the record holds (done, busy, failed).
    }
    // With a chosen executor only its claim is granted fence 1: a run that started with it
    // before its claim was answered never shares it with a later grant. A twin that was not
    // chosen leaves the job to the chosen one's claim for standbyGraceMs, however its copy
    // came back.
    const ask =
      chosen === undefined
        ? { minFence: 1 }
        : {
            minFence: 2,
            waitForClaimMs: chosen === self || chosenGone ? 0 : this.options.standbyGraceMs,
          };
    return this.shadows.follow(job, token, signal, address, ask, say);
  }

  /** Ends a copy as twin-completed with the pair's result. */
  private complete(job: Job, done: PairResult, say: Decisions): Promise<ResultType> {
    return completeFromPair<ResultType>(job, done, say, (err) => this.report(err));
  }

  private report(err: Error): void {
    this.options.logger.error(
      { err: { name: err.name, message: err.message } },
      'bullmq-paired: error',
    );
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
