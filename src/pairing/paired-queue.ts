import { type ConnectionOptions, FlowProducer, type Job, type JobsOptions, Queue } from 'bullmq';
import { PartialAddError } from '../errors.js';
import { assertKnownOptions, integerOption, optionError, stringOption } from '../validate.js';
import { pairableJobId } from './job-id.js';

export interface TwinQueueOptions {
  /** Connection to this twin's Redis, as for a BullMQ `Queue`. */
  connection: ConnectionOptions;
  /** Queue name there. Default: the `PairedQueue` name. */
  queue?: string;
  /** BullMQ key prefix there. Default `'bull'`. */
  prefix?: string;
}

export interface PairedQueueOptions {
  /** Exactly two twins, by name (the names `PairedProcessor`'s `twin` option uses). */
  twins: Record<string, TwinQueueOptions>;
  /** Job options applied to every add, under the per-call options. */
  defaultJobOptions?: JobsOptions;
  /**
   * Twins on two Redis servers: how long to wait for each side to confirm an add, in ms,
   * before reporting it in a `PartialAddError` (BullMQ itself waits forever for a Redis that
   * is down). Default 5 000.
   */
  addTimeoutMs?: number;
}

/** One job as added to both twins: one id, one BullMQ job per twin. */
export interface PairedJob<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> {
  id: string;
  jobs: Record<string, Job<DataType, ResultType, NameType>>;
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
  queue: Queue;
}

const OWNER = 'PairedQueue';

/** host:port/db of a connection (options or client), or undefined when it cannot be told. */
function redisIdentity(connection: ConnectionOptions): string | undefined {
  const options = (connection as { options?: unknown }).options ?? connection;
  if (
    typeof options !== 'object' ||
    options === null ||
    (connection as { isCluster?: boolean }).isCluster
  ) {
    return undefined;
  }
  const o = options as { host?: string; port?: number; db?: number; path?: string };
  return o.path ?? `${o.host ?? 'localhost'}:${o.port ?? 6379}/${o.db ?? 0}`;
}

/** Rejects when `promise` has not settled after `ms`; the operation itself may still land later. */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${ms} ms (the add may still land later)`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Adds every job to both twin queues under one job id. On one Redis both copies are added
 * in one MULTI (both or neither); on two Redis servers a side that fails is reported with
 * a `PartialAddError` that names the twin holding the job, never silently.
 */
export class PairedQueue<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> {
  readonly name: string;
  readonly twins: readonly string[];
  private readonly twinList: Twin[];
  private readonly defaultJobOptions: JobsOptions;
  private readonly addTimeoutMs: number;
  /** Set when both twins live on one Redis: it adds both copies atomically. */
  private readonly flows: FlowProducer | undefined;

  constructor(name: string, options: PairedQueueOptions) {
    this.name = stringOption(OWNER, 'name', name);
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(
        `${OWNER}: options must be an object with { twins }, received ${String(options)}`,
      );
    }
    assertKnownOptions(OWNER, options, ['twins', 'defaultJobOptions', 'addTimeoutMs']);
    this.addTimeoutMs = integerOption(OWNER, 'addTimeoutMs', options.addTimeoutMs ?? 5_000, {
      min: 1,
    });
    const entries = Object.entries(options.twins ?? {});
    if (entries.length !== 2) {
      throw optionError(
        OWNER,
        'twins',
        options.twins,
        'an object with exactly two twins, e.g. { eu: {...}, us: {...} }',
      );
    }
    const defaults = options.defaultJobOptions ?? {};
    if (typeof defaults !== 'object' || Array.isArray(defaults)) {
      throw optionError(OWNER, 'defaultJobOptions', defaults, "BullMQ's JobsOptions (an object)");
    }
    if ('jobId' in defaults) {
      // One id for every job would make every add after the first a duplicate.
      throw optionError(OWNER, 'defaultJobOptions', defaults, 'free of jobId (give it per add)');
    }
    this.defaultJobOptions = defaults;
    this.twinList = entries.map(([twin, config]) => this.createTwin(twin, config));
    this.twins = this.twinList.map((t) => t.name);
    const [a, b] = entries.map(([, config]) => config) as [TwinQueueOptions, TwinQueueOptions];
    const sameRedis =
      a.connection === b.connection ||
      (redisIdentity(a.connection) !== undefined &&
        redisIdentity(a.connection) === redisIdentity(b.connection));
    const [ta, tb] = this.twinList as [Twin, Twin];
    if (sameRedis && ta.queueName === tb.queueName && ta.prefix === tb.prefix) {
      throw optionError(
        OWNER,
        'twins',
        options.twins,
        'two different queues: on one Redis give each twin its own `queue` name',
      );
    }
    this.flows = sameRedis ? new FlowProducer({ connection: a.connection }) : undefined;
  }

  private createTwin(twin: string, config: TwinQueueOptions): Twin {
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
    const queueName =
      config.queue === undefined
        ? this.name
        : stringOption(OWNER, `twins.${twin}.queue`, config.queue);
    const prefix =
      config.prefix === undefined
        ? 'bull'
        : stringOption(OWNER, `twins.${twin}.prefix`, config.prefix);
    return {
      name: twin,
      queueName,
      prefix,
      queue: new Queue(queueName, { connection: config.connection, prefix }),
    };
  }

  /** The BullMQ queue of one twin, e.g. to read a copy with `getJob`. */
  queue(twin: string): Queue<DataType, ResultType, NameType> {
    const found = this.twinList.find((t) => t.name === twin);
    if (found === undefined)
      throw new TypeError(`${OWNER}: no twin "${twin}"; twins are ${this.twins.join(', ')}`);
    return found.queue as unknown as Queue<DataType, ResultType, NameType>;
  }

  /** Adds the job to both twins under one id (`opts.jobId`, or a generated UUID). */
  async add(
    name: NameType,
    data: DataType,
    opts?: JobsOptions,
  ): Promise<PairedJob<DataType, ResultType, NameType>> {
    const [added] = await this.addBulk([{ name, data, ...(opts ? { opts } : {}) }]);
    return added as PairedJob<DataType, ResultType, NameType>;
  }

  /** Adds many jobs to both twins; on one Redis all copies go in one MULTI. */
  async addBulk(
    jobs: PairedBulkJob<DataType, NameType>[],
  ): Promise<PairedJob<DataType, ResultType, NameType>[]> {
    // Every id is checked before anything is written.
    const prepared = jobs.map((job) => {
      const opts = { ...this.defaultJobOptions, ...job.opts };
      return { ...job, opts: { ...opts, jobId: pairableJobId(opts.jobId) } };
    });
    const ids = prepared.map((job) => job.opts.jobId);
    const byTwin = this.flows
      ? await this.addAtomically(prepared)
      : await this.addToEach(prepared, ids);
    return ids.map((id, i) => ({
      id,
      jobs: Object.fromEntries(this.twinList.map((t) => [t.name, byTwin[t.name]?.[i]])) as Record<
        string,
        Job<DataType, ResultType, NameType>
      >,
    }));
  }

  private async addAtomically(prepared: Required<PairedBulkJob<DataType, NameType>>[]) {
    const flows = this.flows as FlowProducer;
    const nodes = await flows.addBulk(
      this.twinList.flatMap((t) =>
        prepared.map((job) => ({
          name: job.name,
          data: job.data,
          opts: job.opts,
          queueName: t.queueName,
          prefix: t.prefix,
        })),
      ),
    );
    const byTwin: Record<string, Job<DataType, ResultType, NameType>[]> = {};
    this.twinList.forEach((t, ti) => {
      byTwin[t.name] = nodes
        .slice(ti * prepared.length, (ti + 1) * prepared.length)
        .map((n) => n.job as Job<DataType, ResultType, NameType>);
    });
    return byTwin;
  }

  private async addToEach(prepared: Required<PairedBulkJob<DataType, NameType>>[], ids: string[]) {
    const settled = await Promise.allSettled(
      this.twinList.map((t) => withTimeout(t.queue.addBulk(prepared), this.addTimeoutMs)),
    );
    const byTwin: Record<string, Job<DataType, ResultType, NameType>[]> = {};
    const failed: Record<string, Error> = {};
    settled.forEach((result, i) => {
      const twin = (this.twinList[i] as Twin).name;
      if (result.status === 'fulfilled')
        byTwin[twin] = result.value as Job<DataType, ResultType, NameType>[];
      else
        failed[twin] =
          result.reason instanceof Error ? result.reason : new Error(String(result.reason));
    });
    if (Object.keys(failed).length > 0) throw new PartialAddError(ids, Object.keys(byTwin), failed);
    return byTwin;
  }

  async close(): Promise<void> {
    await Promise.all([...this.twinList.map((t) => t.queue.close()), this.flows?.close()]);
  }
}
