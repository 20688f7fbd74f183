import type { EventEmitter } from 'node:events';
import type { Job } from 'bullmq';
import { asError, type LeaseLossReason } from '../errors.js';
import type { TakeoverReason } from '../lock/scripts.js';
import type { PairedLogger } from '../observability/logger.js';
import { PairAttributes, type PairTrace } from '../observability/tracing.js';
import type { PairedJobEvent, PairedProcessorEvents } from './events.js';

export interface Reporting {
  twin: string;
  jobLogs: boolean;
  logger: PairedLogger;
  emitter: EventEmitter<PairedProcessorEvents>;
  report(err: Error): void;
}

/**
 * Every paired decision about one copy, said once and told to everyone who listens: a
 * `job.log` line (Bull Board), an event (metrics), a log entry and span attributes. Ids and
 * pair facts only: job data and results never leave through here.
 */
export class Decisions {
  constructor(
    private readonly job: Job,
    private readonly trace: PairTrace,
    private readonly to: Reporting,
  ) {}

  private base(fence: number): PairedJobEvent {
    return { jobId: this.job.id as string, queue: this.job.queueName, twin: this.to.twin, fence };
  }

  takeover(fence: number, reason: TakeoverReason, idleMs: number | undefined): void {
    const event = { ...this.base(fence), reason, idleMs };
    this.trace.set({ [PairAttributes.takeover]: reason });
    this.trace.event('takeover', { reason, idleMs });
    this.to.logger.info(event, 'bullmq-paired: taking over');
    this.to.emitter.emit('takeover', event);
  }

  async executed(
    fence: number,
    takeover: TakeoverReason | undefined,
    durationMs: number,
  ): Promise<void> {
    this.role('executor', fence);
    const took = takeover ? `, took over: ${takeover}` : '';
    // Not awaited: it is on the job's path, and BullMQ's completion, sent after it on the
    // same connection, is executed after it anyway.
    void this.log(`executed on ${this.to.twin} (fence ${fence}${took})`);
    const event = { ...this.base(fence), takeover, durationMs };
    this.to.logger.debug(event, 'bullmq-paired: executed');
    this.to.emitter.emit('executed', event);
  }

  /**
   * A standby's copy parks before its watch has read the record: its span is marked a
   * 'shadow' of the chosen twin now (the span ends with this pickup), the event follows.
   * No grant is known yet, so the span has no fence (a 0 would read as a fence).
   */
  standby(chosen: string): void {
    this.role('shadow', undefined, chosen);
  }

  shadowed(fence: number, owner: string): void {
    this.role('shadow', fence, owner);
    const event = { ...this.base(fence), owner };
    this.to.logger.debug(event, 'bullmq-paired: shadowing, copy parked');
    this.to.emitter.emit('shadowed', event);
  }

  async twinCompleted(fence: number, owner: string): Promise<void> {
    this.role('twin-completed', fence, owner);
    await this.log(`completed by twin ${owner} (fence ${fence}); not run on ${this.to.twin}`);
    const event = { ...this.base(fence), owner };
    this.to.logger.debug(event, 'bullmq-paired: completed by twin');
    this.to.emitter.emit('twinCompleted', event);
  }

  peerFailed(fence: number, owner: string): void {
    this.role('peer-failed', fence, owner);
    this.to.logger.info({ ...this.base(fence), owner }, 'bullmq-paired: the twin failed it');
  }

  /** The lease ended under a running execution: its signal aborts. */
  leaseLost(fence: number, reason: LeaseLossReason | 'superseded'): void {
    const event = { ...this.base(fence), reason };
    this.trace.event('leaseLost', { reason });
    this.to.logger.warn(event, 'bullmq-paired: lease lost, execution aborted');
    this.to.emitter.emit('leaseLost', event);
  }

  async superseded(fence: number, currentFence: number | undefined): Promise<void> {
    this.leaseLost(fence, 'superseded');
    await this.log(
      `run on ${this.to.twin} (fence ${fence}) was superseded by fence ${currentFence ?? '?'}; result not stored`,
    );
  }

  async stopped(fence: number, why: string): Promise<void> {
    await this.log(`run on ${this.to.twin} (fence ${fence}) stopped: ${why}`);
  }

  /** The wrapped processor threw: BullMQ fails this copy and the twin may take over. */
  async failed(fence: number): Promise<void> {
    this.role('executor', fence);
    this.to.logger.info(
      this.base(fence),
      'bullmq-paired: execution failed, the twin may take over',
    );
    await this.log(
      `run on ${this.to.twin} (fence ${fence}) failed; the twin takes over unless onPeerFailure is 'respect'`,
    );
  }

  /** BullMQ cancelled the run (`worker.cancelJob`): the pair is failed for good. */
  async cancelled(fence: number, reason: string): Promise<void> {
    this.role('executor', fence);
    this.trace.event('cancelled', { reason });
    this.to.logger.info(
      { ...this.base(fence), reason },
      'bullmq-paired: execution cancelled, the twin will not run it',
    );
    await this.log(
      `run on ${this.to.twin} (fence ${fence}) cancelled (${reason}); neither twin runs it again`,
    );
  }

  async handedOver(fence: number): Promise<void> {
    this.trace.event('handedOver');
    this.to.logger.info(
      this.base(fence),
      'bullmq-paired: released on shutdown, the twin takes over',
    );
    await this.log(`released by ${this.to.twin} on shutdown (fence ${fence}); the twin takes over`);
  }

  async uncoordinated(): Promise<void> {
    this.role('uncoordinated', 0);
    this.to.logger.warn(
      this.base(0),
      'bullmq-paired: lock store unreachable, running uncoordinated',
    );
    await this.log(`lock store unreachable: run on ${this.to.twin} without coordination`);
  }

  private role(role: string, fence: number | undefined, owner?: string): void {
    this.trace.set({
      [PairAttributes.role]: role,
      ...(fence === undefined ? {} : { [PairAttributes.fence]: fence }),
      ...(owner === undefined ? {} : { [PairAttributes.owner]: owner }),
    });
  }

  private async log(line: string): Promise<void> {
    if (!this.to.jobLogs) return;
    try {
      await this.job.log(`bullmq-paired: ${line}`);
    } catch (err) {
      this.to.report(asError(err));
    }
  }
}
