import { setTimeout as sleep } from 'node:timers/promises';
import { UnrecoverableError } from 'bullmq';
import {
  asError,
  type JobCancelledError,
  type PeerErrorInfo,
  SettleRetryError,
} from '../errors.js';
import { errorInfo, type PairCore } from '../lock/core.js';
import type { RecordAddress } from '../lock/keys.js';
import { backoffMs, classifyError } from '../lock/reply-errors.js';
import { type Grant, settle } from '../lock/scripts.js';

/** Longest wait between two attempts to store a cancel the lock store refused or missed. */
const CANCEL_RETRY_CAP_MS = 2_000;

/**
 * Whether a run stopped because BullMQ cancelled its copy (`worker.cancelJob`): BullMQ's
 * signal aborted and nothing else (a lost lease, a close) had stopped the run before.
 */
export function cancelledByBullMQ(bullSignal: AbortSignal | undefined, run: AbortSignal): boolean {
  return bullSignal?.aborted === true && run.aborted && run.reason === bullSignal.reason;
}

/**
 * Fails the pair record for good (`final`, as an unstorable result does) with the cancel, so
 * the twin's copy fails instead of taking over. Called by the executor before its routine's
 * error reaches the lock core, whose own `failed` settle of the same fence then finds it
 * done. Retried like every settle until the store takes it; a refusal (another member took
 * over) is left to the core, which reports the run as superseded.
 */
export async function storeCancel(
  core: PairCore,
  address: RecordAddress,
  grant: Grant,
  error: JobCancelledError,
  report: (err: Error) => void,
): Promise<void> {
  const error_ = JSON.stringify(errorInfo(error));
  for (let attempt = 0; ; attempt++) {
    try {
      await settle(core.client, address, grant, core.options.retentionMs, core.channel, {
        state: 'failed',
        error: error_,
        final: true,
      });
      return;
    } catch (err) {
      const cause = asError(err);
      // The core's own settle reports and handles these (a refusal of ours, a close).
      if (classifyError(cause) === 'ours' || core.closing) return;
      report(new SettleRetryError(address.id, 'failed (cancelled)', cause));
      await sleep(backoffMs(attempt, CANCEL_RETRY_CAP_MS));
    }
  }
}

/** Whether a failed record's error is a cancel (stored by `storeCancel`). */
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
