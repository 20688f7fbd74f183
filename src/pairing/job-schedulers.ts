import type { JobSchedulerJson, RepeatOptions } from 'bullmq';
import { JobSchedulerNotPairedError } from '../errors.js';
import { show } from '../validate.js';

/**
 * BullMQ's repeat options for `PairedQueue.upsertJobScheduler`, without `immediately`: an
 * iteration "now" would be named after each twin's own clock reading, so the twins' first
 * iterations would carry different ids and run twice.
 */
export type PairedRepeatOptions = Omit<RepeatOptions, 'key' | 'immediately' | 'jobId'>;

/**
 * How far ahead of the upsert the first iteration of a new `every` scheduler is placed, in
 * ms. Both twins' schedulers must receive a `startDate` still in the future when their upsert
 * runs: BullMQ replaces a past one with its own clock reading, which names the iteration
 * differently on each twin. The upserts are checked afterwards, and a twin whose first
 * iteration missed the date is upserted again further ahead.
 */
export const SCHEDULER_START_GUARD_MS = 1_000;

/** Upsert rounds before `JobSchedulerNotPairedError`: the first, then re-upserts of off-grid twins. */
export const SCHEDULER_ROUNDS = 3;

/**
 * A scheduler id whose iterations BullMQ names `repeat:<id>:<millis>`: a non-empty string
 * free of ':' (BullMQ accepts an iteration id with exactly three ':'-separated parts, and
 * the pair record `<group>:repeat:<id>:<millis>` stays unambiguous).
 */
export function pairableSchedulerId(schedulerId: unknown): string {
  if (typeof schedulerId !== 'string' || schedulerId.length === 0) {
    throw new JobSchedulerNotPairedError(schedulerId, 'its id must be a non-empty string');
  }
  if (schedulerId.includes(':')) {
    throw new JobSchedulerNotPairedError(
      schedulerId,
      `its id contains ":"; BullMQ names each iteration "repeat:<schedulerId>:<millis>", which must keep exactly three ':'-separated parts. Use e.g. "${schedulerId.replaceAll(':', '-')}"`,
    );
  }
  return schedulerId;
}

/** Checks what BullMQ would refuse on one twin only after the other took it, and `immediately`. */
export function checkRepeatOptions(schedulerId: string, repeat: unknown): void {
  if (typeof repeat !== 'object' || repeat === null) {
    throw new JobSchedulerNotPairedError(schedulerId, 'repeatOpts must be an object');
  }
  const opts = repeat as RepeatOptions;
  if (opts.immediately !== undefined && opts.immediately !== false) {
    throw new JobSchedulerNotPairedError(
      schedulerId,
      'repeatOpts.immediately names the first iteration after each twin\'s own clock reading, so the twins\' copies get different ids and both run. Give a startDate instead (an "every" scheduler without one starts within a second)',
    );
  }
  if ((opts.every === undefined) === (opts.pattern === undefined)) {
    throw new JobSchedulerNotPairedError(
      schedulerId,
      'repeatOpts needs exactly one of "every" and "pattern"',
    );
  }
  if (
    opts.every !== undefined &&
    (typeof opts.every !== 'number' || !Number.isInteger(opts.every) || opts.every < 1)
  ) {
    throw new JobSchedulerNotPairedError(
      schedulerId,
      `repeatOpts.every must be an integer >= 1 (ms), received ${show(opts.every)}`,
    );
  }
  if (
    opts.offset !== undefined &&
    (typeof opts.offset !== 'number' || !Number.isInteger(opts.offset))
  ) {
    throw new JobSchedulerNotPairedError(
      schedulerId,
      `repeatOpts.offset must be an integer (ms), received ${show(opts.offset)}`,
    );
  }
}

function mod(value: number, every: number): number {
  return ((value % every) + every) % every;
}

function time(value: Date | string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The common grid of an `every` scheduler: its iterations are named at `offset + k × every`
 * (epoch ms) on both twins. BullMQ keeps a scheduler on such a grid once its first iteration
 * is on it: the next iteration is the previous one plus `every`, and a twin that fell behind
 * (no worker for a while) skips to the next slot of the grid (`offset` is stored with the
 * scheduler). So both twins name an iteration alike, or one of them skips it (that iteration
 * then runs once, on the other twin): never two ids for one slot.
 */
export interface EveryPlan {
  every: number;
  /** Phase of the grid, in [0, every); undefined until the first start date is picked (`startOf`). */
  offset: number | undefined;
  /** The schedulers on the twins follow another grid (or another interval): remove them first. */
  removeFirst: boolean;
}

/** The phase an existing scheduler follows, when it is an `every` scheduler on a grid. */
function phaseOf(existing: JobSchedulerJson, every: number): number | undefined {
  if (existing.every !== every || existing.pattern !== undefined) return undefined;
  const offset = mod(existing.offset ?? 0, every);
  if (
    existing.next !== undefined &&
    existing.next !== null &&
    mod(existing.next, every) !== offset
  ) {
    return undefined;
  }
  return offset;
}

/**
 * Picks the grid for an upsert of an `every` scheduler: the `offset` asked for, else the phase
 * of `startDate`, else the phase the twins' existing schedulers share (a re-upsert, e.g. at
 * every deploy, keeps its slots), else the phase of the first start date (`startOf`: one
 * `SCHEDULER_START_GUARD_MS` ahead). Existing schedulers on another grid are removed first:
 * BullMQ would keep their old slots.
 */
export function planEvery(
  repeat: PairedRepeatOptions,
  existing: readonly (JobSchedulerJson | undefined)[],
): EveryPlan {
  const every = repeat.every as number;
  const present = existing.filter((e): e is JobSchedulerJson => e !== undefined && e !== null);
  const phases = present.map((e) => phaseOf(e, every));
  const shared =
    phases.length > 0 && phases.every((p) => p !== undefined && p === phases[0])
      ? phases[0]
      : undefined;
  const start = time(repeat.startDate);
  let offset: number | undefined;
  if (repeat.offset !== undefined) offset = mod(repeat.offset, every);
  else if (start !== undefined) offset = mod(start, every);
  else offset = shared;
  return { every, offset, removeFirst: present.length > 0 && shared !== offset };
}

/**
 * The `startDate` given to the twins: the first slot of the grid at or after the later of
 * the caller's `startDate` and `now + guard` (the guard doubles with each round). A grid
 * without a phase yet takes that instant's: the first iteration comes one guard from now.
 */
export function startOf(
  plan: EveryPlan,
  repeat: PairedRepeatOptions,
  now: number,
  round: number,
): number {
  const earliest = Math.max(
    time(repeat.startDate) ?? 0,
    now + SCHEDULER_START_GUARD_MS * 2 ** round,
  );
  plan.offset ??= mod(earliest, plan.every);
  return earliest + mod(plan.offset - earliest, plan.every);
}

/** The slot an iteration id `repeat:<schedulerId>:<millis>` names, if it is one. */
function iterationMillis(schedulerId: string, jobId: string | undefined): number | undefined {
  const prefix = `repeat:${schedulerId}:`;
  if (jobId === undefined || !jobId.startsWith(prefix)) return undefined;
  const millis = Number(jobId.slice(prefix.length));
  return Number.isInteger(millis) ? millis : undefined;
}

/** Whether an iteration id lies on the plan's grid. */
export function onGrid(plan: EveryPlan, schedulerId: string, jobId: string | undefined): boolean {
  const millis = iterationMillis(schedulerId, jobId);
  return millis !== undefined && mod(millis, plan.every) === (plan.offset ?? 0);
}
