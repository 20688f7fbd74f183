/**
 * bullmq-paired: paired high availability for BullMQ jobs.
 *
 * Glossary
 * - task / job: one unit of work with an id; in BullMQ, one job id added to both twins.
 * - twin / member: one of the two sides that may run a task (a queue, a region).
 * - pair record: the Redis record, one per task id, that decides who runs it.
 * - executor: the member that holds the record and runs the task.
 * - shadow: the member that waits; it returns the executor's result or takes over.
 * - fence: a number higher with every grant of a task (the lock store's clock in ms, so a lost
 *   record does not reset it); sinks reject lower fences.
 * - lease: how long a grant lasts without a heartbeat.
 */
export {
  AbortedError,
  AddRefusedError,
  ClosedError,
  CorruptRecordError,
  DeduplicationMismatchError,
  InvalidJobIdError,
  JobCancelledError,
  JobSchedulerNotPairedError,
  type LeaseLossReason,
  LeaseLostError,
  LivenessSubscriberError,
  LockStoreEvictionError,
  LockStoreMisconfiguredError,
  LockStoreUnavailableError,
  NotReplicatedError,
  PairedError,
  type PairedErrorCode,
  type PairingMismatch,
  PairingMismatchError,
  PartialAddError,
  PartialTwinOperationError,
  type PeerErrorInfo,
  PeerFailedError,
  ResultNotSerializableError,
  ResultTooLargeError,
  SessionLostError,
  SettleRetryError,
  StaleFenceError,
} from './errors.js';
export type { Durability } from './lock/durability.js';
export type { PairedLockOptions, PeerFailurePolicy } from './lock/options.js';
export {
  PairedLock,
  type PairedLockEvents,
  type RunContext,
  type RunOptions,
  type RunOutcome,
  type ShadowingInfo,
} from './lock/paired-lock.js';
export type { PairRecord, PairState } from './lock/record.js';
export type { RedisConnection, TakeoverReason } from './lock/scripts.js';
export type { PairedJobEvent, PairedProcessorEvents } from './pairing/events.js';
export { EXECUTOR_OPTION, type ExecutorChoice } from './pairing/executor.js';
export {
  type PairedRepeatOptions,
  SCHEDULER_START_GUARD_MS,
} from './pairing/job-schedulers.js';
export type { LockStoreDownPolicy, PairedProcessorOptions } from './pairing/options.js';
export {
  type PairedFlow,
  type PairedFlowJob,
  PairedFlowProducer,
} from './pairing/paired-flow-producer.js';
export {
  PairedProcessor,
  type PairedProcessorFunction,
  type PairInfo,
} from './pairing/paired-processor.js';
export type { PairedJobCopies, PairedJobTemplate } from './pairing/paired-queue.js';
export {
  type PairedBulkJob,
  type PairedJob,
  PairedQueue,
  type PairedQueueOptions,
  type TwinQueueOptions,
} from './pairing/paired-queue.js';
export {
  PairedQueueEvents,
  type PairedQueueEventsListener,
  type PairedQueueEventsOptions,
} from './pairing/paired-queue-events.js';
export { PairedWorker, type PairedWorkerOptions } from './pairing/paired-worker.js';
export type { PairingRecord } from './pairing/pairing-record.js';
