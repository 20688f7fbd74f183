import { createHash } from 'node:crypto';
import { optionError } from '../validate.js';

/**
 * The job option `PairedQueue` stamps on both copies of a job with the twin it chose to run
 * it (BullMQ keeps unknown job options as they are). A worker of that twin starts the job at
 * once and claims it while it runs; a worker of the other twin parks its copy as a standby.
 */
export const EXECUTOR_OPTION = 'pairedExecutor';

/**
 * Who runs a job in the common case:
 * - `'balanced'` (the default): one twin per job by a hash of its id (each twin runs half);
 * - `'first'`: whichever twin picks its copy up first (one lock-store round trip before the
 *   run and one after it, inside the worker slot);
 * - a twin name: that twin (e.g. the producer's own region, for the lowest latency).
 */
export type ExecutorChoice = 'first' | 'balanced' | (string & {});

export function executorOption(
  owner: string,
  value: unknown,
  twins: readonly string[],
): ExecutorChoice {
  // No lock-store round trip in the job's slot: the cheapest mode on one site and across regions.
  if (value === undefined) return 'balanced';
  if (value === 'first' || value === 'balanced') return value;
  if (typeof value === 'string' && twins.includes(value)) return value;
  throw optionError(
    owner,
    'executor',
    value,
    `'first', 'balanced' or a twin name (${twins.map((t) => `'${t}'`).join(', ')})`,
  );
}

/** The twin to run job `id` under `choice`; undefined for `'first'` (nobody chosen). */
export function chooseExecutor(
  choice: ExecutorChoice,
  twins: readonly string[],
  id: string,
): string | undefined {
  if (choice === 'first') return undefined;
  if (choice !== 'balanced') return choice;
  const sorted = [...twins].sort();
  const n = createHash('sha1').update(id).digest().readUInt32BE(0);
  return sorted[n % sorted.length];
}

/** The twin chosen to run this job, from its options; undefined when none was chosen. */
export function chosenExecutor(opts: unknown): string | undefined {
  const value = (opts as Record<string, unknown> | undefined)?.[EXECUTOR_OPTION];
  return typeof value === 'string' && value !== '' ? value : undefined;
}
