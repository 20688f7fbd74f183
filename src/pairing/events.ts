import type { LeaseLossReason } from '../errors.js';
import type { TakeoverReason } from '../lock/scripts.js';

/** Events carry ids and pair facts only: never job data or results. */
export interface PairedJobEvent {
  jobId: string;
  /** The BullMQ queue of this copy. */
  queue: string;
  /** The twin this processor serves. */
  twin: string;
  fence: number;
}

export interface PairedProcessorEvents {
  /** This twin ran the job and stored its result. */
  executed: [event: PairedJobEvent & { takeover: TakeoverReason | undefined; durationMs: number }];
  /** The other twin is running the job: this copy was parked without holding a worker slot. */
  shadowed: [event: PairedJobEvent & { owner: string }];
  /** This twin starts a job the other twin had: it failed, released it, died or let its lease lapse. */
  takeover: [
    event: PairedJobEvent & {
      reason: TakeoverReason;
      /**
       * How long the job had no executor before this takeover, as the lock store saw it: since
       * the executor failed or released it, since its process was first seen gone, or since its
       * own lease ended. Undefined when unknown (a session that ran out leaves no time).
       */
      idleMs: number | undefined;
    },
  ];
  /** The other twin ran the job: this copy completed with its result, without running. */
  twinCompleted: [event: PairedJobEvent & { owner: string }];
  /** This twin's execution lost its lease; its signal aborted and its result will not be stored. */
  leaseLost: [event: PairedJobEvent & { reason: LeaseLossReason | 'superseded' }];
  error: [err: Error];
}
