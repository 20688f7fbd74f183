import type { Job, JobProgress } from 'bullmq';
import { asError } from '../errors.js';
import type { RecordAddress } from '../lock/keys.js';
import type { RedisConnection } from '../lock/scripts.js';

/**
 * The executor's last `job.updateProgress` value, handed to the twin's copy when it completes
 * with the executor's result. Stored next to the pair record, under the same hash tag, with
 * the record's retention and the fence of the run that reported it: a copy takes it only
 * from the run whose result it completes with. Not live: a parked copy keeps its own progress
 * until it completes (watch both twins' `progress` events, e.g. with `PairedQueueEvents`).
 */
export function progressKey(prefix: string, address: RecordAddress): string {
  return `${prefix}:progress:{${address.id}}`;
}

interface StoredProgress {
  fence: number;
  progress: JobProgress;
}

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

/** A bounded, best-effort lock-store call: its failure or slowness never holds a job up. */
async function bestEffort<T>(
  work: Promise<T>,
  ms: number,
  report: (err: Error) => void,
): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } catch (err) {
    report(asError(err));
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** The executor stores its last progress before its result (so before the twin can complete). */
export async function saveProgress(
  client: RedisConnection,
  key: string,
  stored: StoredProgress,
  retentionMs: number,
  timeoutMs: number,
  report: (err: Error) => void,
): Promise<void> {
  await bestEffort(client.set(key, JSON.stringify(stored), 'PX', retentionMs), timeoutMs, report);
}

/** The twin's copy, completing with the result of `fence`: takes that run's last progress. */
export async function mirrorProgress(
  client: RedisConnection,
  key: string,
  fence: number,
  job: Job,
  timeoutMs: number,
  report: (err: Error) => void,
): Promise<void> {
  const raw = await bestEffort(client.get(key), timeoutMs, report);
  if (typeof raw !== 'string') return;
  let stored: StoredProgress;
  try {
    stored = JSON.parse(raw) as StoredProgress;
  } catch {
    return;
  }
  if (stored.fence !== fence || stored.progress === undefined) return;
  try {
    await job.updateProgress(stored.progress);
  } catch (err) {
    report(asError(err));
  }
}
