import type { PeerErrorInfo } from '../errors.js';
import { ownersAlive } from '../lock/owners.js';
import { type PairState, toPairRecord } from '../lock/record.js';
import { inspect, type TakeoverReason } from '../lock/scripts.js';
import { type CopyReport, readCopy } from './queues.js';
import { type RedisPool, redactUrl } from './redis.js';
import { addressOf, type Target } from './target.js';

/** The pair record as the CLI prints it: `PairRecord` plus where it lives, nulls for absent. */
export interface RecordReport {
  key: string;
  /** The hash field in hash mode, else null. */
  field: string | null;
  state: PairState;
  owner: string;
  fence: number;
  attempts: number;
  leaseLeftMs: number | null;
  takeover: TakeoverReason | null;
  result: unknown;
  error: PeerErrorInfo | null;
  createdAt: number;
  updatedAt: number;
  /** -1: the record has no expiry (not one this library wrote that way). */
  retentionLeftMs: number;
  /** While running: whether the owner's process still holds its liveness channel. */
  ownerConnected: boolean | null;
}

export interface InspectReport {
  jobId: string;
  /** The record id: `<group>:<jobId>` for PairedProcessor, the id as given otherwise. */
  recordId: string;
  lockStore: string;
  record: RecordReport | null;
  copies: CopyReport[];
}

async function readRecord(pool: RedisPool, target: Target, jobId: string) {
  const address = addressOf(target, jobId);
  return pool.use(target.lockUrl, async (client): Promise<RecordReport | null> => {
    // The inspect script only reads (GET/HGET, PTTL, ZSCORE) unless asked to mark a standby's
    // wait, which the CLI never does: safe on a live store.
    const record = toPairRecord(address, await inspect(client, address));
    if (record === null) return null;
    const channel = record.ownerLiveness.channel;
    let ownerConnected: boolean | null = null;
    if (record.state === 'running' && channel !== '') {
      // The library's read-only owners script: on a Cluster the channel is a sharded one,
      // counted on the master that serves it.
      const [signs] = await ownersAlive(client, client.isCluster, [{ channel, sessionKey: '' }]);
      ownerConnected = (signs?.subscribers ?? 0) > 0;
    }
    return {
      key: address.key,
      field: address.field === '' ? null : address.field,
      state: record.state,
      owner: record.owner,
      fence: record.fence,
      attempts: record.attempts,
      leaseLeftMs: record.leaseLeftMs,
      takeover: record.takeover ?? null,
      result: record.result ?? null,
      error: record.error ?? null,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      retentionLeftMs: record.retentionLeftMs,
      ownerConnected,
    };
  });
}

export async function inspectJob(
  pool: RedisPool,
  target: Target,
  jobId: string,
): Promise<InspectReport> {
  const record = await readRecord(pool, target, jobId);
  const copies = await Promise.all(
    target.twins.map((twin) => readCopy(pool, twin, jobId, record !== null)),
  );
  return {
    jobId,
    recordId: addressOf(target, jobId).id,
    lockStore: redactUrl(target.lockUrl),
    record,
    copies,
  };
}

/** Nothing at all under this id: the CLI exits 1. */
export function foundNothing(report: InspectReport): boolean {
  return report.record === null && report.copies.every((copy) => !copy.found);
}
