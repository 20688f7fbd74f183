import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { Worker } from 'node:worker_threads';
import type { Redis } from 'ioredis';
import { asError } from '../errors.js';
import { bestEffort } from './bounded.js';
import { localDeadline } from './deadline.js';
import { type ProcessSession, Session } from './session.js';
import {
  type FromKeeper,
  type KeeperData,
  type KeeperTarget,
  SLOTS,
  sessionKeeperThread,
  type ToKeeper,
} from './session-thread.js';

/** How often the main thread writes its sign of life for the keeper thread. */
const BEAT_MS = 200;
const NS_PER_MS = 1_000_000n;

/**
 * Transpilers that keep function names (tsx, some bundlers) call a module-level `__name`
 * helper inside functions; the thread's source text is one function without its module, so
 * it gets a stand-in.
 */
const THREAD_PRELUDE = 'var __name = (f) => f;\n';

function hrNow(): bigint {
  return process.hrtime.bigint();
}

/**
 * Where a thread can reach the server the lock connection reached, or undefined when it
 * cannot be told (no socket yet, a connection of another kind): the session is then kept
 * from the main thread.
 */
export function keeperTarget(client: Redis): KeeperTarget | undefined {
  const o = client.options;
  const auth = {
    ...(o.username ? { username: o.username } : {}),
    ...(o.password ? { password: o.password } : {}),
    db: o.db ?? 0,
  };
  if (o.path) return { path: o.path, ...auth };
  const stream = (client as { stream?: Socket }).stream;
  if (stream?.remoteAddress === undefined || stream.remotePort === undefined) return undefined;
  let tls: Record<string, unknown> | undefined;
  if (o.tls !== undefined) {
    tls = {};
    for (const [name, value] of Object.entries(o.tls)) {
      if (typeof value !== 'function') tls[name] = value;
    }
    // The certificate names the host, not the address it resolved to.
    const servername = (stream as TLSSocket).servername;
    tls.servername = typeof servername === 'string' ? servername : (o.host ?? stream.remoteAddress);
  }
  return {
    host: stream.remoteAddress,
    port: stream.remotePort,
    ...(tls === undefined ? {} : { tls }),
    ...auth,
  };
}

export interface ThreadSessionTiming {
  /** The key's time to live: how long after its last refresh a cut-off process is taken over. */
  ttlMs: number;
  /** How long the main thread may be unresponsive before its runs are given up. */
  leaseMs: number;
  /** How often the main thread refreshes the key if the thread cannot (a life of `leaseMs`). */
  heartbeatMs: number;
}

/**
 * This process's session on one Redis (or a Sentinel's master), kept alive by a worker
 * thread with its own connection: the key lives only `ttlMs` (3 s by default) past its last
 * refresh, so a process cut off from the lock store (its connections open, its packets
 * lost: a region whose network failed) is taken over within seconds, while a main thread
 * busy with a CPU-bound job for seconds is not, since the thread refreshes the key for it.
 * The thread stops refreshing once the main thread has been silent for `leaseMs − ttlMs`,
 * so a stuck main thread is still taken over after `leaseMs`, as before.
 *
 * Runs stop before the twin can start: the thread publishes in shared memory when the
 * lease may end on this process's clock (from when the last refresh that got through was
 * sent, less a margin), which `deadlineAt` reads and every side effect checks, and tells
 * the main thread (`onLost`) when it passes with no refresh.
 */
export class ThreadSession implements ProcessSession {
  private readonly slots = new BigInt64Array(new SharedArrayBuffer(3 * 8));
  private worker: Worker | undefined;
  /** Kept from the main thread when the keeper thread failed. */
  private fallback: Session | undefined;
  private fallingBack = false;
  private beatTimer: NodeJS.Timeout | undefined;
  private value = 0n;
  private started = false;
  private stopped = false;
  private readonly marginMs: number;
  private readonly everyMs: number;
  /** When the key was last made anew (hrtime ns): a 'missing' from before it is old news. */
  private restoredAt = 0n;
  private restoring: Promise<void> | undefined;
  private target: KeeperTarget | undefined;
  private readonly onReady = (): void => this.retarget();

  constructor(
    private readonly client: Redis,
    readonly key: string,
    private readonly timing: ThreadSessionTiming,
    private readonly onLost: () => void,
    private readonly onError: (err: Error) => void,
  ) {
    this.everyMs = Math.floor(timing.ttlMs / 2);
    this.marginMs = Math.ceil(timing.ttlMs - localDeadline(0, timing.ttlMs, this.everyMs));
  }

  get deadlineAt(): number {
    if (this.fallback !== undefined) return this.fallback.deadlineAt;
    const deadline = Atomics.load(this.slots, SLOTS.deadline);
    return performance.now() + Number(deadline - hrNow()) / 1e6;
  }

  async start(): Promise<void> {
    const sentAt = hrNow();
    await this.client.set(this.key, '1', 'PX', this.timing.ttlMs);
    this.started = true;
    this.lease(sentAt);
    const target = keeperTarget(this.client);
    if (this.stopped) return;
    if (target === undefined) {
      await this.fallBack(undefined);
      return;
    }
    this.target = target;
    this.beat();
    this.beatTimer = setInterval(() => this.beat(), BEAT_MS);
    this.beatTimer.unref();
    const workerData: KeeperData = {
      shared: this.slots.buffer as SharedArrayBuffer,
      slots: SLOTS,
      key: this.key,
      ttlMs: this.timing.ttlMs,
      everyMs: this.everyMs,
      marginMs: this.marginMs,
      staleMs: this.timing.leaseMs - this.timing.ttlMs,
      retryMs: Math.min(250, this.everyMs),
      target,
    };
    const worker = new Worker(`${THREAD_PRELUDE}(${sessionKeeperThread.toString()})();`, {
      eval: true,
      workerData,
      // A few sockets and timers: keep the thread's heap small.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    this.worker = worker;
    worker.unref();
    worker.on('message', (message: FromKeeper) => this.heard(message));
    worker.on('error', (err) => void this.fallBack(err));
    worker.on('exit', (code) => {
      if (!this.stopped && this.worker === worker) {
        void this.fallBack(new Error(`it exited with code ${code}`));
      }
    });
    this.client.on('ready', this.onReady);
  }

  setGrace(graceMs: number | undefined): void {
    this.value = graceMs === undefined ? 0n : BigInt(Math.max(0, Math.round(graceMs)));
    Atomics.store(this.slots, SLOTS.grace, this.value);
    this.fallback?.setGrace(graceMs);
    if (this.started && !this.stopped) this.post({ type: 'renew' });
  }

  restore(): Promise<void> {
    if (this.fallback !== undefined) return this.fallback.restore();
    this.restoring ??= this.remake().finally(() => {
      this.restoring = undefined;
    });
    return this.restoring;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.beatTimer);
    this.client.off('ready', this.onReady);
    const worker = this.worker;
    this.worker = undefined;
    if (worker !== undefined) {
      this.post({ type: 'stop' }, worker);
      await worker.terminate().catch(() => {});
    }
    if (this.fallback !== undefined) {
      await this.fallback.stop();
      return;
    }
    if (!this.started) return;
    // Unreachable (or slow to answer): the key runs out by itself, within ttlMs.
    await bestEffort(this.client, () => this.client.del(this.key));
  }

  private beat(): void {
    Atomics.store(this.slots, SLOTS.beat, hrNow());
  }

  private lease(sentAt: bigint): void {
    Atomics.store(
      this.slots,
      SLOTS.deadline,
      sentAt + BigInt(this.timing.ttlMs - this.marginMs) * NS_PER_MS,
    );
  }

  private post(message: ToKeeper, worker = this.worker): void {
    worker?.postMessage(message);
  }

  private heard(message: FromKeeper): void {
    if (this.stopped) return;
    if (message.type === 'expired') this.onLost();
    else if (message.type === 'error') {
      this.onError(new Error(`bullmq-paired: the session keeper thread: ${message.message}`));
    } else if (message.sentAtNs < this.restoredAt) {
      // Found gone before the key was made anew: the thread may go on from that.
      this.post({ type: 'armed', sentAtNs: this.restoredAt });
    } else {
      this.restore().catch((err: unknown) => this.onError(asError(err)));
    }
  }

  /** The key is gone: runs under it stop, then it is made anew and the thread goes on. */
  private async remake(): Promise<void> {
    this.onLost();
    const sentAt = hrNow();
    const value = this.value > 0n ? String(this.value) : '1';
    await this.client.set(this.key, value, 'PX', this.timing.ttlMs);
    this.restoredAt = sentAt;
    if (this.stopped) return;
    this.post({ type: 'armed', sentAtNs: sentAt });
  }

  /** The lock connection reconnected, maybe to another server (a Sentinel failover). */
  private retarget(): void {
    const target = keeperTarget(this.client);
    if (target === undefined || this.stopped) return;
    const was = this.target;
    if (was?.host === target.host && was?.port === target.port && was?.path === target.path) return;
    this.target = target;
    this.post({ type: 'target', target });
  }

  /**
   * The thread could not be made or died: the key is kept from the main thread from now on,
   * with a life of `leaseMs`, as on a Cluster (a short life there would let a busy main
   * thread be taken over).
   */
  private async fallBack(err: Error | undefined): Promise<void> {
    if (this.fallingBack || this.stopped) return;
    this.fallingBack = true;
    const worker = this.worker;
    this.worker = undefined;
    clearInterval(this.beatTimer);
    void worker?.terminate().catch(() => {});
    if (err !== undefined) {
      this.onError(
        new Error(
          `bullmq-paired: the session keeper thread failed (${err.message}); the session is kept from the main thread from now on`,
        ),
      );
    }
    // Runs that outlived what the thread granted stop first.
    if (this.deadlineAt <= performance.now()) this.onLost();
    const fallback = new Session(
      this.client,
      this.key,
      this.timing.leaseMs,
      this.timing.heartbeatMs,
      this.onLost,
      this.onError,
    );
    if (this.value > 0n) fallback.setGrace(Number(this.value));
    await fallback.start();
    this.fallback = fallback;
    if (this.stopped) await fallback.stop();
  }
}
