import type { Job } from 'bullmq';
import type { TakeoverReason } from '../lock/scripts.js';

/** Pair facts handed to the wrapped processor as its fourth argument. */
export interface PairInfo {
  twin: string;
  /** Pass it to your side effects: a sink that refuses lower fences makes duplicates harmless. */
  fence: number;
  takeover: TakeoverReason | undefined;
  /** Grants of this job so far, across both twins. */
  attempts: number;
  /** False only when `whenLockStoreDown: 'run'` ran the job without a pair record (fence 0). */
  coordinated: boolean;
  /**
   * Throws `LeaseLostError` when this run's lease may be over on this process's own clock.
   * Call it synchronously right before a side effect: after a freeze (a long GC, a blocked
   * event loop, SIGSTOP) the abort may not have been delivered yet. A no-op when uncoordinated.
   */
  assertLease: () => void;
}

/** A BullMQ processor, optionally reading the pair facts. Its signal also fires on lease loss. */
export type PairedProcessorFunction<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> = (
  job: Job<DataType, ResultType, NameType>,
  token: string | undefined,
  signal: AbortSignal,
  pair: PairInfo,
) => Promise<ResultType> | ResultType;
