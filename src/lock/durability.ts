/**
 * Opt-in durability of grants and settles (`durability: { replicas, timeoutMs }`): after a
 * write the lock connection sends `WAIT replicas timeoutMs`, so a grant or settle counts only
 * once that many replicas hold it. Redis replication is asynchronous: without this, a write
 * the primary acknowledged but never sent to a replica vanishes in a failover, and the
 * promoted replica grants the job again while its first run goes on (fenced higher: fences
 * come from the store's clock), or runs a job again whose result it lost.
 *
 * On one Redis (or Sentinel) a WAIT is sent after the write, shared by the writes that came
 * meanwhile. On a Cluster a keyless WAIT would go to any node, so each write travels with its
 * own WAIT in one pipeline to the record's master (`scripts.ts`), and its count arrives with
 * the reply (`acked`).
 */
import { NotReplicatedError } from '../errors.js';
import type { RedisConnection } from './scripts.js';

export interface Durability {
  /** Replicas that must acknowledge a grant or settle before it counts. */
  replicas: number;
  /** Longest a WAIT blocks the lock connection, in ms. */
  timeoutMs: number;
}

/**
 * A settle the replicas did not acknowledge in time. Not a `PairedError` on purpose: the settle
 * loop retries it with back-off like any transient lock-store error, and a repeated settle is
 * recognised by the script (same fence), so the retry only waits for replication again.
 */
export class SettleNotReplicatedError extends Error {
  constructor(id: string, state: string, acked: number, d: Durability) {
    super(
      `storing "${id}" as ${state} reached ${acked} of ${d.replicas} replica(s) within ${d.timeoutMs} ms; retrying, since a failover now could undo it`,
    );
    this.name = 'SettleNotReplicatedError';
  }
}

/**
 * WAITs on one connection. WAIT counts the writes this connection sent before it, and blocks
 * the connection (every command queued behind it) for up to `timeoutMs` when replicas lag: so
 * at most one WAIT is on the wire at a time, and callers that arrive meanwhile share the next
 * one, which is sent after their writes.
 */
export class Replication {
  private onWire: Promise<number> | undefined;
  private next: Promise<number> | undefined;

  /** On a Cluster: the WAIT goes with each write (pass this to `acquire` and `settle`). */
  readonly withWrites: Durability | undefined;

  constructor(
    private readonly client: RedisConnection,
    readonly durability: Durability,
  ) {
    this.withWrites = client.isCluster ? durability : undefined;
  }

  /**
   * How many replicas acknowledged every write this connection sent before the call; 0 when
   * the connection was replaced meanwhile (ioredis resends a WAIT that was on the wire over
   * the new connection, where it counts none of the old one's writes: after a failover it
   * would vouch for a write the old primary took and lost).
   */
  async acked(): Promise<number> {
    const stream = this.stream();
    const count = await this.shared();
    return this.stream() === stream ? count : 0;
  }

  /** The client's current socket: a new one after every reconnect. */
  private stream(): unknown {
    return (this.client as { stream?: unknown }).stream;
  }

  private shared(): Promise<number> {
    if (this.next !== undefined) return this.next;
    const onWire = this.onWire;
    if (onWire === undefined) return this.send();
    const next = onWire
      .then(
        () => {},
        () => {},
      )
      .then(() => {
        if (this.next === next) this.next = undefined;
        return this.send();
      });
    this.next = next;
    return next;
  }

  private send(): Promise<number> {
    const { replicas, timeoutMs } = this.durability;
    const reply = Promise.resolve(this.client.wait(replicas, timeoutMs)).then(Number);
    this.onWire = reply;
    const clear = (): void => {
      if (this.onWire === reply) this.onWire = undefined;
    };
    reply.then(clear, clear);
    return reply;
  }

  /**
   * After a grant: throws `NotReplicatedError` when too few replicas hold it (the grant is not
   * used: `release` gives it back, best-effort), and rethrows a failed WAIT after the same
   * release, since the grant's fate is then unknown. `counted`: the count that came with the
   * write (a Cluster); otherwise a WAIT is sent now.
   */
  async grant(id: string, release: () => Promise<unknown>, counted?: number): Promise<void> {
    let acked: number;
    try {
      acked = counted ?? (await this.acked());
    } catch (err) {
      await release().catch(() => {});
      throw err;
    }
    if (acked >= this.durability.replicas) return;
    await release().catch(() => {});
    throw new NotReplicatedError(id, acked, this.durability.replicas, this.durability.timeoutMs);
  }

  /** After a settle: throws `SettleNotReplicatedError` (retried by the settle loop) when too few replicas hold it. */
  async settled(id: string, state: string, counted?: number): Promise<void> {
    const acked = counted ?? (await this.acked());
    if (acked < this.durability.replicas) {
      throw new SettleNotReplicatedError(id, state, acked, this.durability);
    }
  }
}
