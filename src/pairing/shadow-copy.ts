import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError, type Job } from 'bullmq';
import type { Acquired, PairCore } from '../lock/core.js';
import type { RecordAddress } from '../lock/keys.js';
import { peerFailure, storedResult } from '../lock/record.js';
import { type AcquireReply, ownerOf } from '../lock/scripts.js';
import type { Ticket, WakeReason } from '../lock/ticket.js';
import { cancelledCopyError, isCancel } from './cancel.js';
import type { Decisions } from './decisions.js';
import type { ExecutorRuns } from './executor-runs.js';
import type { ResolvedProcessorOptions } from './options.js';
import type { Parking } from './parking.js';
import { mirrorProgress } from './progress.js';
import { completeFromPair, toldResult } from './standby.js';

type Busy = Extract<AcquireReply, { kind: 'busy' }>;

/**
 * An owner whose end is this close (ms) is waited out in the slot rather than parked behind:
 * it covers a far owner's liveness grace (3 round trips + 50 ms: 290 ms at 80 ms), so the
 * copy asks again when the grace ends, and a subscriber that is back by then is seen back.
 * Not the grace option itself: an owner far from the lock store keeps a longer grace of its
 * own with its grant (see `PairCore.ownGraceMs`), and parking behind it cost a takeover about
 * 85 ms (a second wake-up and pickup). Bounded, so a healthy owner's lease far from its end
 * never holds a slot.
 */
const SOON_MS = 1_000;

/** Rounds a copy waits in its slot for an owner whose end is moments away, before parking. */
const SOON_ROUNDS = 10;

/** How a copy asks for the record (see `PairCore.acquire`). */
export interface Ask {
  minFence: number;
  waitForClaimMs?: number;
}

/**
 * A `PairedProcessor`'s copies that ask for the record and may find it held: granted, the
 * copy runs (`ExecutorRuns`); done or failed, it ends as the pair did; busy, it waits a
 * moment in its slot for a short job's settle, then parks until the pair settles or its
 * executor is gone, and asks again when it comes back.
 */
export class Shadows<DataType, ResultType, NameType extends string> {
  constructor(
    private readonly core: PairCore,
    private readonly options: Readonly<ResolvedProcessorOptions>,
    private readonly parking: Parking,
    private readonly runs: ExecutorRuns<DataType, ResultType, NameType>,
    private readonly report: (err: Error) => void,
  ) {}

  /** Asks until the copy runs here, ends as the pair did, or parks (`DelayedError`). */
  async follow(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    signal: AbortSignal | undefined,
    address: RecordAddress,
    ask: Ask,
    say: Decisions,
  ): Promise<ResultType> {
    const ticket = this.core.ticket(address);
    let parked = false;
    try {
      for (let round = 0; ; round++) {
        // Woken by a settle message that carried the result: done, without asking again.
        if (ticket.done !== undefined)
          return await completeFromPair<ResultType>(job, toldResult(ticket.done), say, this.report);
        let acquired: Acquired;
        try {
          acquired = await this.core.acquire(address, undefined, ask);
        } catch (err) {
          return await this.runs.lockStoreDown(job, token, signal, err, say);
        }
        const { reply } = acquired;
        if (reply.kind === 'granted') {
          ticket.close();
          const start = { token: acquired.token, sentAt: acquired.sentAt, reply };
          return await this.runs.runGranted(job, token, signal, address, start, say);
        }
        if (reply.kind === 'done') {
          await say.twinCompleted(reply.fence, reply.owner);
          // The executor's last progress came with its result, in the same reply.
          await mirrorProgress(job, reply.progress, (err) => this.report(err));
          return storedResult<ResultType>(reply);
        }
        if (reply.kind === 'failed') {
          say.peerFailed(reply.fence, reply.owner);
          const error = peerFailure(job.id as string, reply);
          // A cancelled pair: this copy fails for good too, without running.
          const info = error.peerError;
          if (isCancel(info)) throw cancelledCopyError(info.message, error);
          throw error;
        }
        if (reply.recheckMs <= SOON_MS && round < SOON_ROUNDS) {
          // The owner's grace or lease ends within moments (its process was just seen gone):
          // wait exactly that long in the slot. A wake-up would come on the watcher's next
          // tick instead, up to livenessIntervalMs late.
          await sleep(Math.max(reply.recheckMs, 0) + 1);
          continue;
        }
        const hold = round === 0 ? this.runs.holdMs() : 0;
        if (hold > 0) {
          // Short jobs: waiting a moment in the slot for the settle message is far cheaper
          // than parking (moveToDelayed, promote, a second pickup).
          if (await ticket.wait(ownerOf(reply), hold).then(() => ticket.woke)) continue;
        }
        if (await this.park(job, token, ticket, address, reply, round)) {
          parked = true;
          say.shadowed(reply.fence, reply.owner);
          throw new DelayedError();
        }
      }
    } finally {
      if (!parked) ticket.close();
    }
  }

  /**
   * Parks a shadow's copy until the pair settles or its executor dies (the ticket wakes it)
   * or until its lease would end. Returns false, without parking, when a wake-up already came.
   */
  private async park(
    job: Job<DataType, ResultType, NameType>,
    token: string | undefined,
    ticket: Ticket,
    address: RecordAddress,
    busy: Busy,
    round: number,
  ): Promise<boolean> {
    let woke: WakeReason | undefined;
    let isParked = false;
    ticket.onNextWake(ownerOf(busy), (reason) => {
      woke = reason;
      if (isParked) this.parking.promote(job, ticket, address, reason);
    });
    if (woke !== undefined && round < 5) return false;
    // With a session, the watcher sees the owner's lease run out (per process, not per job),
    // so the copy parks long: its delay only matters if this process dies meanwhile. Without
    // one, the copy must come back when the record's own lease would end.
    const delay =
      busy.ownerSessionKey !== '' ? this.options.maxParkMs : Math.max(busy.recheckMs, 0) + 5;
    await this.runs.parkCopy(job, token, Math.min(delay, this.options.maxParkMs));
    isParked = true;
    this.parking.hold(address.key, ticket);
    if (woke !== undefined) this.parking.promote(job, ticket, address, woke);
    return true;
  }
}
