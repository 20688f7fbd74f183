import type { ClaimReply } from './execute.js';
import type { Completion } from './scripts.js';

/**
 * The claim of a run that started before it (a job's chosen executor, fence 1), sent one turn
 * of the event loop after the run started. A run that ends within that turn (a short job whose
 * processor awaits nothing real) sends its claim with its result instead: one lock-store call
 * that claims and completes, not a claim and then a complete. A run that awaits I/O has its
 * claim on the wire by then, as before, so a process that dies after its first await leaves
 * a running record for its twin to take over.
 */
export class StartedClaim {
  /** The claim's answer, once it was sent (with or without the result). */
  readonly reply: Promise<ClaimReply>;
  private wentOut = false;
  private resolve: (reply: ClaimReply) => void = () => {};
  private reject: (err: unknown) => void = () => {};
  private readonly timer: NodeJS.Immediate;

  constructor(private readonly send: (completion?: Completion) => Promise<ClaimReply>) {
    this.reply = new Promise<ClaimReply>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.timer = setImmediate(() => this.go(undefined));
  }

  /** Whether it went out (alone or with a result). */
  get sent(): boolean {
    return this.wentOut;
  }

  /** Sends the claim with the run's result if it has not gone yet: true if it did. */
  withResult(completion: Completion): boolean {
    if (this.wentOut) return false;
    clearImmediate(this.timer);
    this.go(completion);
    return true;
  }

  private go(completion: Completion | undefined): void {
    if (this.wentOut) return;
    this.wentOut = true;
    this.send(completion).then(this.resolve, this.reject);
  }
}
