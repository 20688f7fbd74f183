import type { Notifier } from './notifier.js';
import type { SettledDone } from './settle-message.js';

/** How to tell whether the executor being shadowed is alive ('' fields: unknown). */
export interface Owner {
  /** Its process's liveness channel: no subscriber means the process is gone. */
  channel: string;
  /** Its process's session key: gone means its lease ran out (frozen or cut off). */
  sessionKey: string;
}

export const NO_OWNER: Owner = { channel: '', sessionKey: '' };

/**
 * Why a ticket woke: the record settled (its settle message), its owner looks gone (empty
 * liveness channel or session), or anything may have changed (the subscriber reconnected).
 */
export type WakeReason = 'settled' | 'gone' | 'recheck';

/**
 * One shadow's interest in one record. It is registered *before* the acquire that may
 * answer "busy", because the settle message travels on another connection and can arrive
 * before that reply: a message that lands in between is remembered, not lost.
 */
export class Ticket {
  owner: Owner = NO_OWNER;
  private pending: WakeReason | undefined;
  private listener: ((reason: WakeReason) => void) | undefined;

  constructor(
    readonly tag: string,
    private readonly notifier: Notifier,
  ) {}

  /**
   * The outcome a settle message carried, once one did: the pair is done with this result,
   * so a shadow completes its copy without reading the record.
   */
  done: SettledDone | undefined;

  wake(reason: WakeReason, done?: SettledDone): void {
    if (done !== undefined) this.done = done;
    const listener = this.listener;
    this.listener = undefined;
    if (listener) listener(reason);
    else this.pending = reason;
  }

  /**
   * Calls `listener` once, at the next settle message or sign of a dead executor, or at
   * once if one arrived since the ticket was made or last woke.
   */
  onNextWake(owner: Owner, listener: (reason: WakeReason) => void): void {
    this.owner = owner;
    const pending = this.pending;
    if (pending !== undefined) {
      this.pending = undefined;
      listener(pending);
      return;
    }
    this.listener = listener;
    if (owner.channel !== '' || owner.sessionKey !== '') this.notifier.watchLiveness();
  }

  /** Whether the last `wait` ended by a wake-up rather than by its timeout. */
  woke = false;

  /** Resolves at the next wake or after `timeoutMs`; rejects when `signal` aborts. */
  wait(owner: Owner, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    this.woke = false;
    return new Promise<void>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.listener = undefined;
      };
      const onAbort = (): void => {
        finish();
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        finish();
        resolve();
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.onNextWake(owner, () => {
        this.woke = true;
        finish();
        resolve();
      });
    });
  }

  /** Set by `close()`: nothing wakes this ticket any more. */
  closed = false;

  close(): void {
    this.closed = true;
    this.listener = undefined;
    this.notifier.forget(this);
  }
}
