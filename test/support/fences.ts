/**
 * Matchers for fences. Every grant but a chosen executor's claim (fence 1) is fenced on the
 * lock store's clock, in ms since the Unix epoch, and above the record's last fence: a test
 * cannot know the number, only that it is such a fence and higher than the grant before.
 */
import { expect } from 'vitest';

/** 2020-01-01 in ms: a fence below it was not granted on a clock (a claim's 1, or 0). */
const CLOCK_FLOOR = 1_577_836_800_000;

export function isClockFence(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > CLOCK_FLOOR;
}

/** Matches a fence granted on the lock store's clock. */
export const clockFence: unknown = expect.toSatisfy(isClockFence, 'a fence on the store clock');

/** Matches a clock fence above `below` (a later grant of the same task). */
export function fenceAbove(below: number): unknown {
  return expect.toSatisfy(
    (value: unknown) => isClockFence(value) && value > below,
    `a fence on the store clock above ${below}`,
  );
}

/**
 * Each run's twin and how it was fenced against the run before: 'claim' (a chosen executor's
 * fence 1), 'fenced' (the first run, a clock fence), 'higher' (above the run before), or
 * what is wrong. Compare with toEqual, e.g. [['eu', 'fenced'], ['us', 'higher']].
 */
export function fenceSteps(runs: readonly { twin: string; fence: unknown }[]): [string, string][] {
  return runs.map((run, i) => {
    const fence = Number(run.fence);
    const before = i > 0 ? Number(runs[i - 1]?.fence) : undefined;
    if (fence === 1) return [run.twin, 'claim'];
    if (!isClockFence(fence)) return [run.twin, `not a clock fence: ${String(run.fence)}`];
    if (before === undefined) return [run.twin, 'fenced'];
    return [run.twin, fence > before ? 'higher' : `${fence}, not above ${before}`];
  });
}

/**
 * Matches the fence of a chosen executor's first run: 1 when it started before its claim was
 * answered (a young job, its process listed well before), else a fence on the store's clock
 * (a claim sent before the run). Which one depends on timing the tests do not control.
 */
export const firstRunFence: unknown = expect.toSatisfy(
  (value: unknown) => value === 1 || isClockFence(value),
  "a chosen executor's first fence (1, or on the store clock)",
);
