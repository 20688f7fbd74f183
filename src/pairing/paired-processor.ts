import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError, type Job, Queue, UnrecoverableError, type Worker } from 'bullmq';
import {
  asError,
  ClosedError,
  InvalidJobIdError,
  JobCancelledError,
  LeaseLostError,
  LockStoreUnavailableError,
  PairedError,
  type PeerErrorInfo,
  PeerFailedError,
} from '../errors.js';
import type { Acquired, PairCore } from '../lock/core.js';
import type { ClaimReply, ExecuteExtras, RunContext } from '../lock/execute.js';
import { type RecordAddress, recordId, siblingsKey } from '../lock/keys.js';
import { misconfigured } from '../lock/preflight.js';
import { parseJson } from '../lock/record.js';
import { type AcquireReply, ownerOf } from '../lock/scripts.js';
import { type CoreLease, leaseCore } from '../lock/shared-core.js';
import type { Ticket, WakeReason } from '../lock/ticket.js';
import { traced, workerTelemetry } from '../observability/tracing.js';
import { show } from '../validate.js';
import { cancelledByBullMQ, cancelledCopyError, isCancel } from './cancel.js';
import { Decisions, type Reporting } from './decisions.js';
import type { PairedProcessorEvents } from './events.js';
import { chosenExecutor } from './executor.js';
import {
  type PairedProcessorOptions,
  type ResolvedProcessorOptions,
  resolveProcessorOptions,
} from './options.js';
import { PAIRING_KEY, PairingCheck } from './pairing-record.js';
import { pairingStoreOf } from './pairing-store.js';
import { Parking } from './parking.js';
import { mirrorProgress, ProgressTracker } from './progress.js';
import { watchReachability } from './queue-reachability.js';
import { siblingsOf } from './siblings.js';
import { completeFromPair, type PairResult, Standbys, toldResult } from './standby.js';
import { presenceOf, type TwinPresence } from './twin-presence.js';
import type { PairedProcessorFunction, PairInfo } from './types.js';

export type { PairedProcessorFunction, PairInfo } from './types.js';

type Granted = Extract<AcquireReply, { kind: 'granted' }>;
type Busy = Extract<AcquireReply, { kind: 'busy' }>;

interface Execution {
  controller: AbortController;
  /** The BullMQ worker that runs it (a job's `queue` is its worker). */
  owner: unknown;
}

/** How many delayed jobs a starting worker looks at for copies parked by a dead process. */
const ADOPT_AT_MOST = 10_000;

/**
 * An owner whose end is this close (ms) is waited out in the slot rather than parked behind:
 * it covers a far owner's liveness grace (3 round trips + 50 ms: 290 ms at 80 ms), so the
 * copy asks again when the grace ends, and a subscriber that is back by then is seen back.
 */
const SOON_MS = 1_000;

/** Rounds a copy waits in its slot for an owner whose end is moments away, before parking. */
const SOON_ROUNDS = 10;

/**
 * Jobs added this soon (ms) after a process was listed among its twin's processes are not
 * started before their claim (one round trip in the slot instead): while the twin had no live
 * process, the other twin's standbys ran its jobs, and one may still act on an older look
 * that found it gone (a look is reused for 150 ms); the producer's clock may differ too. Every
 * process counts from its own listing: processes of a twin restarted together are listed one
 * after the other, and the first one listed says nothing of the jobs added before it.
 */
const LISTED_MARGIN_MS = 1_000;

/** Marks a copy that was parked: BullMQ must not fail or complete it. */
const PARKED = Symbol('parked');

/**
 * A lock store this close (round trip, ms) costs a standby less in its slot than a park (a
 * delayed move, a promote and a second pickup): it waits there, as a shadow does.
 */
const NEAR_STORE_MS = 5;

/** How a granted run started: after its grant, or before (its claim decides). */
interface Start {
  token: string;
  sentAt: number;
  reply: Granted;
  claim?: Promise<ClaimReply>;
}

/** BullMQ builds a worker's jobs with the worker as their (protected) `queue`. */
const workerOf = (job: Job): unknown => (job as unknown as { queue: unknown }).queue;

/** A job's `queue` that is a BullMQ Worker (what `attach` and the siblings registry need). */
const isWorker = (value: unknown): value is Worker =>
  typeof (value as Worker | undefined)?.waitUntilReady === 'function' &&
  typeof (value as Worker).opts === 'object';

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
  private readonly executions = new Set<Execution>();
  /** Parked copies: what wakes each, results learned meanwhile, promotions. */
  private readonly parking: Parking;
  /** Copies whose job the other twin was chosen to run. */
  private readonly standbys: Standbys;
  /** Per attached worker: the queue that promotes the copies it adopts. */
  private readonly adopters = new Map<Worker, Queue>();
  /** Stops this processor's watches in the siblings registry (one per worker). */
  private readonly unlisten: (() => void)[] = [];
  /** Whether a chosen twin still has a live process (liveness on; else standbys wait the grace). */
  private readonly presence: TwinPresence | undefined;
  /**
   * Per worker: when (Date.now()) this process was first listed among its twin's processes.
   * A standby runs a job chosen for this twin at once only while the twin has no listed live
   * process, so jobs added since this listing (plus a margin) were not taken that way.
   */
  private readonly listedAt = new Map<Worker, number>();
  /** Per worker: settles once this process is listed among its twin's processes. */
  private readonly registered = new Map<Worker, Promise<void>>();
  /** What every copy's Decisions report to: the same for all of them. */
  private readonly reporting: Reporting;
  /**
   * An owner whose grace or lease ends within this (ms) is waited out in the slot. Not the
   * grace option itself: an owner far from the lock store keeps a longer grace of its own
   * with its grant (see `PairCore.ownGraceMs`), and parking behind it cost a takeover about
   * 85 ms (a second wake-up and pickup). Bounded, so a healthy owner's lease far from its end
   * never holds a slot.
   */
  private readonly soonMs = SOON_MS;
  private closed = false;
  /** `untilReady()`'s loop, shared by every attached worker. */
  private startup: Promise<boolean> | undefined;
  /** Moving average of this twin's own execution times: the other twin's are alike. */
  private typicalMs: number | undefined;

  constructor(
    private readonly wrapped: PairedProcessorFunction<DataType, ResultType, NameType>,
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
    await Promise.all(this.registered.values());
  }

  /** Hands this worker's running jobs over to the twin when the worker starts closing. */
  attach(worker: Worker): this {
    worker.on('closing', () => this.handOver((owner) => owner === worker));
    void this.watchWorker(worker);
    return this;
  }

  /**
   * Lists this process among its twin's for `worker`'s queue, adopts copies parked there by
   * processes that died, and watches its siblings; once per worker, at `attach` or at the
   * worker's first job (a worker made without `attach` is listed too: the other twin's
   * standbys run the jobs chosen for a twin with no listed live process). Resolves once listed.
   */
  private watchWorker(worker: Worker): Promise<void> {
    const known = this.registered.get(worker);
    if (known !== undefined) return known;
    const watch = (async (): Promise<void> => {
      await worker.waitUntilReady();
      // Listed under the queue's recorded twin, where the other twin's standbys look. A
      // pairing that contradicts PairedQueue's record is reported here, before any job runs.
      await this.pairing.groupOf(worker).catch(() => {});
      // A copy this worker parks is safe only once siblings know this process exists. A
      // failure here is reported by the start-up checks and the registry itself.
      if (!this.core.options.liveness || !(await this.untilReady()) || this.closed) return;
      const key = siblingsKey(this.options.lock.prefix, this.twinOf(worker), worker.name);
      // When a sibling dies, its parked copies have nobody to wake them: adopt them.
      const adopt = (): void =>
        void this.adoptParked(worker).catch((err: unknown) => this.report(asError(err)));
      // From when the listing was sent: it counts from when the lock store took it.
      const listing = Date.now();
      const siblings = siblingsOf(this.core);
      this.unlisten.push(await siblings.register(key, adopt));
      this.listedAt.set(worker, listing);
      // Off the list while this worker's queue server does not answer: the other twin then
      // runs the jobs chosen for this one at once, not after standbyGraceMs.
      const store = pairingStoreOf(worker);
      const pairingKey = worker.toKey(PAIRING_KEY);
      this.unlisten.push(
        watchReachability(
          worker,
          () => store.read(pairingKey),
          (reachable) =>
            void siblings
              .setDark(key, !reachable)
              .catch((err: unknown) => this.report(asError(err))),
        ),
      );
    })();
    const registered = watch.then(
      () => {},
      () => {},
    );
    this.registered.set(worker, registered);
    void watch
      .then(() => this.adoptParked(worker))
      .catch((err: unknown) => this.report(asError(err)));
    return registered;
  }

  /** The twin `worker`'s queue belongs to: as `PairedQueue` recorded it, else the `twin` option. */
  private twinOf(worker: unknown): string {
    return (isWorker(worker) && this.pairing.recordedTwin(worker)) || this.options.twin;
  }

  /**
   * Resolves once the lock store has passed its start-up checks, trying again
   * `lockStoreRetryMs` after each failure (each reported, within `lockStoreTimeoutMs`) until
   * it does (true), or until close (false). What a worker does at start (registering
   * with its siblings, adopting parked copies) then waits out a lock store that is down at
   * start instead of being skipped.
   */
  private untilReady(): Promise<boolean> {
    this.startup ??= (async () => {
      for (;;) {
        if (this.closed) return false;
        try {
          await this.core.ready();
          return true;
        } catch (err) {
          if (this.closed) return false;
          this.report(
            err instanceof PairedError ? err : new LockStoreUnavailableError({ cause: err }),
          );
        }
        await sleep(this.options.lockStoreRetryMs, undefined, { ref: false });
      }
    })();
    return this.startup;
  }

  /**
   * Copies parked by a process of this twin that died have nobody to wake them but their
   * long park delay. A starting worker adopts them: copies whose pair has settled are
   * promoted now, and those still running elsewhere are watched like its own.
   */
  private async adoptParked(worker: Worker): Promise<void> {
    if (!(await this.untilReady()) || this.closed) return;
    // Open until close(): an adopted copy is promoted through this queue when it wakes.
    let queue = this.adopters.get(worker);
    if (queue === undefined) {
      queue = new Queue(worker.name, {
        connection: worker.opts.connection,
        prefix: worker.opts.prefix,
      });
      this.adopters.set(worker, queue);
    }
    // Misconfigured (reported): this worker's copies are refused, none to adopt.
    const group = await this.pairing.groupIfPaired(queue);
    if (group === undefined) return;
    for (const job of await queue.getDelayed(0, ADOPT_AT_MOST - 1)) {
      if (!job.id || this.closed) continue;
      const address = this.core.address(recordId(group, job.id));
      if (this.parking.holds(address.key)) continue;
      const record = await this.core.inspect(address);
      if (record === null) continue; // never paired: a delay of the user's own
      if (this.parking.holds(address.key)) continue; // parked by this process meanwhile
      const ticket = this.core.ticket(address);
      this.parking.hold(address.key, ticket);
      const copy = job as Job<DataType, ResultType, NameType>;
      const wake = (reason: WakeReason): void =>
        this.parking.promote(copy, ticket, address, reason);
      // A standby of a job not claimed yet: watched as its own process would have.
      if (record.state === 'waiting') {
        const chosenKey = this.presenceKey(copy, chosenExecutor(job.opts));
        this.standbys.watch(copy, ticket, address, chosenKey);
      } else if (record.state === 'running') ticket.onNextWake(record.ownerLiveness, wake);
      else wake('settled');
    }
  }

  /**
   * Stops: running executions see their signal abort with a `ClosedError`, and those that
   * then throw release their record so the twin takes over at once. Close your workers
   * first (`worker.close()` waits for their jobs); the lock connection is not closed.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handOver(() => true);
    this.parking.closeAll();
    const queues = [...this.adopters.values()];
    this.adopters.clear();
    for (const stop of this.unlisten.splice(0)) stop();
    this.presence?.prune(); // this processor's standbys wait no more
    await Promise.all(queues.map((queue) => queue.close()));
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
      return this.lockStoreDown(job, token, signal, err, say);
    }
    // Listed among its twin's processes before it runs or parks anything (once per worker).
    const worker = workerOf(job);
    if (isWorker(worker)) await this.watchWorker(worker);
    // An earlier park of this copy is over: it is here. Its watch (a standby's) stops too.
    this.parking.back(address.key);
    const chosen = chosenExecutor(job.opts);
    const self = this.twinOf(worker);
    // A standby's watch learned the pair's result while this copy was parked (for this very
    // job: a later job that reuses the id is not completed with it).
    const learned = this.parking.takeLearned(address.key, job.timestamp);
    if (learned !== undefined) {
      const { fence, owner, progress, result } = learned;
      return this.complete(job, { fence, owner, progress, value: result }, say);
    }
    const first = job.attemptsMade === 0 && (job.attemptsStarted ?? 0) <= 1;
    // The chosen twin has no live process left: nobody will claim the job, run it here now.
    const chosenKey = this.presenceKey(job, chosen);
    const chosenGone =
      this.parking.takeChosenGone(address.key, job.timestamp, this.options.standbyGraceMs / 2) ||
      this.standbys.isGone(chosenKey);
    if (chosen !== undefined && first && !chosenGone) {
      if (chosen !== self) {
        // Longer than a shadow's hold: a standby may look before its executor has even picked
        // its own copy up (another queue, another process), so the wait includes that pickup.
        const hold = this.holdMs() === 0 ? 0 : this.options.shadowHoldMs;
        const done =
          this.core.distanceMs < NEAR_STORE_MS
            ? await this.standbys.inSlot<ResultType>(job, address, say, hold)
            : undefined;
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
        job.timestamp >= (this.listedAt.get(worker as Worker) ?? 0) + LISTED_MARGIN_MS
      ) {
        return this.runAtOnce(job, token, signal, address, say);
      }
      // The copy's first pickup, not run anywhere by this twin yet: a claim answered before
      // the run (fenced on the store's clock) runs it when the standby has not taken the job.
      let claimed: Awaited<ReturnType<PairCore['claim']>>;
      try {
        claimed = await this.core.claim(address, randomUUID(), 'waiting');
      } catch (err) {
        return await this.lockStoreDown(job, token, signal, err, say);
      }
      if (claimed.reply.kind === 'granted') {
        const start = { token: claimed.token, sentAt: claimed.sentAt, reply: claimed.reply };
        return await this.runGranted(job, token, signal, address, start, say);
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
    const ticket = this.core.ticket(address);
    let parked = false;
    try {
      for (let round = 0; ; round++) {
        // Woken by a settle message that carried the result: done, without asking again.
        if (ticket.done !== undefined)
          return await this.complete(job, toldResult(ticket.done), say);
        let acquired: Acquired;
        try {
          acquired = await this.core.acquire(address, undefined, ask);
        } catch (err) {
          return await this.lockStoreDown(job, token, signal, err, say);
        }
        const { reply } = acquired;
        if (reply.kind === 'granted') {
          ticket.close();
          const start = { token: acquired.token, sentAt: acquired.sentAt, reply };
          return await this.runGranted(job, token, signal, address, start, say);
        }
        if (reply.kind === 'done') {
          await say.twinCompleted(reply.fence, reply.owner);
          // The executor's last progress came with its result, in the same reply.
          await mirrorProgress(job, reply.progress, (err) => this.report(err));
          return parseJson<ResultType>(reply.result) as ResultType;
        }
        if (reply.kind === 'failed') {
          say.peerFailed(reply.fence, reply.owner);
          const info = parseJson<PeerErrorInfo>(reply.error);
          const error = new PeerFailedError(job.id, reply.fence, reply.owner, info);
          // A cancelled pair: this copy fails for good too, without running.
          if (isCancel(info)) throw cancelledCopyError(info.message, error);
          throw error;
        }
        if (reply.recheckMs <= this.soonMs && round < SOON_ROUNDS) {
          // The owner's grace or lease ends within moments (its process was just seen gone):
          // wait exactly that long in the slot. A wake-up would come on the watcher's next
          // tick instead, up to livenessIntervalMs late.
          await sleep(Math.max(reply.recheckMs, 0) + 1);
          continue;
        }
        const hold = round === 0 ? this.holdMs() : 0;
        if (hold > 0) {
          // Short jobs: waiting a moment in the slot for the settle message is far cheaper
          // than parking (moveToDelayed, promote, a second pickup).
          if (await ticket.wait(ownerOf(reply), hold).then(() => ticket.woke)) continue;
        }
        if (await this.park(job, token, ticket, address, reply, round)) {
          parked = true;
          say.shadowed(reply.fence, reply.owner);
          throw new DelayedError();
        }
      }
    } finally {
      if (!parked) ticket.close();
    }
  }

  /**
   * The chosen executor's first pickup: the processor starts now, with fence 1, and the claim
   * travels meanwhile. The standby never takes fence 1 and waits `standbyGraceMs` for this
   * claim, so the two overlap only if the claim loses (the standby ran it, fenced higher):
   * then this run's signal aborts and its copy ends as the pair does. The result is stored
   * after BullMQ completes the copy, not before.
   */
  private async runAtOnce(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    signal: AbortSignal | undefined,
    address: RecordAddress,
    say: Decisions,
  ): Promise<ResultType> {
    const claimToken = randomUUID();
    const sentAt = performance.now();
    const claim = this.core.claim(address, claimToken).then((claimed) => claimed.reply);
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
  private async runGranted(
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

  /**
   * Where the twin chosen for `job` lists its live processes (siblings registry), or
   * undefined when there is nothing to watch: no twin chosen, this twin chosen, liveness off.
   */
  private presenceKey(job: Job, chosen: string | undefined): string | undefined {
    const worker = workerOf(job);
    if (chosen === undefined || !isWorker(worker) || this.presence === undefined) return undefined;
    if (chosen === this.twinOf(worker)) return undefined;
    return siblingsKey(this.options.lock.prefix, chosen, this.pairing.twinQueue(worker, chosen));
  }

  /** Ends a copy as twin-completed with the pair's result. */
  private complete(job: Job, done: PairResult, say: Decisions): Promise<ResultType> {
    return completeFromPair<ResultType>(job, done, say, (err) => this.report(err));
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
    const signal = bullSignal
      ? AbortSignal.any([execution.controller.signal, bullSignal])
      : execution.controller.signal;
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
  private holdMs(): number {
    const cap = this.options.shadowHoldMs;
    if (cap === 0 || this.typicalMs === undefined) return cap;
    const twice = 2 * this.typicalMs + 5;
    return twice <= cap ? twice : 0;
  }

  /**
   * Parks a shadow's copy until the pair settles or its executor dies (the ticket wakes it)
   * or until its lease would end. Returns false, without parking, when a wake-up already came.
   */
  private async park(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    ticket: Ticket,
    address: RecordAddress,
    busy: Busy,
    round: number,
  ): Promise<boolean> {
    let woke: WakeReason | undefined;
    let isParked = false;
    ticket.onNextWake(ownerOf(busy), (reason) => {
      woke = reason;
      if (isParked) this.parking.promote(job, ticket, address, reason);
    });
    if (woke !== undefined && round < 5) return false;
    // With a session, the watcher sees the owner's lease run out (per process, not per job),
    // so the copy parks long: its delay only matters if this process dies meanwhile. Without
    // one, the copy must come back when the record's own lease would end.
    const delay =
      busy.ownerSessionKey !== '' ? this.options.maxParkMs : Math.max(busy.recheckMs, 0) + 5;
    await this.parkCopy(job, token, Math.min(delay, this.options.maxParkMs));
    isParked = true;
    this.parking.hold(address.key, ticket);
    if (woke !== undefined) this.parking.promote(job, ticket, address, woke);
    return true;
  }

  /** Parks the copy (see `Parking.park`); BullMQ must then neither fail nor complete it. */
  private async parkCopy(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    delayMs: number,
  ): Promise<typeof PARKED> {
    await this.parking.park(job, token, delayMs);
    return PARKED;
  }

  private async lockStoreDown(
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

  private handOver(matches: (owner: unknown) => boolean): void {
    for (const execution of this.executions) {
      if (matches(execution.owner)) execution.controller.abort(new ClosedError('the worker'));
    }
  }

  private report(err: Error): void {
    this.options.logger.error(
      { err: { name: err.name, message: err.message } },
      'bullmq-paired: error',
    );
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
