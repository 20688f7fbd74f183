import { type BackendFactory, type Job, type Processor, Worker, type WorkerOptions } from 'bullmq';
import { type PairedProcessorOptions, resolveProcessorOptions } from './options.js';
import { PairedProcessor } from './paired-processor.js';

export interface PairedWorkerOptions extends WorkerOptions {
  /** Pairing options: `{ twin, lockConnection, … }`. */
  paired: PairedProcessorOptions;
}

/**
 * A BullMQ `Worker` whose every job goes through `PairedProcessor`, including sandboxed
 * (file or URL) processors, which a wrapped function cannot reach. Closing the worker
 * hands its running jobs over to the twin, then closes the pairing. A twin on another BullMQ
 * backend passes its factory fourth, as to BullMQ's `Worker` (e.g. `createPostgresBackend`).
 */
export class PairedWorker<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> extends Worker<DataType, ResultType, NameType> {
  readonly paired: PairedProcessor<DataType, ResultType, NameType>;

  constructor(
    name: string,
    processor: string | URL | Processor<DataType, ResultType, NameType>,
    { paired, ...options }: PairedWorkerOptions,
    // biome-ignore lint/suspicious/noExplicitAny: BullMQ's factories differ in backend and options types
    backend?: BackendFactory<any, any>,
  ) {
    // Checked before the Worker exists: a bad option must not leave its connections open.
    resolveProcessorOptions(paired);
    // BullMQ's overloads: a backend factory fourth, or none for Redis.
    super(name, processor, options as never, backend as never);
    this.paired = new PairedProcessor<DataType, ResultType, NameType>(
      (job, token, signal) => super.callProcessJob(job, token ?? '', signal),
      paired,
    );
    this.paired.attach(this as unknown as Worker);
  }

  protected override callProcessJob(
    job: Job<DataType, ResultType, NameType>,
    token: string,
    signal?: AbortSignal,
  ): Promise<ResultType> {
    return this.paired.processor(job, token, signal);
  }

  override async close(force = false): Promise<void> {
    await super.close(force);
    await this.paired.close();
  }
}
