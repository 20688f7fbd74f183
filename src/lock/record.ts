import { CorruptRecordError, type PeerErrorInfo, PeerFailedError } from '../errors.js';
import type { RecordAddress } from './keys.js';
import type { StoredRecord } from './lua/scripts.generated.js';
import type { AcquireReply, InspectReply, TakeoverReason } from './scripts.js';

/**
 * The states a pair record moves through: running, then one of the settled three. 'waiting'
 * comes first when a standby twin (not the job's chosen executor) looked before any claim.
 */
const PAIR_STATES = ['waiting', 'running', 'done', 'failed', 'released'] as const;
export type PairState = (typeof PAIR_STATES)[number];

function isPairState(value: unknown): value is PairState {
  return PAIR_STATES.some((state) => state === value);
}

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
  /** The executor's last reported progress (state done), undefined if none. */
  progress: unknown;
  createdAt: number;
  /** How long ago the record was created, in ms (server time): a standby's wait so far. */
  ageMs: number;
  updatedAt: number;
  /** Time left until the record is deleted by retention, in ms. */
  retentionLeftMs: number;
  /** While running: how to tell whether the owner's process lives ('' when unknown). */
  ownerLiveness: { channel: string; sessionKey: string };
}

/** A pair record as the Lua scripts store it: its fields come from `lua/record.json`. */
export type { StoredRecord };

/**
 * The record in `raw`, or undefined when it is not one the scripts can read (they answer
 * CORRUPT): JSON of an object with a numeric fence and a known state.
 */
export function readStoredRecord(raw: string): StoredRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const record = value as Partial<StoredRecord>;
  if (typeof record.fence !== 'number' || !isPairState(record.state)) return undefined;
  return record as StoredRecord;
}

export function parseJson<T>(raw: string | null | undefined): T | undefined {
  return raw === null || raw === undefined || raw === '' ? undefined : (JSON.parse(raw) as T);
}

export function toPairRecord(address: RecordAddress, reply: InspectReply): PairRecord | null {
  if (reply.raw === null) return null;
  const stored = readStoredRecord(reply.raw);
  if (stored === undefined) throw new CorruptRecordError(address.key, address.field);
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
    progress: parseJson(stored.progress),
    createdAt: stored.createdAt ?? 0,
    ageMs: reply.now - (stored.createdAt ?? reply.now),
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
  const stored = raw === null ? undefined : readStoredRecord(raw);
  if (stored?.state === 'done') {
    return {
      kind: 'done',
      fence: stored.fence,
      owner: stored.owner,
      result: stored.result ?? null,
      progress: stored.progress ?? null,
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

/**
 * What a copy or a `run()` that did not execute ends with, from an acquire's answer (or
 * `settledReply`'s): the executor's stored result, parsed. One reading for `PairedLock` and
 * `PairedProcessor`.
 */
export function storedResult<T>(reply: Extract<AcquireReply, { kind: 'done' }>): T {
  return parseJson<T>(reply.result) as T;
}

/** The `PeerFailedError` a failed pair ends a shadow with, the executor's error parsed in it. */
export function peerFailure(
  id: string,
  reply: Extract<AcquireReply, { kind: 'failed' }>,
): PeerFailedError {
  return new PeerFailedError(
    id,
    reply.fence,
    reply.owner,
    parseJson<PeerErrorInfo>(reply.error) ?? undefined,
  );
}
