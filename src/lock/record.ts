import { CorruptRecordError, type PeerErrorInfo } from '../errors.js';
import type { RecordAddress } from './keys.js';
import type { InspectReply, TakeoverReason } from './scripts.js';

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
