import { PairedError } from '../errors.js';

/**
 * How to treat an error from the lock store.
 * - `transient`: the store cannot serve the command now but will (a dropped connection, a
 *   restart still LOADING its data, a BUSY script, a failover's READONLY, TRYAGAIN or
 *   UNBLOCKED (a WAIT cut short by the demotion), OOM
 *   under `noeviction` until memory is freed, NOREPLICAS under `min-replicas-to-write`).
 *   Retrying with back-off is right, and giving up would strand a record.
 * - `permanent`: the store will refuse the same command until a person changes its
 *   configuration (a wrong password, a user without the needed commands or keys, a server
 *   that is not a Redis able to run our scripts). Retrying only hides it: report it loudly.
 * - `ours`: a refusal of bullmq-paired's own (`PairedError`): retrying changes nothing.
 */
export type ErrorClass = 'transient' | 'permanent' | 'ours';

/** Reply-error prefixes that clear up by themselves. */
const TRANSIENT_PREFIXES = [
  'LOADING',
  'BUSY',
  'TRYAGAIN',
  'READONLY',
  'OOM',
  'NOREPLICAS',
  'MASTERDOWN',
  'CLUSTERDOWN',
  'MOVED',
  'ASK',
  'NOSCRIPT',
  // A blocked WAIT when its primary is demoted to a replica (a failover): ask the new one.
  'UNBLOCKED',
];

/** Reply-error prefixes that need a person. */
const PERMANENT_PREFIXES = ['NOAUTH', 'WRONGPASS', 'NOPERM', 'WRONGTYPE'];

/** The first word of a Redis reply error ("OOM command not allowed…" → "OOM"), or ''. */
export function replyCode(err: Error): string {
  if (err.name !== 'ReplyError') return '';
  return /^[A-Z]+/.exec(err.message)?.[0] ?? '';
}

export function classifyError(err: unknown): ErrorClass {
  if (err instanceof PairedError) return 'ours';
  if (!(err instanceof Error)) return 'transient';
  const code = replyCode(err);
  if (code === '') {
    // Not a reply: a connection that dropped, timed out or was closed; ioredis'
    // MaxRetriesPerRequestError; a socket error. Waiting is the only cure.
    return 'transient';
  }
  if (PERMANENT_PREFIXES.includes(code)) return 'permanent';
  if (TRANSIENT_PREFIXES.includes(code)) return 'transient';
  // "ERR unknown command 'EVALSHA'", "ERR Error running script …", a server that is no Redis:
  // nothing a retry changes.
  return 'permanent';
}

/** Back-off for retries against the lock store: 100 ms doubling to `capMs`, with ±20 % jitter. */
export function backoffMs(attempt: number, capMs = 2_000): number {
  const base = Math.min(capMs, 100 * 2 ** Math.min(attempt, 16));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}
