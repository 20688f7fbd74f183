import { type ConnectionOptions, FlowProducer, Job, type JobsOptions } from 'bullmq';
import { PairingMismatchError, PartialAddError } from '../errors.js';
import type { Placed } from './servers.js';
import { type Twin, withTimeout } from './twins.js';

/** One job as an add writes it, its id checked (`opts.jobId` always set). */
export interface Prepared<DataType, NameType extends string> {
  name: NameType;
  data: DataType;
  opts: JobsOptions & { jobId: string };
}

/** One copy after an add: the Job, and the id BullMQ returned for it or the error it refused it with. */
export interface Copy<DataType, ResultType, NameType extends string> {
  job: Job<DataType, ResultType, NameType>;
  answer: string | Error;
}

/**
 * Writes copies of jobs to the twins: `jobs[ti]` to twin `ti`, after recording the pairing
 * there. Returns, per twin and job, what BullMQ answered.
 */
export interface CopyWriter<DataType, ResultType, NameType extends string> {
  write(
    jobs: Prepared<DataType, NameType>[][],
    ids: string[],
  ): Promise<Copy<DataType, ResultType, NameType>[][]>;
  close(): Promise<void>;
}

/** What a writer needs of its PairedQueue. */
export interface WriterHost {
  twins: readonly Twin[];
  /** Records the pairing on a twin's Redis (once; again after a failure). */
  record(twin: Twin): Promise<void>;
  timeoutMs: number;
}

type JobQueue = ConstructorParameters<typeof Job>[0];

/** BullMQ's add scripts answer a refusal with a negative code (e.g. -5: missing parent). */
function errorCode(id: unknown): number | undefined {
  if (typeof id === 'number') return id < 0 ? id : undefined;
  return typeof id === 'string' && /^-\d+$/.test(id) ? Number(id) : undefined;
}

/** A copy as BullMQ's `Queue.add` builds it; its constructor and `toFlowEntry` check the options. */
function build<DataType, ResultType, NameType extends string>(
  twin: Twin,
  job: Prepared<DataType, NameType>,
) {
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
function answerOf(twin: Twin, job: Job, reply: unknown): string | Error {
  if (reply instanceof Error) return reply;
  const code = errorCode(reply);
  if (code !== undefined) {
    return twin.queue.getBackend().finishedErrors({
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
 * Twins on one server: every copy of every job written at once through BullMQ's flow backend
 * (on Redis one MULTI; on PostgreSQL one statement, which spans queues).
 */
class OneServerWriter<DataType, ResultType, NameType extends string>
  implements CopyWriter<DataType, ResultType, NameType>
{
  private readonly flows: FlowProducer;

  constructor(
    private readonly host: WriterHost,
    { connection, backend }: Placed,
  ) {
    // BullMQ's overloads: a backend factory second, or none for Redis.
    this.flows =
      backend === undefined
        ? new FlowProducer({ connection: connection as ConnectionOptions })
        : (new FlowProducer({ connection } as never, backend) as FlowProducer);
  }

  async write(
    jobs: Prepared<DataType, NameType>[][],
    _ids: string[],
  ): Promise<Copy<DataType, ResultType, NameType>[][]> {
    const { twins } = this.host;
    // Built up front: BullMQ checks its options here, before anything is written.
    const built = jobs.map((list, ti) =>
      list.map((job) => build<DataType, ResultType, NameType>(twins[ti] as Twin, job)),
    );
    await Promise.all(twins.map((t) => this.host.record(t)));
    await this.flows.waitUntilReady();
    const replies = await this.flows.getBackend().addFlow(built.flat().map((b) => b.entry));
    let n = 0;
    return built.map((list, ti) =>
      list.map(({ job }) => {
        const [err, reply] = replies[n++] ?? [new Error('BullMQ gave no reply for this job'), ''];
        return { job, answer: answerOf(twins[ti] as Twin, job, err ?? reply) };
      }),
    );
  }

  close(): Promise<void> {
    return this.flows.close();
  }
}

/**
 * Twins on several servers: each twin's copies in parallel, a twin that fails or does
 * not answer within the timeout making it a `PartialAddError` that names where the job is.
 */
class TwinServersWriter<DataType, ResultType, NameType extends string>
  implements CopyWriter<DataType, ResultType, NameType>
{
  constructor(private readonly host: WriterHost) {}

  async write(
    jobs: Prepared<DataType, NameType>[][],
    ids: string[],
  ): Promise<Copy<DataType, ResultType, NameType>[][]> {
    const { twins, timeoutMs } = this.host;
    // Built up front: BullMQ checks its options here, before anything is written.
    jobs.forEach((list, ti) => {
      for (const job of list) build(twins[ti] as Twin, job);
    });
    // The pairing first, on both: a conflicting one must stop the add before either copy lands.
    const recorded = await Promise.allSettled(
      twins.map((t, ti) =>
        (jobs[ti] ?? []).length === 0
          ? Promise.resolve()
          : withTimeout(this.host.record(t), timeoutMs),
      ),
    );
    for (const result of recorded) {
      if (result.status === 'rejected' && result.reason instanceof PairingMismatchError) {
        throw result.reason;
      }
    }
    const settled = await Promise.allSettled(
      twins.map((t, ti) => {
        const mine = jobs[ti] ?? [];
        const record = recorded[ti] as PromiseSettledResult<void>;
        if (record.status === 'rejected') return Promise.reject(record.reason);
        return mine.length === 0
          ? Promise.resolve([])
          : withTimeout(t.queue.addBulk(mine), timeoutMs);
      }),
    );
    const failed: Record<string, Error> = {};
    const added: string[] = [];
    settled.forEach((result, ti) => {
      const twin = (twins[ti] as Twin).name;
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
        return { job: typed, answer: answerOf(twins[ti] as Twin, typed, typed.id) };
      }),
    );
  }

  async close(): Promise<void> {}
}

/**
 * The writer for where the twins live: every copy at once when they share one server
 * (`oneServer`, where they all live), else one add per twin.
 */
export function copyWriter<DataType, ResultType, NameType extends string>(
  host: WriterHost,
  oneServer: Placed | undefined,
): CopyWriter<DataType, ResultType, NameType> {
  return oneServer === undefined
    ? new TwinServersWriter<DataType, ResultType, NameType>(host)
    : new OneServerWriter<DataType, ResultType, NameType>(host, oneServer);
}
