import {
  type Job,
  type JobSchedulerJson,
  type JobSchedulerTemplateOptions,
  type JobState,
  type JobsOptions,
  Queue,
} from 'bullmq';
import { JobSchedulerNotPairedError } from '../errors.js';
import {
  assertJsonData,
  assertKnownOptions,
  integerOption,
  optionError,
  show,
  stringOption,
  twinEntries,
} from '../validate.js';
import { type PairedJob, pairAdded } from './add-results.js';
import {
  chooseExecutor,
  EXECUTOR_OPTION,
  type ExecutorChoice,
  executorOption,
} from './executor.js';
import { pairableJobId } from './job-id.js';
import {
  checkRepeatOptions,
  type EveryPlan,
  onGrid,
  type PairedRepeatOptions,
  pairableSchedulerId,
  planEvery,
  SCHEDULER_ROUNDS,
  SCHEDULER_START_GUARD_MS,
  startOf,
} from './job-schedulers.js';
import { type PairingRecord, pairingGroup, writePairingRecord } from './pairing-record.js';
import { checkParents } from './parent-check.js';
import { type CopyWriter, copyWriter, type Prepared } from './twin-writer.js';
import {
  onTwins,
  resolveTwins,
  type Twin,
  type TwinQueueOptions,
  type TwinTarget,
} from './twins.js';

export type { PairedJob } from './add-results.js';
export type { TwinQueueOptions } from './twins.js';

export interface PairedQueueOptions {
  /**
   * Two or more twins, by name (the names `PairedProcessor`'s `twin` option uses): one per
   * region. With three, one twin executes and the other two shadow it; a takeover goes to
   * exactly one of them (the first to acquire), with the fence one higher.
   */
  twins: Record<string, TwinQueueOptions>;
  /** Job options applied to every add, under the per-call options. */
  defaultJobOptions?: JobsOptions;
  /**
   * Twins on two Redis servers: how long to wait for each side to confirm an add, in ms,
   * before reporting it in a `PartialAddError` (BullMQ itself waits forever for a Redis that
   * is down). Default 5 000.
   */
  addTimeoutMs?: number;
  /**
   * Which twin runs each job in the common case, chosen here at add time and stamped on both
   * copies (job option `pairedExecutor`):
   * - `'balanced'` (default): one twin per job by a hash of its id, so each twin runs half.
   * - `'first'`: whichever twin's worker picks its copy up first. Each copy asks the lock
   *   store before it runs and the executor stores its result after: two lock-store round
   *   trips inside a worker slot, negligible on one site, 40–200 ms over a WAN.
   * - a twin name: that twin runs every job (e.g. the producer's own region).
   * With a chosen executor no lock-store round trip is on the job's path: the executor starts
   * at once and claims the job while it runs (fence 1), and the other twin's copy parks at
   * once (a standby, no slot held) and takes over (fenced higher) when the executor
   * fails, closes or dies, at once when that twin has no live worker process left, or when
   * no worker of that twin has claimed the job within `PairedProcessor`'s `standbyGraceMs`.
   * Jobs of `PairedFlowProducer` flows and of job schedulers are chosen the same way (a
   * scheduler's iterations all go to one twin, chosen by the scheduler's id).
   */
  executor?: ExecutorChoice;
}

/**
 * One job id looked up on both twins (`PairedQueue.getJob`): each twin's copy, `undefined`
 * where that twin does not hold it (not added there, removed, or a scheduler iteration that
 * twin skipped).
 */
export interface PairedJobCopies<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> {
  id: string;
  jobs: Record<string, Job<DataType, ResultType, NameType> | undefined>;
}

/** The template of a job scheduler's jobs, as for BullMQ's `Queue.upsertJobScheduler`. */
export interface PairedJobTemplate<DataType, NameType extends string> {
  name?: NameType;
  data?: DataType;
  opts?: JobSchedulerTemplateOptions;
}

export interface PairedBulkJob<DataType, NameType extends string> {
  name: NameType;
  data: DataType;
  opts?: JobsOptions;
}

const OWNER = 'PairedQueue';

/** Options only BullMQ's job schedulers set on their jobs: an add with them would not repeat. */
const SCHEDULER_OPTIONS = ['repeat', 'repeatJobKey', 'prevMillis'] as const;

/**
 * Adds every job to both twin queues under one job id. On one Redis both copies are added
 * in one MULTI; on two Redis servers a side that fails is reported with a `PartialAddError`
 * that names the twin holding the job, never silently. An add resolves only with ids that
 * exist on both twins: a job BullMQ refuses rejects with `AddRefusedError` (BullMQ's reason
 * as its `cause`), and a deduplicated add resolves with the existing job's id, as in BullMQ.
 *
 * Each twin's queue Redis also gets the pairing itself, at `<prefix>:<queue>:paired` (written
 * before the first add): `PairedProcessor` reads its `group` there, so twins with different
 * queue names need no `group` option, and a worker whose `group` contradicts it refuses jobs
 * instead of running every job on both twins.
 */
export class PairedQueue<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> {
  readonly name: string;
  readonly twins: readonly string[];
  /**
   * The namespace of the pair records, recorded for the workers: the twins' queue name when
   * they share one (two Redis servers), else this PairedQueue's name.
   */
  readonly group: string;
  private readonly twinList: Twin[];
  private readonly defaultJobOptions: JobsOptions;
  private readonly addTimeoutMs: number;
  private readonly executor: ExecutorChoice;
  /** Writes the copies: all at once when every twin lives on one server, else per twin. */
  private readonly writer: CopyWriter<DataType, ResultType, NameType>;
  /** Per twin: the pairing record written to its Redis (retried at the next add if it failed). */
  private readonly recorded = new Map<string, Promise<void>>();

  constructor(name: string, options: PairedQueueOptions) {
    this.name = stringOption(OWNER, 'name', name);
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(
        `${OWNER}: options must be an object with { twins }, received ${show(options)}`,
      );
    }
    assertKnownOptions(OWNER, options, ['twins', 'defaultJobOptions', 'addTimeoutMs', 'executor']);
    this.addTimeoutMs = integerOption(OWNER, 'addTimeoutMs', options.addTimeoutMs ?? 5_000, {
      min: 1,
    });
    const entries = twinEntries(OWNER, options.twins, Number.POSITIVE_INFINITY);
    this.executor = executorOption(
      OWNER,
      options.executor,
      entries.map(([twin]) => twin),
    );
    const defaults = options.defaultJobOptions ?? {};
    if (typeof defaults !== 'object' || Array.isArray(defaults)) {
      throw optionError(OWNER, 'defaultJobOptions', defaults, "BullMQ's JobsOptions (an object)");
    }
    if ('jobId' in defaults) {
      // One id for every job would make every add after the first a duplicate.
      throw optionError(OWNER, 'defaultJobOptions', defaults, 'free of jobId (give it per add)');
    }
    this.defaultJobOptions = defaults;
    // Every twin is checked before any connection opens.
    const { configs, oneServer } = resolveTwins(
      OWNER,
      this.name,
      entries as [string, TwinQueueOptions][],
      options.twins,
    );
    this.group = pairingGroup(
      this.name,
      configs.map((c) => c.queueName),
    );
    // BullMQ may still refuse a queue (its own checks): close what was opened before it, so a
    // caught error does not keep the process alive on open connections.
    const opened: { close(): Promise<unknown> }[] = [];
    try {
      this.twinList = configs.map((c) => {
        const opts = { connection: c.connection, prefix: c.prefix };
        // BullMQ's overloads: a backend factory third, or none for Redis.
        const queue =
          c.backend === undefined
            ? new Queue(c.queueName, opts)
            : (new Queue(c.queueName, opts as never, c.backend) as Queue);
        opened.push(queue);
        return { ...c, queue };
      });
      const host = {
        twins: this.twinList,
        record: (t: Twin) => this.record(t),
        timeoutMs: this.addTimeoutMs,
      };
      this.writer = copyWriter(host, oneServer ? configs[0] : undefined);
    } catch (err) {
      for (const resource of opened) void resource.close().catch(() => {});
      throw err;
    }
    this.twins = this.twinList.map((t) => t.name);
  }

  /** The BullMQ queue of one twin, e.g. to read a copy with `getJob`. */
  queue(twin: string): Queue<DataType, ResultType, NameType> {
    const found = this.twinList.find((t) => t.name === twin);
    if (found === undefined)
      throw new TypeError(`${OWNER}: no twin "${twin}"; twins are ${this.twins.join(', ')}`);
    return found.queue as unknown as Queue<DataType, ResultType, NameType>;
  }

  /**
   * Adds the job to both twins under one id (`opts.jobId`, or a generated UUID). Resolves with
   * the id BullMQ returned on both (for a deduplicated add: the existing job's). Rejects with
   * `AddRefusedError` when BullMQ refuses the job (e.g. a missing parent), with
   * `PartialAddError` when a twin's Redis did not take it, and with
   * `DeduplicationMismatchError` when the twins deduplicate it into different jobs.
   */
  async add(
    name: NameType,
    data: DataType,
    opts?: JobsOptions,
  ): Promise<PairedJob<DataType, ResultType, NameType>> {
    const [added] = await this.addBulk([{ name, data, ...(opts ? { opts } : {}) }]);
    return added as PairedJob<DataType, ResultType, NameType>;
  }

  /**
   * Adds many jobs to both twins; on one Redis all copies go in one MULTI. Rejects as `add`
   * does, after adding what BullMQ took: the error names the jobs concerned.
   */
  async addBulk(
    jobs: PairedBulkJob<DataType, NameType>[],
  ): Promise<PairedJob<DataType, ResultType, NameType>[]> {
    // Every id is checked before anything is written.
    const prepared: Prepared<DataType, NameType>[] = jobs.map((job) => {
      const opts = { ...this.defaultJobOptions, ...job.opts };
      for (const internal of SCHEDULER_OPTIONS) {
        const value = (opts as Record<string, unknown>)[internal];
        if (value !== undefined) {
          throw optionError(
            OWNER,
            `opts.${internal}`,
            value,
            'absent: BullMQ 6 repeats jobs through job schedulers; use PairedQueue.upsertJobScheduler, whose iterations pair on both twins',
          );
        }
      }
      assertJsonData(`${OWNER}.add`, job.data);
      const jobId = pairableJobId(opts.jobId);
      return {
        name: job.name,
        data: job.data,
        opts: { ...opts, jobId, ...this.executorFor(jobId) },
      };
    });
    await checkParents(OWNER, prepared, this.twinList, this.addTimeoutMs);
    const write = (jobs: Prepared<DataType, NameType>[][], ids: string[]) =>
      this.writer.write(jobs, ids);
    const copies = await write(
      this.twinList.map(() => prepared),
      prepared.map((job) => job.opts.jobId),
    );
    return pairAdded(this.twins, prepared, copies, write);
  }

  /**
   * Connects to both twins' Redis and records the pairing there, as the first add otherwise
   * would: call it at start so the first jobs do not wait for it. Rejects like an add that
   * reached a twin only (`PartialTwinOperationError`) or was refused (`PairingMismatchError`).
   */
  async waitUntilReady(): Promise<void> {
    await this.onTwins('waitUntilReady()', async (t) => {
      await t.queue.waitUntilReady();
      await this.record(t);
    });
  }

  /** Writes the pairing to a twin's Redis once (again at the next add when it failed). */
  private record(twin: Twin): Promise<void> {
    let done = this.recorded.get(twin.name);
    if (done === undefined) {
      const record: PairingRecord = {
        pairedQueue: this.name,
        group: this.group,
        twin: twin.name,
        twins: Object.fromEntries(
          this.twinList.map((t) => [t.name, { queue: t.queueName, prefix: t.prefix }]),
        ),
      };
      done = writePairingRecord(twin.queue, record);
      done.catch(() => this.recorded.delete(twin.name));
      this.recorded.set(twin.name, done);
    }
    return done;
  }

  /**
   * The job option that names the twin chosen to run `jobId` (`pairedExecutor`), to spread
   * into a copy's options; empty under `executor: 'first'`. Used for adds, flows and job
   * schedulers alike.
   */
  executorFor(jobId: string): Record<string, string> {
    const executor = chooseExecutor(this.executor, this.twins, jobId);
    return executor === undefined ? {} : { [EXECUTOR_OPTION]: executor };
  }

  /**
   * Creates or updates a job scheduler on both twins, so that each iteration is one job id on
   * both (`repeat:<schedulerId>:<millis>`, BullMQ's naming) and runs once. Takes BullMQ's
   * arguments; resolves with the next job on each twin (`undefined` where BullMQ added none:
   * its `limit` or `endDate` reached).
   *
   * An `every` scheduler's iterations are placed on one grid for both twins (`offset + k ×
   * every`): the first slot at least `SCHEDULER_START_GUARD_MS` (1 s) ahead, or after
   * `startDate`; the grid's phase is `offset`, else `startDate`'s, else that of the existing
   * scheduler, so upserting again (e.g. at each deploy) keeps the slots. Schedulers found on
   * another grid are replaced. A `pattern` (cron) scheduler's iterations are the pattern's own
   * instants on both twins. Refused with `JobSchedulerNotPairedError`: an id with ':',
   * `immediately`, and twins whose iterations stay off the grid after re-upserts. A twin that
   * refuses or does not answer within `addTimeoutMs`: `PartialTwinOperationError` (call again).
   */
  async upsertJobScheduler(
    schedulerId: string,
    repeatOpts: PairedRepeatOptions,
    template: PairedJobTemplate<DataType, NameType> = {},
  ): Promise<Record<string, Job<DataType, ResultType, NameType> | undefined>> {
    const id = pairableSchedulerId(schedulerId);
    checkRepeatOptions(id, repeatOpts);
    const operation = `upsertJobScheduler("${id}")`;
    // Every iteration of one scheduler goes to one twin: BullMQ names the iterations itself,
    // so the choice is made by the scheduler's id and kept in the template on both twins.
    const jobTemplate = {
      ...template,
      opts: { ...this.defaultJobOptions, ...template.opts, ...this.executorFor(id) },
    };
    type Next = Job<DataType, ResultType, NameType> | undefined;
    const upsert = (twin: Twin, repeat: PairedRepeatOptions): Promise<Next> =>
      twin.queue.upsertJobScheduler(id, repeat, jobTemplate) as Promise<Next>;
    await this.onTwins(operation, (t) => this.record(t));
    if (repeatOpts.every === undefined) {
      return this.onTwins(operation, (t) => upsert(t, repeatOpts));
    }
    const existing = await this.onTwins(operation, (t) => t.queue.getJobScheduler(id));
    const plan: EveryPlan = planEvery(repeatOpts, Object.values(existing));
    if (plan.removeFirst) await this.onTwins(operation, (t) => t.queue.removeJobScheduler(id));
    // Every twin's client connected first: BullMQ reads the clock for the upsert only then.
    await this.onTwins(operation, (t) => t.queue.waitUntilReady());
    const next: Record<string, Next> = {};
    let targets = this.twinList;
    for (let round = 0; ; round++) {
      const { offset: _offset, startDate: _startDate, ...rest } = repeatOpts;
      const startDate = startOf(plan, repeatOpts, Date.now(), round);
      const repeat: PairedRepeatOptions = {
        ...rest,
        startDate,
        // BullMQ takes an offset of 0 as none, and derives it from startDate: 0 again.
        ...(plan.offset ? { offset: plan.offset } : {}),
      };
      Object.assign(next, await this.onTwins(operation, (t) => upsert(t, repeat), targets));
      const off = targets.filter((t) => {
        const job = next[t.name];
        return job !== undefined && !onGrid(plan, id, job.id);
      });
      if (off.length === 0) return next;
      if (round + 1 >= SCHEDULER_ROUNDS) {
        throw new JobSchedulerNotPairedError(
          id,
          `after ${SCHEDULER_ROUNDS} upserts the next iteration of twin(s) ${off.map((t) => `${t.name} ("${next[t.name]?.id}")`).join(', ')} is still off the common grid (every ${plan.every} ms at offset ${plan.offset}): BullMQ read its clock after the start date given (${(SCHEDULER_START_GUARD_MS * 2 ** (SCHEDULER_ROUNDS - 1)) / 1_000} s ahead at last). Remove the scheduler (removeJobScheduler) and upsert it again`,
        );
      }
      // BullMQ used its own clock (the start date had passed): start those twins anew, later.
      await this.onTwins(operation, (t) => t.queue.removeJobScheduler(id), off);
      targets = off;
    }
  }

  /**
   * Removes a job scheduler and its next job from both twins; per twin, whether it was there
   * (BullMQ's answer). Iterations already waiting or running stay, and run paired.
   */
  async removeJobScheduler(schedulerId: string): Promise<Record<string, boolean>> {
    return this.onTwins(`removeJobScheduler("${schedulerId}")`, (t) =>
      t.queue.removeJobScheduler(schedulerId),
    );
  }

  /** A job scheduler as each twin holds it (`undefined` where it does not). */
  async getJobScheduler(
    schedulerId: string,
  ): Promise<Record<string, JobSchedulerJson<DataType> | undefined>> {
    return this.onTwins(
      `getJobScheduler("${schedulerId}")`,
      (t) =>
        t.queue.getJobScheduler(schedulerId) as Promise<JobSchedulerJson<DataType> | undefined>,
    );
  }

  /**
   * Both copies of a job, by id: `{ id, jobs: { [twin]: Job | undefined } }`, or `undefined`
   * when no twin holds it (as BullMQ's `getJob`).
   */
  async getJob(
    jobId: string,
  ): Promise<PairedJobCopies<DataType, ResultType, NameType> | undefined> {
    const jobs = await this.onTwins(
      `getJob("${jobId}")`,
      (t) => t.queue.getJob(jobId) as Promise<Job<DataType, ResultType, NameType> | undefined>,
    );
    return Object.values(jobs).some((job) => job !== undefined) ? { id: jobId, jobs } : undefined;
  }

  /** BullMQ's state of each twin's copy of a job (`'unknown'` where that twin has none). */
  async getJobState(jobId: string): Promise<Record<string, JobState | 'unknown'>> {
    return this.onTwins(`getJobState("${jobId}")`, (t) => t.queue.getJobState(jobId));
  }

  /**
   * Pauses both twins' queues (BullMQ's `pause`): no worker of either picks up a copy until
   * `resume`. To pause one twin only (its copies complete from the records after it resumes),
   * use `queue(twin).pause()`.
   */
  async pause(): Promise<void> {
    await this.onTwins('pause()', (t) => t.queue.pause());
  }

  /** Resumes both twins' queues. */
  async resume(): Promise<void> {
    await this.onTwins('resume()', (t) => t.queue.resume());
  }

  /** Whether each twin's queue is paused. */
  async isPaused(): Promise<Record<string, boolean>> {
    return this.onTwins('isPaused()', (t) => t.queue.isPaused());
  }

  /**
   * BullMQ's `drain` on both twins: removes the waiting copies (and the delayed ones with
   * `delayed`, parked shadow copies included); running copies finish.
   */
  async drain(delayed?: boolean): Promise<void> {
    await this.onTwins('drain()', (t) => t.queue.drain(delayed), this.twinList, false);
  }

  /** BullMQ's `clean` on both twins; the ids removed on each. */
  async clean(
    grace: number,
    limit: number,
    type?: Parameters<Queue['clean']>[2],
  ): Promise<Record<string, string[]>> {
    return this.onTwins('clean()', (t) => t.queue.clean(grace, limit, type), this.twinList, false);
  }

  /**
   * BullMQ's `obliterate` on both twins: removes each queue with its jobs and schedulers.
   * BullMQ leaves the pairing recorded at `<prefix>:<queue>:paired`, so workers keep their
   * group; pair records in the lock store stay until their retention ends.
   */
  async obliterate(opts?: Parameters<Queue['obliterate']>[0]): Promise<void> {
    await this.onTwins('obliterate()', (t) => t.queue.obliterate(opts), this.twinList, false);
  }

  /**
   * Each twin's queue, prefix and connection, and a way to record the pairing there (for
   * `PairedFlowProducer`, which adds trees of jobs across several PairedQueues).
   * @internal
   */
  twinTargets(): TwinTarget[] {
    return this.twinList.map((t) => ({
      twin: t.name,
      queueName: t.queueName,
      prefix: t.prefix,
      connection: t.connection,
      backend: t.backend,
      record: () => this.record(t),
    }));
  }

  /** `addTimeoutMs`, for `PairedFlowProducer`. @internal */
  get twinTimeoutMs(): number {
    return this.addTimeoutMs;
  }

  /** `onTwins` (twins.ts) over this queue's twins, bounded by `addTimeoutMs`. */
  private onTwins<T>(
    operation: string,
    op: (twin: Twin) => Promise<T>,
    twins: readonly Twin[] = this.twinList,
    bounded = true,
  ): Promise<Record<string, T>> {
    return onTwins(operation, op, twins, this.addTimeoutMs, bounded);
  }

  async close(): Promise<void> {
    await Promise.all([...this.twinList.map((t) => t.queue.close()), this.writer.close()]);
  }
}
