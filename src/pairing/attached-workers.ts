import { setTimeout as sleep } from 'node:timers/promises';
import { type Job, Queue, type Worker } from 'bullmq';
import { asError, LockStoreUnavailableError, PairedError } from '../errors.js';
import type { PairCore } from '../lock/core.js';
import type { WakeReason } from '../lock/ticket.js';
import { chosenExecutor } from './executor.js';
import { recordId, siblingsKey } from './keys.js';
import type { ResolvedProcessorOptions } from './options.js';
import { PAIRING_KEY, type PairingCheck } from './pairing-record.js';
import { pairingStoreOf } from './pairing-store.js';
import type { Parking } from './parking.js';
import { watchReachability } from './queue-reachability.js';
import { siblingsOf } from './siblings.js';
import type { Standbys } from './standby.js';
import type { TwinPresence } from './twin-presence.js';

/** How many delayed jobs a starting worker looks at for copies parked by a dead process. */
const ADOPT_AT_MOST = 10_000;

/** BullMQ builds a worker's jobs with the worker as their (protected) `queue`. */
export const workerOf = (job: Job): unknown => (job as unknown as { queue: unknown }).queue;

/** A job's `queue` that is a BullMQ Worker (what `attach` and the siblings registry need). */
export const isWorker = (value: unknown): value is Worker =>
  typeof (value as Worker | undefined)?.waitUntilReady === 'function' &&
  typeof (value as Worker).opts === 'object';

/**
 * The BullMQ workers a `PairedProcessor` serves: each is listed among its twin's live
 * processes in the lock store (where the other twin's standbys look), taken off that list
 * while its queue server does not answer, and adopts the copies that processes of its twin
 * which died had parked.
 */
export class AttachedWorkers {
  /** Per worker: the queue that promotes the copies it adopts. */
  private readonly adopters = new Map<Worker, Queue>();
  /** Stops the watches in the siblings registry (one per worker). */
  private readonly unlisten: (() => void)[] = [];
  /**
   * Per worker: when (Date.now()) this process was first listed among its twin's processes.
   * A standby runs a job chosen for this twin at once only while the twin has no listed live
   * process, so jobs added since this listing (plus a margin) were not taken that way.
   */
  private readonly listed = new Map<Worker, number>();
  /** Per worker: settles once this process is listed among its twin's processes. */
  private readonly registered = new Map<Worker, Promise<void>>();
  /** `untilReady()`'s loop, shared by every worker. */
  private startup: Promise<boolean> | undefined;

  constructor(
    private readonly core: PairCore,
    private readonly options: Readonly<ResolvedProcessorOptions>,
    private readonly pairing: PairingCheck,
    private readonly parking: Parking,
    private readonly standbys: Standbys,
    private readonly presence: TwinPresence | undefined,
    private readonly isClosed: () => boolean,
    private readonly report: (err: Error) => void,
  ) {}

  /** When this process was listed for `worker` (Date.now()); 0 when not (yet). */
  listedAt(worker: unknown): number {
    return isWorker(worker) ? (this.listed.get(worker) ?? 0) : 0;
  }

  /** Settles once every worker watched so far is listed (or could not be). */
  async allListed(): Promise<void> {
    await Promise.all(this.registered.values());
  }

  /** Stops every watch and closes the adopters' queues. */
  async close(): Promise<void> {
    const queues = [...this.adopters.values()];
    this.adopters.clear();
    for (const stop of this.unlisten.splice(0)) stop();
    await Promise.all(queues.map((queue) => queue.close()));
  }

  /**
   * Lists this process among its twin's for `worker`'s queue, adopts copies parked there by
   * processes that died, and watches its siblings; once per worker, at `attach` or at the
   * worker's first job (a worker made without `attach` is listed too: the other twin's
   * standbys run the jobs chosen for a twin with no listed live process). Resolves once listed.
   */
  watch(worker: Worker): Promise<void> {
    const known = this.registered.get(worker);
    if (known !== undefined) return known;
    const watch = (async (): Promise<void> => {
      await worker.waitUntilReady();
      // Listed under the queue's recorded twin, where the other twin's standbys look. A
      // pairing that contradicts PairedQueue's record is reported here, before any job runs.
      await this.pairing.groupOf(worker).catch(() => {});
      // A copy this worker parks is safe only once siblings know this process exists. A
      // failure here is reported by the start-up checks and the registry itself.
      if (!this.core.options.liveness || !(await this.untilReady()) || this.isClosed()) return;
      const key = siblingsKey(this.options.lock.prefix, this.twinOf(worker), worker.name);
      // When a sibling dies, its parked copies have nobody to wake them: adopt them.
      const adopt = (): void =>
        void this.adoptParked(worker).catch((err: unknown) => this.report(asError(err)));
      // From when the listing was sent: it counts from when the lock store took it.
      const listing = Date.now();
      const siblings = siblingsOf(this.core);
      this.unlisten.push(await siblings.register(key, adopt));
      this.listed.set(worker, listing);
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
  twinOf(worker: unknown): string {
    return (isWorker(worker) && this.pairing.recordedTwin(worker)) || this.options.twin;
  }

  /**
   * Resolves once the lock store has passed its start-up checks, trying again
   * `lockStoreRetryMs` after each failure (each reported, within `lockStoreTimeoutMs`) until
   * it does (true), or until close (false). What a worker does at start (registering
   * with its siblings, adopting parked copies) then waits out a lock store that is down at
   * start instead of being skipped.
   */
  untilReady(): Promise<boolean> {
    this.startup ??= (async () => {
      for (;;) {
        if (this.isClosed()) return false;
        try {
          await this.core.ready();
          return true;
        } catch (err) {
          if (this.isClosed()) return false;
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
    if (!(await this.untilReady()) || this.isClosed()) return;
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
      if (!job.id || this.isClosed()) continue;
      const address = this.core.address(recordId(group, job.id));
      if (this.parking.holds(address.key)) continue;
      const record = await this.core.inspect(address);
      if (record === null) continue; // never paired: a delay of the user's own
      if (this.parking.holds(address.key)) continue; // parked by this process meanwhile
      const ticket = this.core.ticket(address);
      this.parking.hold(address.key, ticket);
      const copy = job;
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
   * Where the twin chosen for `job` lists its live processes (siblings registry), or
   * undefined when there is nothing to watch: no twin chosen, this twin chosen, liveness off.
   */
  presenceKey(job: Job, chosen: string | undefined): string | undefined {
    const worker = workerOf(job);
    if (chosen === undefined || !isWorker(worker) || this.presence === undefined) return undefined;
    if (chosen === this.twinOf(worker)) return undefined;
    return siblingsKey(this.options.lock.prefix, chosen, this.pairing.twinQueue(worker, chosen));
  }
}
