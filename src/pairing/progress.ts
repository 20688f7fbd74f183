import type { Job, JobProgress } from 'bullmq';
import { asError } from '../errors.js';

/*
 * The executor's last `job.updateProgress` value travels with its result in the pair record
 * (the complete script keeps it; the acquire that answers "done" returns it), so the twin's
 * copy gets it without a lock-store read of its own. Not live: a parked copy keeps its own
 * progress until it completes (watch both twins' `progress` events, e.g. with
 * `PairedQueueEvents`).
 */

/**
 * Notes the progress the processor reports through this copy's `job.updateProgress` (once
 * BullMQ has stored it), until `stop()`.
 */
export class ProgressTracker {
  private last: { value: JobProgress } | undefined;
  private readonly own: boolean;
  private readonly original: Job['updateProgress'];

  constructor(private readonly job: Job) {
    this.own = Object.hasOwn(job, 'updateProgress');
    this.original = job.updateProgress;
    const original = this.original;
    job.updateProgress = async (progress: JobProgress): Promise<void> => {
      await original.call(job, progress);
      this.last = { value: progress };
    };
  }

  /** The last progress reported, if any. */
  get reported(): { value: JobProgress } | undefined {
    return this.last;
  }

  stop(): void {
    if (this.own) this.job.updateProgress = this.original;
    else delete (this.job as { updateProgress?: unknown }).updateProgress;
  }
}

/** The twin's copy, completing with the executor's result: takes that run's last progress. */
export async function mirrorProgress(
  job: Job,
  progress: string | null,
  report: (err: Error) => void,
): Promise<void> {
  if (progress === null) return;
  try {
    await job.updateProgress(JSON.parse(progress) as JobProgress);
  } catch (err) {
    report(asError(err));
  }
}
