/**
 * The one place where pair-record key and channel names are built. Hash tags keep every
 * key one script touches in one cluster slot.
 */
export interface RecordAddress {
  /** Task id as the caller gave it. */
  id: string;
  /** Hash key in hash mode, undefined in key mode. */
  hash: string | undefined;
  /** KEYS[1]: the record's own key, or the hash holding it. */
  key: string;
  /** KEYS[2]: the hash's expiry index (in key mode the record key again, unused). */
  index: string;
  /** ARGV[1]: the hash field ('' in key mode). */
  field: string;
}

export function recordAddress(prefix: string, id: string, hash?: string): RecordAddress {
  if (hash === undefined) {
    const key = `${prefix}:pair:{${id}}`;
    return { id, hash, key, index: key, field: '' };
  }
  const key = `${prefix}:pairs:{${hash}}`;
  return { id, hash, key, index: `${key}:expiry`, field: id };
}

/** Where settle notifications for every record under `prefix` are published. */
export function settleChannel(prefix: string): string {
  return `${prefix}:pair:settled`;
}

/** One channel per process (lock instance): its subscriber count says whether it lives. */
export function livenessChannel(prefix: string, instanceId: string): string {
  return `${prefix}:live:${instanceId}`;
}

/** The identity of an address inside one process, as carried by settle messages. */
export function addressTag(key: string, field: string): string {
  return JSON.stringify([key, field]);
}

/** One key per process (lock instance) with a lease: while it exists, the process is alive. */
export function sessionKey(prefix: string, instanceId: string): string {
  return `${prefix}:session:${instanceId}`;
}

/** The processes working one twin's queue: each one's liveness channel, scored by last sign of life. */
export function siblingsKey(prefix: string, twin: string, queue: string): string {
  return `${prefix}:siblings:${twin}:${queue}`;
}

/**
 * The lock store's epoch: which server (run_id) its clients talk to, and since when. The
 * acquire script starts a new epoch after a restart or failover, for the liveness warm-up.
 */
export function epochKey(prefix: string): string {
  return `${prefix}:epoch`;
}
