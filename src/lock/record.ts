import { CorruptRecordError, type PeerErrorInfo } from '../errors.js';
import type { RecordAddress } from './keys.js';
import type { AcquireReply, InspectReply, TakeoverReason } from './scripts.js';

export type PairState = 'running' | 'done' | 'failed' | 'released';

/** A pair record as `inspect` returns it. Times are Redis server time in ms since the epoch. */
export interface PairRecord {
  id: string;
  hash: string | undefined;
  state: PairState;
  /** Member that holds (running) or last held the record. */
  owner: string;
  fence: number;
  /** How many grants the record has seen (first run plus takeovers). */
  attempts: number;
  /** Lease left in ms while running (negative once it has run out), else null. */
  leaseLeftMs: number | null;
  /** Why the current or last grant was a takeover, if it was one. */
  takeover: TakeoverReason | undefined;
  /** The executor's result (state done); undefined if it returned nothing. */
  result: unknown;
  /** What the last executor's failure left (state failed). */
  error: PeerErrorInfo | undefined;
  createdAt: number;
  updatedAt: number;
  /** Time left until the record is deleted by retention, in ms. */
  retentionLeftMs: number;
  /** While running: how to tell whether the owner's process lives ('' when unknown). */
  ownerLiveness: { channel: string; sessionKey: string };
}

interface StoredRecord {
  state: PairState;
  owner: string;
  fence: number;
  attempts?: number;
  leaseUntil?: number;
  takeover?: TakeoverReason;
  result?: string;
  error?: string;
  createdAt?: number;
  updatedAt?: number;
  live?: string;
  skey?: string;
  final?: boolean;
}

export function parseJson<T>(raw: string | null | undefined): T | undefined {
  return raw === null || raw === undefined || raw === '' ? undefined : (JSON.parse(raw) as T);
}

export function toPairRecord(address: RecordAddress, reply: InspectReply): PairRecord | null {
  if (reply.raw === null) return null;
  let stored: StoredRecord;
  try {
    stored = JSON.parse(reply.raw) as StoredRecord;
  } catch {
    throw new CorruptRecordError(address.key, address.field);
  }
  return {
    id: address.id,
    hash: address.hash,
    state: stored.state,
    owner: stored.owner,
    fence: stored.fence,
    attempts: stored.attempts ?? 0,
    // Under a session the record's own leaseUntil is never extended: the session holds the lease.
    leaseLeftMs:
      stored.state !== 'running'
        ? null
        : (reply.sessionLeftMs ??
          (stored.leaseUntil === undefined ? null : stored.leaseUntil - reply.now)),
    takeover: stored.takeover,
    result: parseJson(stored.result),
    error: parseJson<PeerErrorInfo>(stored.error),
    createdAt: stored.createdAt ?? 0,
    updatedAt: stored.updatedAt ?? 0,
    retentionLeftMs: reply.retentionLeftMs,
    ownerLiveness: { channel: stored.live ?? '', sessionKey: stored.skey ?? '' },
  };
}

/**
 * What an acquire of the raw record would answer without granting it: the stored result of a
 * done record, or the error of a failed one the caller may not take over (`policy` 'respect',
 * or a final failure); undefined otherwise (an acquire would grant or answer busy), and for a
 * record that is not ours (the acquire itself reports it).
 */
export function settledReply(
  raw: string | null,
  policy: string,
): Extract<AcquireReply, { kind: 'done' | 'failed' }> | undefined {
  let stored: StoredRecord | undefined;
  try {
    stored = parseJson<StoredRecord>(raw);
  } catch {
    return undefined;
  }
  if (stored?.state === 'done') {
    return {
      kind: 'done',
      fence: stored.fence,
      owner: stored.owner,
      result: stored.result ?? null,
    };
  }
  if (stored?.state === 'failed' && (policy === 'respect' || stored.final === true)) {
    return {
      kind: 'failed',
      fence: stored.fence,
      owner: stored.owner,
      error: stored.error ?? null,
    };
  }
  return undefined;
}
