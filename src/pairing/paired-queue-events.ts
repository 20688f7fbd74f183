import { EventEmitter } from 'node:events';
import { QueueEvents, type QueueEventsListener } from 'bullmq';
import { asError } from '../errors.js';
import { recordAddress } from '../lock/keys.js';
import { toPairRecord } from '../lock/record.js';
import { inspect, type RedisConnection } from '../lock/scripts.js';
import { assertKnownOptions, integerOption, show, stringOption, twinEntries } from '../validate.js';
import { recordId } from './keys.js';
import { pairingGroup } from './pairing-record.js';
import { type TwinQueueOptions, twinConfig } from './twins.js';

const OWNER = 'PairedQueueEvents';

/** Pairs whose outcome is still open (one copy reported, not the other) that are kept at most. */
const MAX_OPEN_PAIRS = 10_000;

export interface PairedQueueEventsOptions {
  /**
   * The two twins, as `PairedQueue` takes them (`connection`, `queue`, `prefix`). Each twin's
   * BullMQ `QueueEvents` blocks on its connection: pass connection options, or a client used
   * for nothing else.
   */
  twins: Record<string, TwinQueueOptions>;
  /**
   * The lock store the workers use (their `lockConnection`). With it, the merged `completed`
   * and `failed` events name the twin that executed the job (`executor`, read from its pair
   * record: one read per job). Without it `executor` is undefined. Never closed here.
   */
  lockConnection?: RedisConnection;
  /** The workers' lock `prefix`. Default `'paired'`. */
  prefix?: string;
  /** The workers' `group`. Default: as `PairedQueue` records it (the queue name, or this name). */
  group?: string;
  /** Start reading at once (BullMQ's `autorun`). Default true; else call `run()`. */
  autorun?: boolean;
  /** BullMQ's `blockingTimeout` for each twin's XREAD, in ms. Default 10 000. */
  blockingTimeout?: number;
  /**
   * BullMQ's `lastEventId`, for both twins' streams: read the events after this id (`'0-0'`:
   * all that are kept). Default: only events from now on.
   */
  lastEventId?: string;
}

type BullListener = QueueEventsListener;
/** BullMQ events passed through per twin, each with the twin added to its arguments. */
type PassedThrough = Exclude<
  keyof BullListener,
  'completed' | 'failed' | 'drained' | 'error' | `ioredis:${string}`
>;
type WithTwin<F> = F extends (args: infer A, id: string) => void
  ? (args: A & { twin: string }, id: string) => void
  : never;

/** What each event of `PairedQueueEvents` passes its listeners. */
export type PairedQueueEventsListener<ResultType = unknown> = {
  [E in PassedThrough]: WithTwin<BullListener[E]>;
} & {
  /**
   * Once per job: the first of its copies completed. `twin`: whose copy that was; `executor`:
   * the twin that ran the job, from its pair record (needs `lockConnection`).
   */
  completed: (
    args: {
      jobId: string;
      returnvalue: ResultType;
      prev?: string;
      twin: string;
      executor: string | undefined;
    },
    id: string,
  ) => void;
  /**
   * Once per job: every twin's copy failed (after BullMQ's retries), so no twin will run it.
   * A copy that fails while the other twin takes the job over is not a pair failure: it shows
   * as `copyFailed`, and the pair ends `completed`. `failedReason` is the executor's copy's
   * (when known) else the last one's; `failedReasons` has each twin's.
   */
  failed: (
    args: {
      jobId: string;
      failedReason: string;
      prev?: string;
      twin: string;
      executor: string | undefined;
      failedReasons: Record<string, string>;
    },
    id: string,
  ) => void;
  /** One twin's copy completed (BullMQ's `completed` of that twin). */
  copyCompleted: (
    args: { jobId: string; returnvalue: ResultType; prev?: string; twin: string },
    id: string,
  ) => void;
  /** One twin's copy failed for good (BullMQ's `failed` of that twin). */
  copyFailed: (
    args: { jobId: string; failedReason: string; prev?: string; twin: string },
    id: string,
  ) => void;
  drained: (id: string, twin: string) => void;
  error: (err: Error, twin?: string) => void;
};

interface OpenPair {
  /** Per twin that reported a final copy event: its failedReason, or null once completed. */
  reported: Map<string, string | null>;
  emitted: boolean;
}

/** One twin's BullMQ QueueEvents, forwarding everything it emits to the pair's listener. */
class TwinQueueEvents extends QueueEvents {
  forward: ((event: string, args: unknown[]) => void) | undefined;

  // biome-ignore lint/suspicious/noExplicitAny: BullMQ's own signature
  override emit(event: any, ...args: any[]): boolean {
    this.forward?.(String(event), args);
    return super.emit(event, ...(args as []));
  }
}

/**
 * BullMQ's `QueueEvents` over both twins of a `PairedQueue`: one `completed` or `failed` per
 * job (de-duplicated by job id, naming the twin that executed it), each copy's final event as
 * `copyCompleted`/`copyFailed`, and every other BullMQ event of either twin (`progress`,
 * `active`, `waiting`, `delayed`, `added`, …) passed through with a `twin` field. Job-specific
 * names work as in BullMQ: `completed:<jobId>`, `failed:<jobId>`, `progress:<jobId>`, ….
 * `close()` closes both twins' QueueEvents.
 */
export class PairedQueueEvents<ResultType = unknown> extends EventEmitter {
  readonly name: string;
  readonly twins: readonly string[];
  /** The pair records' namespace, as the workers name them. */
  readonly group: string;
  private readonly perTwin = new Map<string, TwinQueueEvents>();
  private readonly open = new Map<string, OpenPair>();
  private readonly lock: { client: RedisConnection; prefix: string } | undefined;

  constructor(name: string, options: PairedQueueEventsOptions) {
    super();
    this.name = stringOption(OWNER, 'name', name);
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(
        `${OWNER}: options must be an object with { twins }, received ${show(options)}`,
      );
    }
    assertKnownOptions(OWNER, options, [
      'twins',
      'lockConnection',
      'prefix',
      'group',
      'autorun',
      'blockingTimeout',
      'lastEventId',
    ]);
    const entries = twinEntries(OWNER, options.twins, Number.POSITIVE_INFINITY);
    const blockingTimeout =
      options.blockingTimeout === undefined
        ? undefined
        : integerOption(OWNER, 'blockingTimeout', options.blockingTimeout, { min: 1 });
    const lastEventId =
      options.lastEventId === undefined
        ? undefined
        : stringOption(OWNER, 'lastEventId', options.lastEventId);
    const configs = entries.map(([twin, config]) => twinConfig(OWNER, this.name, twin, config));
    this.group =
      options.group === undefined
        ? pairingGroup(
            this.name,
            configs.map((c) => c.queueName),
          )
        : stringOption(OWNER, 'group', options.group);
    if (options.lockConnection !== undefined) {
      const prefix =
        options.prefix === undefined ? 'paired' : stringOption(OWNER, 'prefix', options.prefix);
      this.lock = { client: options.lockConnection, prefix };
    }
    this.twins = configs.map((c) => c.name);
    for (const c of configs) {
      const opts = {
        connection: c.connection,
        prefix: c.prefix,
        autorun: false,
        ...(blockingTimeout === undefined ? {} : { blockingTimeout }),
        ...(lastEventId === undefined ? {} : { lastEventId }),
      };
      // BullMQ's overloads: a backend factory third, or none for Redis.
      const events =
        c.backend === undefined
          ? new TwinQueueEvents(c.queueName, opts)
          : (new TwinQueueEvents(c.queueName, opts as never, c.backend) as TwinQueueEvents);
      events.forward = (event, args) => this.forward(c.name, event, args);
      this.perTwin.set(c.name, events);
    }
    if (options.autorun ?? true) {
      void this.run().catch((err: unknown) => this.emit('error', asError(err)));
    }
  }

  /** One twin's BullMQ `QueueEvents` (its events also reach this object, with the twin). */
  events(twin: string): QueueEvents {
    const found = this.perTwin.get(twin);
    if (found === undefined)
      throw new TypeError(`${OWNER}: no twin "${twin}"; twins are ${this.twins.join(', ')}`);
    return found;
  }

  /** Starts reading both twins' events (with `autorun: false`); resolves when both stop. */
  async run(): Promise<void> {
    await Promise.all(
      [...this.perTwin.entries()].map(([twin, events]) =>
        events.run().catch((err: unknown) => {
          // One twin's Redis refusing must not stop the other's events.
          this.emit('error', asError(err), twin);
        }),
      ),
    );
  }

  /** Resolves once both twins' connections are ready. */
  async waitUntilReady(): Promise<void> {
    await Promise.all([...this.perTwin.values()].map((events) => events.waitUntilReady()));
  }

  /** Closes both twins' QueueEvents (not `lockConnection`). */
  async close(): Promise<void> {
    await Promise.all([...this.perTwin.values()].map((events) => events.close()));
    this.open.clear();
  }

  override on<E extends keyof PairedQueueEventsListener<ResultType>>(
    event: E,
    listener: PairedQueueEventsListener<ResultType>[E],
  ): this;
  override on(event: `${string}:${string}`, listener: (args: never, id: string) => void): this;
  // biome-ignore lint/suspicious/noExplicitAny: EventEmitter's own signature
  override on(event: string | symbol, listener: any): this {
    return super.on(event, listener);
  }

  override once<E extends keyof PairedQueueEventsListener<ResultType>>(
    event: E,
    listener: PairedQueueEventsListener<ResultType>[E],
  ): this;
  override once(event: `${string}:${string}`, listener: (args: never, id: string) => void): this;
  // biome-ignore lint/suspicious/noExplicitAny: EventEmitter's own signature
  override once(event: string | symbol, listener: any): this {
    return super.once(event, listener);
  }

  override off<E extends keyof PairedQueueEventsListener<ResultType>>(
    event: E,
    listener: PairedQueueEventsListener<ResultType>[E],
  ): this;
  override off(event: `${string}:${string}`, listener: (args: never, id: string) => void): this;
  // biome-ignore lint/suspicious/noExplicitAny: EventEmitter's own signature
  override off(event: string | symbol, listener: any): this {
    return super.off(event, listener);
  }

  private forward(twin: string, event: string, args: unknown[]): void {
    if (event === 'error') {
      this.emit('error', asError(args[0]), twin);
      return;
    }
    if (event === 'drained') {
      this.emit('drained', args[0], twin);
      return;
    }
    const [payload, id] = args as [Record<string, unknown> | undefined, string];
    if (typeof payload !== 'object' || payload === null) {
      this.emit(event, ...args, twin);
      return;
    }
    const withTwin = { ...payload, twin };
    if (event === 'completed' || event === 'failed') {
      const copyEvent = event === 'completed' ? 'copyCompleted' : 'copyFailed';
      this.emit(copyEvent, withTwin, id);
      this.settle(twin, event, withTwin, id);
      return;
    }
    // BullMQ emits `<event>:<jobId>` after `<event>`; the pair's own go out with its outcome.
    if (/^(completed|failed):/.test(event)) return;
    this.emit(event, withTwin, id);
  }

  /** A copy's final event: the pair's outcome once it is decided, exactly once. */
  private settle(
    twin: string,
    event: 'completed' | 'failed',
    args: Record<string, unknown> & { twin: string },
    id: string,
  ): void {
    const jobId = String(args.jobId);
    let pair = this.open.get(jobId);
    if (pair === undefined) {
      pair = { reported: new Map(), emitted: false };
      this.open.set(jobId, pair);
      if (this.open.size > MAX_OPEN_PAIRS) {
        const oldest = this.open.keys().next().value;
        if (oldest !== undefined) this.open.delete(oldest);
      }
    }
    pair.reported.set(twin, event === 'failed' ? String(args.failedReason) : null);
    const decided =
      event === 'completed' ||
      (pair.reported.size === this.twins.length &&
        [...pair.reported.values()].every((reason) => reason !== null));
    // Both copies are final: a later event of this id belongs to a new run of it.
    if (pair.reported.size === this.twins.length) this.open.delete(jobId);
    if (!decided || pair.emitted) return;
    pair.emitted = true;
    const reported = pair.reported;
    void this.executorOf(jobId).then((executor) => {
      if (event === 'completed') {
        const merged = { ...args, executor };
        this.emit('completed', merged, id);
        this.emit(`completed:${jobId}`, merged, id);
        return;
      }
      const failedReasons = Object.fromEntries(reported) as Record<string, string>;
      const failedReason =
        (executor === undefined ? undefined : failedReasons[executor]) ?? String(args.failedReason);
      const merged = { ...args, failedReason, executor, failedReasons };
      this.emit('failed', merged, id);
      this.emit(`failed:${jobId}`, merged, id);
    });
  }

  /** The twin that executed the job, read from its pair record (with `lockConnection`). */
  private async executorOf(jobId: string): Promise<string | undefined> {
    if (this.lock === undefined) return undefined;
    const address = recordAddress(this.lock.prefix, recordId(this.group, jobId));
    try {
      return toPairRecord(address, await inspect(this.lock.client, address))?.owner;
    } catch (err) {
      this.emit('error', asError(err));
      return undefined;
    }
  }
}
