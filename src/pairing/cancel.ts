import { UnrecoverableError } from 'bullmq';
import type { PeerErrorInfo } from '../errors.js';

/**
 * Whether a run stopped because BullMQ cancelled its copy (`worker.cancelJob`): BullMQ's
 * signal aborted and nothing else (a lost lease, a close) had stopped the run before.
 */
export function cancelledByBullMQ(bullSignal: AbortSignal | undefined, run: AbortSignal): boolean {
  return bullSignal?.aborted === true && run.aborted && run.reason === bullSignal.reason;
}

/** Whether a failed record's error is a cancel (stored final by the lock core). */
export function isCancel(info: PeerErrorInfo | undefined): info is PeerErrorInfo {
  return info?.code === 'ERR_PAIRED_JOB_CANCELLED';
}

/**
 * What a copy of a cancelled pair fails with in BullMQ: an `UnrecoverableError` (BullMQ
 * retries nothing: no attempt could run the job again), carrying the cancel's message and
 * code, with the typed error as its cause.
 */
export function cancelledCopyError(message: string, cause: Error): UnrecoverableError {
  return Object.assign(new UnrecoverableError(message), {
    code: 'ERR_PAIRED_JOB_CANCELLED',
    cause,
  });
}
