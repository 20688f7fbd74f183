import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import { asError } from '../errors.js';
import type { RecordAddress } from '../lock/keys.js';
import { backoffMs } from '../lock/reply-errors.js';
import type { Ticket, WakeReason } from '../lock/ticket.js';

/** Longest wait between two attempts to promote a woken copy its queue Redis refused. */
const PROMOTE_RETRY_CAP_MS = 5_000;

/** Results a standby learned while its copy was parked, kept at most (oldest dropped first). */
const MAX_LEARNED_RESULTS = 10_000;

/** A settled pair as a standby learned it, for its copy's next pickup. */
export interface LearnedResult {
  /** The copy's `job.timestamp`: the result belongs to that job, not to a later one of its id. */
  jobTimestamp: number;
  fence: number;
  owner: string;
  result: unknown;
  /** The executor's last progress as JSON, null if none. */
  progress: string | null;
}

/**
 * This process's parked copies: each one's ticket (what wakes it), the results standbys
 * learned for them while parked, and the promotion that brings a woken copy back. A parked
 * copy lives in its queue Redis (BullMQ's delayed set), so nothing here is needed to keep it:
 * only to wake it before its park delay ends.
 */
export class Parking {
  private readonly tickets = new Map<string, Ticket>();
  private readonly learned = new Map<string, LearnedResult>();
  /** Copies woken because the twin chosen for their job had no live process, and when. */
  private readonly chosenGone = new Map<string, { jobTimestamp: number; at: number }>();

  constructor(
    private readonly isClosed: () => boolean,
    private readonly report: (err: Error) => void,
  ) {}

  /** Moves the copy to BullMQ's delayed state for `delayMs` (no slot held, no attempt counted). */
  async park(job: Job, token: string | undefined, delayMs: number): Promise<void> {
    if (token === undefined)
      throw new TypeError('PairedProcessor: a BullMQ job token is needed to park a copy');
    await job.moveToDelayed(Date.now() + delayMs, token);
  }

  /** Files `ticket` as what wakes the copy of record `key`. */
  hold(key: string, ticket: Ticket): void {
    this.tickets.set(key, ticket);
  }

  /** Whether a parked copy of record `key` is watched here (by `ticket`, when given). */
  holds(key: string, ticket?: Ticket): boolean {
    const held = this.tickets.get(key);
    return held !== undefined && (ticket === undefined || held === ticket);
  }

  /** The copy of `key` is back (or its park failed): its watch, if any, ends. */
  back(key: string, ticket?: Ticket): void {
    const held = this.tickets.get(key);
    if (held === undefined || (ticket !== undefined && held !== ticket)) return;
    held.close();
    this.tickets.delete(key);
  }

  learn(key: string, result: LearnedResult): void {
    this.learned.set(key, result);
    if (this.learned.size > MAX_LEARNED_RESULTS) {
      const oldest = this.learned.keys().next().value;
      if (oldest !== undefined) this.learned.delete(oldest);
    }
  }

  /**
   * The copy of `key` (this very job) is woken because the twin chosen to run it has no live
   * process: its next pickup runs it without waiting for a claim, whenever a slot frees up.
   * The presence look that said so is trusted only briefly (a twin may come back), and behind
   * a backlog the pickup comes later than that: without this mark it waited `standbyGraceMs`
   * for a claim that never came.
   */
  judgeChosenGone(key: string, jobTimestamp: number): void {
    this.chosenGone.set(key, { jobTimestamp, at: performance.now() });
    if (this.chosenGone.size > MAX_LEARNED_RESULTS) {
      const oldest = this.chosenGone.keys().next().value;
      if (oldest !== undefined) this.chosenGone.delete(oldest);
    }
  }

  /**
   * Whether this very job's copy was woken as `judgeChosenGone` says, at most `maxAgeMs` ago
   * (a twin that only looked gone may be back and start young jobs at once); taken once.
   */
  takeChosenGone(key: string, jobTimestamp: number, maxAgeMs: number): boolean {
    const judged = this.chosenGone.get(key);
    if (judged === undefined || judged.jobTimestamp !== jobTimestamp) return false;
    this.chosenGone.delete(key);
    return performance.now() - judged.at <= maxAgeMs;
  }

  /** The result learned for this very job (not a later one that reuses its id), taken once. */
  takeLearned(key: string, jobTimestamp: number): LearnedResult | undefined {
    const learned = this.learned.get(key);
    if (learned === undefined || learned.jobTimestamp !== jobTimestamp) return undefined;
    this.learned.delete(key);
    return learned;
  }

  /**
   * Brings a woken copy back. Promote puts it at the far end of the wait list: behind a
   * backlog a takeover would wait seconds for a slot, so moving it to the front (an LREM over
   * the wait list) is worth it for a takeover; a settled copy only completes and can wait
   * its turn, and a copy never started keeps its place.
   */
  promote(
    job: Job,
    ticket: Ticket,
    address: RecordAddress,
    reason: WakeReason,
    toFront = reason !== 'settled',
  ): void {
    ticket.close();
    if (this.tickets.get(address.key) === ticket) this.tickets.delete(address.key);
    // The copy may be back already (its delay ended, or another wake won): nothing to do then.
    void this.promoteUntilDone(job, toFront);
  }

  /** Closes every watch (at close): the copies come back when their park delay ends. */
  closeAll(): void {
    for (const ticket of this.tickets.values()) ticket.close();
    this.tickets.clear();
  }

  /**
   * Promotes a parked copy, retrying while its queue Redis cannot take it: a wake-up is the
   * only thing that brings the copy back before `maxParkMs`, so a promote lost to an outage
   * of the queue Redis left it waiting minutes. Ends when the copy is no longer delayed
   * (back already: BullMQ's "not in the delayed state" or "missing key") or on close.
   */
  private async promoteUntilDone(job: Job, toFront: boolean): Promise<void> {
    for (let attempt = 0; !this.isClosed(); attempt++) {
      try {
        await job.promote();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (/not in the delayed state|Missing key for job/.test(message)) return;
        if (attempt === 0) this.report(asError(err));
        await sleep(backoffMs(attempt, PROMOTE_RETRY_CAP_MS));
        continue;
      }
      if (toFront) {
        // Best effort: the copy is promoted; only its place in the wait list is at stake.
        await job.changePriority({ priority: job.priority, lifo: true }).catch(() => {});
      }
      return;
    }
  }
}
