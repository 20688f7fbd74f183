import {
  type ConnectionOptions,
  FlowProducer,
  Job,
  type JobSchedulerJson,
  type JobSchedulerTemplateOptions,
  type JobState,
  type JobsOptions,
  Queue,
} from 'bullmq';
import {
  AddRefusedError,
  DeduplicationMismatchError,
  JobSchedulerNotPairedError,
  PairingMismatchError,
  PartialAddError,
  PartialTwinOperationError,
} from '../errors.js';
import {
  assertJsonData,
  assertKnownOptions,
  integerOption,
  optionError,
  show,
  stringOption,
  twinEntries,
} from '../validate.js';
import { CONNECTION_EXPECTED, connectionProblem, sameRedis } from './connection.js';
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
import {
  PAIRING_KEY,
  type PairingRecord,
  pairingGroup,
  writePairingRecord,
} from './pairing-record.js';

export interface TwinQueueOptions {
  /**
   * Connection to this twin's Redis: ioredis options (as for a BullMQ `Queue`, `url`
   * included) or an ioredis `Redis`/`Cluster` instance. Other drivers (node-redis, Bun) are
   * refused with a TypeError: PairedQueue reads ioredis' options to tell whether both twins
   * live on one Redis.
   */
  connection: ConnectionOptions;
  /** Queue name there. Default: the `PairedQueue` name. */
  queue?: string;
  /** BullMQ key prefix there. Default `'bull'`. */
  prefix?: string;
}

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

/** One job as added to both twins: one id, one BullMQ job per twin. */
export interface PairedJob<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> {
  /**
   * The id BullMQ returned on both twins: the one asked for, or, for an add that BullMQ
   * deduplicated (`opts.deduplication`), the id of the existing job it was folded into.
   */
  id: string;
  jobs: Record<string, Job<DataType, ResultType, NameType>>;
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

interface Twin {
  name: string;
  queueName: string;
  prefix: string;
  connection: ConnectionOptions;
  queue: Queue;
}

/** One twin's side of a PairedQueue, for `PairedFlowProducer`. */
export interface TwinTarget {
  twin: string;
  queueName: string;
  prefix: string;
  connection: ConnectionOptions;
  /** Writes the pairing record to this twin's queue Redis (once; as before an add). */
  record(): Promise<void>;
}

/** One job as an add writes it, its id checked (`opts.jobId` always set). */
type Prepared<DataType, NameType extends string> = Required<PairedBulkJob<DataType, NameType>> & {
  opts: JobsOptions & { jobId: string };
};

/** One copy after an add: the Job, and the id BullMQ returned for it or the error it refused it with. */
interface Copy<DataType, ResultType, NameType extends string> {
  job: Job<DataType, ResultType, NameType>;
  answer: string | Error;
}

type JobQueue = ConstructorParameters<typeof Job>[0];

const OWNER = 'PairedQueue';

interface RedisGet {
  get(key: string): Promise<string | null>;
}

/** Options only BullMQ's job schedulers set on their jobs: an add with them would not repeat. */
const SCHEDULER_OPTIONS = ['repeat', 'repeatJobKey', 'prevMillis'] as const;

/** Rejects when `promise` has not settled after `ms`; the operation itself may still land later. */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what = 'the add',
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${ms} ms (${what} may still land later)`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** BullMQ's add scripts answer a refusal with a negative code (e.g. -5: missing parent). */
function errorCode(id: unknown): number | undefined {
  if (typeof id === 'number') return id < 0 ? id : undefined;
  return typeof id === 'string' && /^-\d+$/.test(id) ? Number(id) : undefined;
}

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
  /** Set when both twins live on one Redis: it adds both copies atomically. */
  private readonly flows: FlowProducer | undefined;
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
    const configs = entries.map(([twin, config]) => this.twinConfig(twin, config));
    const connections = entries.map(([, config]) => config.connection);
    // Twins that share a Redis need queues of their own there.
    configs.forEach((ca, i) => {
      configs.slice(i + 1).forEach((cb, n) => {
        const shared = sameRedis(
          connections[i] as ConnectionOptions,
          connections[i + 1 + n] as ConnectionOptions,
        );
        if (shared && ca.queueName === cb.queueName && ca.prefix === cb.prefix) {
          throw optionError(
            OWNER,
            'twins',
            options.twins,
            'different queues: on one Redis give each twin its own `queue` name',
          );
        }
      });
    });
    const first = connections[0] as ConnectionOptions;
    const oneRedis = connections.every((c) => sameRedis(first, c));
    this.group = pairingGroup(
      this.name,
      configs.map((c) => c.queueName),
    );
    // BullMQ may still refuse a queue (its own checks): close what was opened before it, so a
    // caught error does not keep the process alive on open connections.
    const opened: { close(): Promise<unknown> }[] = [];
    try {
      this.twinList = configs.map((c) => {
        const queue = new Queue(c.queueName, { connection: c.connection, prefix: c.prefix });
        opened.push(queue);
        return { ...c, queue };
      });
      this.flows = oneRedis ? new FlowProducer({ connection: first }) : undefined;
    } catch (err) {
      for (const resource of opened) void resource.close().catch(() => {});
      throw err;
    }
    this.twins = this.twinList.map((t) => t.name);
  }

  private twinConfig(twin: string, config: TwinQueueOptions) {
    if (twin.length === 0 || twin.includes(':')) {
      throw optionError(OWNER, 'twins', twin, 'keyed by names that are non-empty and free of ":"');
    }
    if (typeof config !== 'object' || config === null || config.connection === undefined) {
      throw optionError(
        OWNER,
        `twins.${twin}.connection`,
        config?.connection,
        'a Redis connection (options or client)',
      );
    }
    assertKnownOptions(`${OWNER} twins.${twin}`, config, ['connection', 'queue', 'prefix']);
    const problem = connectionProblem(config.connection);
    if (problem !== undefined) {
      throw new TypeError(
        `${OWNER}: option "twins.${twin}.connection" must be ${CONNECTION_EXPECTED}, received ${problem}. PairedQueue reads ioredis' options to tell whether the twins share one Redis (one MULTI) or live on two (high availability)`,
      );
    }
    const queueName =
      config.queue === undefined
        ? this.name
        : stringOption(OWNER, `twins.${twin}.queue`, config.queue);
    const prefix =
      config.prefix === undefined
        ? 'bull'
        : stringOption(OWNER, `twins.${twin}.prefix`, config.prefix);
    return { name: twin, queueName, prefix, connection: config.connection };
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
    const ids = prepared.map((job) => job.opts.jobId);
    await this.checkParents(prepared);
    const copies = await this.write(
      this.twinList.map(() => prepared),
      ids,
    );
    const results: PairedJob<DataType, ResultType, NameType>[] = [];
    const refused: { ids: string[]; errors: Record<string, Error>; added: Set<string> } = {
      ids: [],
      errors: {},
      added: new Set(),
    };
    const mismatches: DeduplicationMismatchError[] = [];
    // Copies some twin deduplicated while the other added the job anew: completed below.
    const incomplete: { ti: number; i: number }[] = [];
    prepared.forEach((job, i) => {
      const row = copies.map((perTwin) => perTwin[i] as Copy<DataType, ResultType, NameType>);
      const id = job.opts.jobId;
      if (row.some((c) => c.answer instanceof Error)) {
        refused.ids.push(id);
        row.forEach((c, ti) => {
          const twin = (this.twinList[ti] as Twin).name;
          if (c.answer instanceof Error) refused.errors[twin] ??= c.answer;
          else if (c.answer === id) refused.added.add(twin);
        });
        return;
      }
      const answers = row.map((c) => c.answer as string);
      if (answers.every((a) => a === answers[0])) {
        results[i] = this.pairedJob(answers[0] as string, row);
      } else if (answers.includes(id)) {
        // One twin's deduplication key had expired or been removed (its job finished there
        // first): that twin added the job. Add it to the other one too, so it runs once, paired.
        answers.forEach((a, ti) => {
          if (a !== id) incomplete.push({ ti, i });
        });
        results[i] = this.pairedJob(id, row);
      } else {
        mismatches.push(
          new DeduplicationMismatchError(
            id,
            job.opts.deduplication?.id,
            Object.fromEntries(answers.map((a, ti) => [(this.twinList[ti] as Twin).name, a])),
          ),
        );
      }
    });
    if (incomplete.length > 0) {
      await this.completePairs(prepared, incomplete, results, refused);
    }
    if (refused.ids.length > 0) {
      throw new AddRefusedError(refused.ids, refused.errors, [...refused.added]);
    }
    if (mismatches.length > 0) throw mismatches[0];
    return results;
  }

  /** Adds, without its deduplication option, each copy a twin deduplicated into another job. */
  private async completePairs(
    prepared: Prepared<DataType, NameType>[],
    incomplete: { ti: number; i: number }[],
    results: PairedJob<DataType, ResultType, NameType>[],
    refused: { ids: string[]; errors: Record<string, Error>; added: Set<string> },
  ): Promise<void> {
    const indexes = this.twinList.map((_, ti) =>
      incomplete.filter((c) => c.ti === ti).map(({ i }) => i),
    );
    const perTwin = indexes.map((list) =>
      list.map((i) => {
        const job = prepared[i] as Prepared<DataType, NameType>;
        const { deduplication: _deduplication, ...opts } = job.opts;
        return { ...job, opts };
      }),
    );
    const ids = incomplete.map(({ i }) => (prepared[i] as Prepared<DataType, NameType>).opts.jobId);
    const copies = await this.write(perTwin, ids);
    copies.forEach((list, ti) => {
      const twin = (this.twinList[ti] as Twin).name;
      list.forEach((copy, n) => {
        const i = indexes[ti]?.[n] as number;
        const id = (prepared[i] as Prepared<DataType, NameType>).opts.jobId;
        const paired = results[i];
        if (copy.answer === id && paired !== undefined) {
          paired.jobs[twin] = copy.job;
          return;
        }
        // Refused, or deduplicated again: the job stays only where it was added.
        refused.ids.push(id);
        refused.errors[twin] ??=
          copy.answer instanceof Error
            ? copy.answer
            : new Error(`deduplicated into job "${copy.answer}" even without its deduplication`);
        for (const t of this.twinList) if (t.name !== twin) refused.added.add(t.name);
      });
    });
  }

  private pairedJob(
    id: string,
    row: Copy<DataType, ResultType, NameType>[],
  ): PairedJob<DataType, ResultType, NameType> {
    return {
      id,
      jobs: Object.fromEntries(row.map((c, ti) => [(this.twinList[ti] as Twin).name, c.job])),
    };
  }

  /**
   * Adds `jobs[ti]` to twin `ti` (after recording the pairing there): in one MULTI on one
   * Redis, else to each twin in parallel, a twin that fails or does not answer within
   * `addTimeoutMs` making it a `PartialAddError`. Returns, per twin and job, what BullMQ answered.
   */
  private async write(
    jobs: Prepared<DataType, NameType>[][],
    ids: string[],
  ): Promise<Copy<DataType, ResultType, NameType>[][]> {
    // Built up front: BullMQ checks its options here, before anything is written.
    const built = jobs.map((list, ti) => list.map((job) => this.build(ti, job)));
    if (this.flows !== undefined) {
      const flows = this.flows;
      await Promise.all(this.twinList.map((t) => this.record(t)));
      const flat = built.flat();
      await flows.waitUntilReady();
      const replies = await flows.getBackend().addFlow(flat.map((b) => b.entry));
      let n = 0;
      return built.map((list, ti) =>
        list.map(({ job }) => {
          const [err, reply] = replies[n++] ?? [new Error('BullMQ gave no reply for this job'), ''];
          return { job, answer: this.answerOf(ti, job, err ?? reply) };
        }),
      );
    }
    // The pairing first, on both: a conflicting one must stop the add before either copy lands.
    const recorded = await Promise.allSettled(
      this.twinList.map((t, ti) =>
        (jobs[ti] ?? []).length === 0
          ? Promise.resolve()
          : withTimeout(this.record(t), this.addTimeoutMs),
      ),
    );
    for (const result of recorded) {
      if (result.status === 'rejected' && result.reason instanceof PairingMismatchError) {
        throw result.reason;
      }
    }
    const settled = await Promise.allSettled(
      this.twinList.map((t, ti) => {
        const mine = jobs[ti] ?? [];
        const record = recorded[ti] as PromiseSettledResult<void>;
        if (record.status === 'rejected') return Promise.reject(record.reason);
        return mine.length === 0
          ? Promise.resolve([])
          : withTimeout(t.queue.addBulk(mine), this.addTimeoutMs);
      }),
    );
    const failed: Record<string, Error> = {};
    const added: string[] = [];
    settled.forEach((result, ti) => {
      const twin = (this.twinList[ti] as Twin).name;
      if (result.status === 'rejected') {
        failed[twin] =
          result.reason instanceof Error ? result.reason : new Error(String(result.reason));
      } else if ((jobs[ti] ?? []).length > 0) {
        added.push(twin);
      }
    });
    if (Object.keys(failed).length > 0) throw new PartialAddError(ids, added, failed);
    return settled.map((result, ti) =>
      (result as PromiseFulfilledResult<Job[]>).value.map((job) => {
        const typed = job as Job<DataType, ResultType, NameType>;
        return { job: typed, answer: this.answerOf(ti, typed, typed.id) };
      }),
    );
  }

  /** A copy as BullMQ's `Queue.add` builds it; its constructor and `toFlowEntry` check the options. */
  private build(ti: number, job: Prepared<DataType, NameType>) {
    const twin = this.twinList[ti] as Twin;
    const copy = new Job<DataType, ResultType, NameType>(
      twin.queue as unknown as JobQueue,
      job.name,
      job.data,
      job.opts,
      job.opts.jobId,
    );
    const entry = copy.toFlowEntry({
      parentKey: copy.parentKey,
      parentDependenciesKey: copy.parentKey ? `${copy.parentKey}:dependencies` : undefined,
    });
    return { job: copy, entry };
  }

  /** The id BullMQ returned for a copy, or the error it refused it with (a negative code, as `Queue.add` turns it). */
  private answerOf(ti: number, job: Job, reply: unknown): string | Error {
    if (reply instanceof Error) return reply;
    const code = errorCode(reply);
    if (code !== undefined) {
      return (this.twinList[ti] as Twin).queue.getBackend().finishedErrors({
        code,
        jobId: job.opts.jobId as string,
        ...(job.parentKey ? { parentKey: job.parentKey } : {}),
        command: 'addJob',
      });
    }
    if (typeof reply !== 'string' || reply === '') {
      return new Error(`BullMQ answered the add of job "${job.opts.jobId}" with ${String(reply)}`);
    }
    job.id = reply;
    return reply;
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
   * Refuses (TypeError, before anything is written) a job whose `opts.parent` is a copy that
   * belongs to another twin than the copy being added there: with two queue names on one
   * Redis, both copies would become children of the one twin's parent copy, and the other
   * twin's parent copy, waiting for no child, could run first (it is the same pair). Each
   * twin reads the pairing recorded for the parent's queue on its own Redis: on two Redis
   * servers with one queue name, each copy's parent is its own twin's copy, as it should be.
   */
  private async checkParents(prepared: Prepared<DataType, NameType>[]): Promise<void> {
    const parents = [
      ...new Set(prepared.flatMap((job) => (job.opts.parent ? [job.opts.parent.queue] : []))),
    ];
    if (parents.length === 0) return;
    const reads = await Promise.allSettled(
      this.twinList.map(async (t) => {
        // BullMQ 6 keeps the client on the queue's backend (as pairing-record.ts reads it).
        const backend = t.queue.backend as unknown as { client: Promise<RedisGet> };
        const client = await withTimeout(backend.client, this.addTimeoutMs, 'the read');
        const raw = await withTimeout(
          Promise.all(parents.map((queueKey) => client.get(`${queueKey}:${PAIRING_KEY}`))),
          this.addTimeoutMs,
          'the read',
        );
        return raw.map((r) => {
          try {
            return (JSON.parse(r ?? 'null') as Partial<PairingRecord> | null) ?? undefined;
          } catch {
            return undefined;
          }
        });
      }),
    );
    reads.forEach((read, ti) => {
      // Unreadable: the add itself reports that twin.
      if (read.status === 'rejected') return;
      const twin = this.twinList[ti] as Twin;
      read.value.forEach((pairing, pi) => {
        if (typeof pairing?.twin !== 'string' || pairing.twin === twin.name) return;
        const job = prepared.find((j) => j.opts.parent?.queue === parents[pi]);
        throw new TypeError(
          `${OWNER}: option "opts.parent" of job "${job?.opts.jobId}" names ${parents[pi]}:${job?.opts.parent?.id}, twin ${pairing.twin}'s copy of a job of PairedQueue "${pairing.pairedQueue}"; twin ${twin.name}'s copy would become its child too, and twin ${twin.name}'s own parent copy would not wait for it. Add the parent and its children together with PairedFlowProducer, which gives each twin's children that twin's parent`,
        );
      });
    });
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
      record: () => this.record(t),
    }));
  }

  /** `addTimeoutMs`, for `PairedFlowProducer`. @internal */
  get twinTimeoutMs(): number {
    return this.addTimeoutMs;
  }

  /**
   * Runs `op` on each of `twins` in parallel, each bounded by `addTimeoutMs`; resolves per
   * twin. A twin that fails: rejects with its own error when no twin succeeded (nothing took
   * effect, as in BullMQ), else with `PartialTwinOperationError` naming where it did. A
   * conflicting recorded pairing is thrown as is.
   */
  private async onTwins<T>(
    operation: string,
    op: (twin: Twin) => Promise<T>,
    twins: readonly Twin[] = this.twinList,
    bounded = true,
  ): Promise<Record<string, T>> {
    const settled = await Promise.allSettled(
      twins.map((t) => (bounded ? withTimeout(op(t), this.addTimeoutMs, operation) : op(t))),
    );
    const done: Record<string, T> = {};
    const failed: Record<string, Error> = {};
    settled.forEach((result, i) => {
      const twin = (twins[i] as Twin).name;
      if (result.status === 'fulfilled') done[twin] = result.value;
      else {
        if (result.reason instanceof PairingMismatchError) throw result.reason;
        failed[twin] =
          result.reason instanceof Error ? result.reason : new Error(String(result.reason));
      }
    });
    const errors = Object.values(failed);
    if (errors.length === 0) return done;
    if (Object.keys(done).length === 0) throw errors[0];
    throw new PartialTwinOperationError(operation, Object.keys(done), failed);
  }

  async close(): Promise<void> {
    await Promise.all([...this.twinList.map((t) => t.queue.close()), this.flows?.close()]);
  }
}
