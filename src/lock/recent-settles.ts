import { performance } from 'node:perf_hooks';
import type { SettledDone } from './settle-message.js';

/** How many done pairs are remembered at most (each result ≤ 1 KB, as a message carries it). */
const MAX_ENTRIES = 4_096;
/** How long one is remembered at most, ms (less when retention is shorter: see the constructor). */
const MAX_AGE_MS = 60_000;

/**
 * Pairs this process heard settle `done` lately, with the result their settle message carried.
 *
 * Every process receives every settle message of its lock store anyway (one channel). A twin's
 * copy picked up after its executor finished (the common case for short jobs: both copies are
 * added at once, the executor's is done first) then completes from memory, with no lock-store
 * read: what the record would answer, since `done` is final for as long as the record is kept.
 * A later message for the same record that is not `done` (a grant announced, a failure, a
 * release) drops the entry, so only the record's last word is remembered.
 */
export class RecentSettles {
  private readonly entries = new Map<string, { done: SettledDone; at: number }>();
  private readonly maxAgeMs: number;
  /** Since when (Date.now()) every settle is heard: the subscriber's last ready. Infinity while away. */
  private coveredFrom = Number.POSITIVE_INFINITY;

  /**
   * `retentionMs`: how long the store keeps a record. An entry lives at most half of it, so a
   * job re-added once its record is gone runs again, as it would without this memory.
   */
  constructor(retentionMs: number = Number.POSITIVE_INFINITY) {
    this.maxAgeMs = Math.min(MAX_AGE_MS, retentionMs / 2);
  }

  /** A settle message for `tag`: its outcome when `done`, else undefined (forget it). */
  heard(tag: string, done: SettledDone | undefined): void {
    this.entries.delete(tag);
    if (done === undefined) return;
    this.entries.set(tag, { done, at: performance.now() });
    if (this.entries.size > MAX_ENTRIES) {
      // A Map iterates in insertion order: the first entry is the oldest.
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }

  /** The subscriber is (again) ready: every settle from now on is heard. */
  listening(): void {
    this.coveredFrom = Date.now();
  }

  /** The subscriber is away: settles may be missed until `listening()`. */
  deaf(): void {
    this.coveredFrom = Number.POSITIVE_INFINITY;
  }

  /**
   * Whether this process would have heard a pair begun at `wallTime` (a job's timestamp)
   * settle: it began while every settle was heard, within the age outcomes are kept. If not
   * (a process that started, or came back, after the job was added), only a read can tell.
   * An outcome dropped for room is not counted: the pair most likely has not settled yet
   * then (a backlog on both twins), and a wait for it costs only time. A producer clock ahead
   * of ours likewise costs a copy a wait; one behind, a read.
   */
  covers(wallTime: number): boolean {
    return wallTime >= this.coveredFrom && Date.now() - wallTime < this.maxAgeMs;
  }

  /** The outcome heard for `tag`, if it is recent enough to stand for the record. */
  recall(tag: string): SettledDone | undefined {
    const entry = this.entries.get(tag);
    if (entry === undefined) return undefined;
    if (performance.now() - entry.at > this.maxAgeMs) {
      this.entries.delete(tag);
      return undefined;
    }
    return entry.done;
  }

  get size(): number {
    return this.entries.size;
  }
}
