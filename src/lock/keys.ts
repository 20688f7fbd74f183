/**
 * The one place where pair-record ids, key and channel names, and the SCAN patterns that find
 * them, are built: the lock, the pairing, the CLI and the tests all name them through here.
 * Hash tags keep every key one script touches in one cluster slot.
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

/** Key mode: the record's own string key. */
export function recordKey(prefix: string, id: string): string {
  return `${prefix}:pair:{${id}}`;
}

/** Hash mode: the hash holding the records run with `{ hash }`, one field per id. */
export function recordHashKey(prefix: string, hash: string): string {
  return `${prefix}:pairs:{${hash}}`;
}

/** Hash mode: the sorted set holding each field's expiry time (Redis has no per-field TTL). */
export function hashIndexKey(hashKey: string): string {
  return `${hashKey}:expiry`;
}

export function recordAddress(prefix: string, id: string, hash?: string): RecordAddress {
  if (hash === undefined) {
    const key = recordKey(prefix, id);
    return { id, hash, key, index: key, field: '' };
  }
  const key = recordHashKey(prefix, hash);
  return { id, hash, key, index: hashIndexKey(key), field: id };
}

/** Where settle notifications for every record under `prefix` are published. */
export function settleChannel(prefix: string): string {
  return `${prefix}:pair:settled`;
}

/**
 * `{tag}` placed in a per-process key or channel on a Cluster: the hash tag of one master's
 * slots (src/lock/shards.ts), '' on one Redis.
 */
function shard(tag: string): string {
  return tag === '' ? '' : `{${tag}}:`;
}

/**
 * One channel per process (lock instance): its subscriber count says whether it lives. On a
 * Cluster, one per master (`tag`), a sharded channel held by a subscriber on that master.
 */
export function livenessChannel(prefix: string, instanceId: string, tag = ''): string {
  return `${prefix}:live:${shard(tag)}${instanceId}`;
}

/**
 * The channel a process's second connection holds beside `live` (one Redis): the last
 * ':live:' becomes ':liveb:', as includes/liveness.lua derives it. A twin counts both, so a
 * reset of one connection does not make a live process look dead.
 */
export function backupLivenessChannel(live: string): string | undefined {
  const at = live.lastIndexOf(':live:');
  if (at < 0) return undefined;
  return `${live.slice(0, at)}:liveb:${live.slice(at + ':live:'.length)}`;
}

/** The identity of an address inside one process, as carried by settle messages. */
export function addressTag(key: string, field: string): string {
  return JSON.stringify([key, field]);
}

/**
 * One key per process (lock instance) with a lease: while it exists, the process is alive.
 * On a Cluster, one per master (`tag`), next to the records the acquire script reads it for.
 */
export function sessionKey(prefix: string, instanceId: string, tag = ''): string {
  return `${prefix}:session:${shard(tag)}${instanceId}`;
}

/**
 * The lock store's epoch: which server (run_id) its clients talk to, and since when. The
 * acquire script starts a new epoch after a restart or failover, for the liveness warm-up.
 */
export function epochKey(prefix: string, tag = ''): string {
  return tag === '' ? `${prefix}:epoch` : `${prefix}:epoch:{${tag}}`;
}

/** `text` matched literally by a Redis glob pattern (SCAN MATCH, PUBSUB CHANNELS, KEYS). */
export function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** SCAN pattern of key-mode records under `prefix`: all, or those whose id starts with `idPrefix`. */
export function recordKeyPattern(prefix: string, idPrefix?: string): string {
  const ids = idPrefix === undefined ? '*' : `${globLiteral(idPrefix)}*`;
  return recordKey(globLiteral(prefix), ids);
}

/** SCAN pattern of the hash-mode record hashes under `prefix`: all, or the one `hash`. */
export function recordHashPattern(prefix: string, hash?: string): string {
  return recordHashKey(globLiteral(prefix), hash === undefined ? '*' : globLiteral(hash));
}

/** Pattern of every process's session key under `prefix`. */
export function sessionKeyPattern(prefix: string): string {
  return sessionKey(globLiteral(prefix), '*');
}

/** Pattern of every process's liveness channel under `prefix` (PUBSUB CHANNELS). */
export function livenessChannelPattern(prefix: string): string {
  return livenessChannel(globLiteral(prefix), '*');
}
