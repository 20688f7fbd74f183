import type { Job } from 'bullmq';
import { asError } from '../errors.js';
import type { PairCore } from '../lock/core.js';
import type { RecordAddress } from '../lock/keys.js';
import { type PairRecord, parseJson } from '../lock/record.js';
import type { SettledDone } from '../lock/settle-message.js';
import { NO_OWNER, type Ticket } from '../lock/ticket.js';
import type { Decisions } from './decisions.js';
import type { ResolvedProcessorOptions } from './options.js';
import type { Parking } from './parking.js';
import { mirrorProgress } from './progress.js';
import type { TwinPresence } from './twin-presence.js';

/** The pair's outcome for a copy to complete with: from a settle message or a record read. */
export type PairResult = { fence: number; owner: string; progress: string | null } & (
  | { json: string } // as a settle message carries it
  | { value: unknown } // parsed, as a record read returns it
);

/** What a settle message told (`Ticket.done`), as the result a copy completes with. */
export function toldResult(done: SettledDone): PairResult {
  return { fence: done.fence, owner: done.owner, progress: done.progress, json: done.result };
}

/** Ends a copy as twin-completed with the pair's result (its progress mirrored). */
export async function completeFromPair<R>(
  job: Job,
  done: PairResult,
  say: Decisions,
  report: (err: Error) => void,
): Promise<R> {
  await say.twinCompleted(done.fence, done.owner);
  await mirrorProgress(job, done.progress, report);
  return ('json' in done ? parseJson<R>(done.json) : done.value) as R;
}

/**
 * A copy whose job the other twin was chosen to run (`PairedQueue`'s `executor`): a standby.
 * Next to the lock store it waits in its slot for the settle, as a shadow does; otherwise it
 * parks at once (no slot held, no lock-store round trip in the slot) and is watched from
 * here: brought back when the pair settles (the result learned, so the copy completes on its
 * next pickup), when its executor is gone, when the chosen twin has no live process, or when
 * nobody claimed the job within `standbyGraceMs`.
 */
export class Standbys {
  constructor(
    private readonly core: PairCore,
    private readonly options: Readonly<ResolvedProcessorOptions>,
    private readonly parking: Parking,
    private readonly presence: TwinPresence | undefined,
    private readonly isClosed: () => boolean,
    private readonly report: (err: Error) => void,
  ) {}

  /** Whether the twin listed at `key` has no live process left, as known now; false when unknown. */
  isGone(key: string | undefined): boolean {
    if (key === undefined || this.presence === undefined) return false;
    return this.presence.isGone(key);
  }

  /**
   * A standby: completes from a settle message this process heard already; else, with a
   * `hold` (next to the lock store, short jobs), waits in its slot for the settle, up to
   * `hold` ms a round, reading the record after the first round. Returns the pair's result, or undefined to park as
   * a standby after all (the parked standby's watch marks the record).
   */
  async inSlot<R>(
    job: Job,
    address: RecordAddress,
    say: Decisions,
    hold: number,
  ): Promise<{ result: R } | undefined> {
    const ticket = this.core.ticket(address);
    try {
      for (let round = 0; round < 3; round++) {
        // The settle message carried the result (heard before this copy was picked up, or
        // while it waited): no read.
        const settled = ticket.done;
        if (settled !== undefined)
          return { result: await this.complete<R>(job, toldResult(settled), say) };
        if (hold === 0) break; // far from the store, or a long job: park at once
        if (round === 0 && this.core.heardSince(job.timestamp)) {
          // This process would have heard the pair settle (it listened since the job was
          // added): wait before the first read, and a short job's settle message comes
          // meanwhile, with no lock-store call. A job older than that (a twin draining a
          // backlog it missed, after a restart) is read at once: it is likely done.
          await ticket.wait(NO_OWNER, hold);
          continue;
        }
        // Read without marking it 'waiting': a mark makes the claim announce its grant, a
        // wake-up and a read that find it running. A copy that parks marks it then.
        const record = await this.core.inspect(address, false);
        if (record?.state === 'done')
          return { result: await this.complete<R>(job, toResult(record), say) };
        // Failed or released: the parked standby's watch brings it back to take over.
        if (record !== null && record.state !== 'waiting' && record.state !== 'running') break;
        if (round === 2) break;
        await ticket.wait(record?.state === 'running' ? record.ownerLiveness : NO_OWNER, hold);
        if (!ticket.woke) break;
      }
    } catch {
      // The lock store did not answer: the parked standby's watch retries and reports it.
    } finally {
      ticket.close();
    }
    return undefined;
  }

  /** Parks the copy at once for `maxParkMs` and watches its record (see `watch`). */
  async park(
    job: Job,
    token: string | undefined,
    address: RecordAddress,
    chosenKey: string | undefined,
    onShadow: (fence: number, owner: string) => void,
  ): Promise<void> {
    const ticket = this.core.ticket(address);
    // Listed before the park: a worker adopting delayed copies meanwhile leaves this one be.
    this.parking.hold(address.key, ticket);
    try {
      await this.parking.park(job, token, this.options.maxParkMs);
    } catch (err) {
      this.parking.back(address.key, ticket); // closes the ticket
      throw err;
    }
    // Reported once the watch has read the record: with the executor's fence when it runs.
    this.watch(job, ticket, address, chosenKey, onShadow);
  }

  /** Follows a parked standby's record until its copy must come back. */
  watch(
    job: Job,
    ticket: Ticket,
    address: RecordAddress,
    /** Where the chosen twin lists its live processes; undefined when not watched. */
    chosenKey: string | undefined,
    /** Called once, at the first look that finds the job waiting for its executor or run. */
    onShadow: (fence: number, owner: string) => void = () => {},
  ): void {
    let shadowing = false;
    const shadow = (record: PairRecord | null): void => {
      if (shadowing) return;
      shadowing = true;
      onShadow(record?.fence ?? 0, record?.owner ?? '');
    };
    const watching = (): boolean =>
      !this.isClosed() && !ticket.closed && this.parking.holds(address.key, ticket);
    const later = (ms: number, then: () => void): NodeJS.Timeout => {
      const timer = setTimeout(then, Math.max(ms, 1));
      timer.unref();
      return timer;
    };
    const learn = (done: PairResult): void => {
      this.parking.learn(address.key, {
        jobTimestamp: job.timestamp,
        fence: done.fence,
        owner: done.owner,
        result: 'json' in done ? parseJson(done.json) : done.value,
        progress: done.progress,
      });
      this.parking.promote(job, ticket, address, 'settled');
    };
    const look = async (): Promise<void> => {
      if (!watching()) return;
      // The settle message carried the result: learned without a read.
      if (ticket.done !== undefined) return learn(toldResult(ticket.done));
      let record: PairRecord | null;
      try {
        record = await this.core.inspect(address, true);
      } catch (err) {
        this.report(asError(err));
        later(this.options.lockStoreRetryMs, () => void look());
        return;
      }
      if (!watching()) return;
      if (record === null || record.state === 'waiting') {
        shadow(record);
        const left = this.options.standbyGraceMs - (record?.ageMs ?? 0);
        // Unclaimed for the whole grace: the chosen twin is far behind, so this twin takes the
        // job over at the front of its wait list (work-stealing: the chosen twin, finding the
        // job that old, claims before it runs and completes it from the record).
        if (left <= 0) return this.parking.promote(job, ticket, address, 'gone');
        // No live process of the chosen twin: nobody will claim any of its jobs. They were
        // never started and keep their place in the wait list (no LREM each).
        if (this.isGone(chosenKey)) {
          this.parking.judgeChosenGone(address.key, job.timestamp);
          return this.parking.promote(job, ticket, address, 'gone', false);
        }
        if (!watching()) return;
        const timer = later(left, () => ticket.wake('recheck'));
        const cancel =
          chosenKey === undefined
            ? undefined
            : this.presence?.onGone(chosenKey, () => ticket.wake('recheck'), watching);
        ticket.onNextWake(NO_OWNER, () => {
          clearTimeout(timer);
          cancel?.();
          void look();
        });
        return;
      }
      if (record.state === 'running') {
        shadow(record);
        const owner = record.ownerLiveness;
        // Without a session the record's own lease says when its owner may be gone.
        const timer =
          owner.sessionKey === '' && record.leaseLeftMs !== null
            ? later(record.leaseLeftMs + 5, () => ticket.wake('recheck'))
            : undefined;
        ticket.onNextWake(owner, (reason) => {
          clearTimeout(timer);
          if (reason === 'gone') this.parking.promote(job, ticket, address, reason);
          else void look();
        });
        return;
      }
      if (record.state === 'done') return learn(toResult(record));
      // Failed or released: the copy asks in its slot whether to take over.
      this.parking.promote(job, ticket, address, 'gone');
    };
    void look();
  }

  private complete<R>(job: Job, done: PairResult, say: Decisions): Promise<R> {
    return completeFromPair<R>(job, done, say, this.report);
  }
}

/** A done record as the result a copy completes with. */
function toResult(record: PairRecord): PairResult {
  const progress = record.progress === undefined ? null : JSON.stringify(record.progress);
  return { fence: record.fence, owner: record.owner, progress, value: record.result };
}
