import type { Cluster, Redis } from 'ioredis';
import { hashIndexKey, recordHashPattern, recordKeyPattern } from '../lock/keys.js';
import { readStoredRecord } from '../lock/record.js';
import { groupIdPrefix } from '../pairing/keys.js';
import { countJobs, type QueueCounts } from './queues.js';
import { type RedisPool, redactUrl } from './redis.js';
import type { Target } from './target.js';

export interface RecordCounts {
  /** Marked by a standby twin, not yet claimed by the job's chosen executor. */
  waiting: number;
  running: number;
  done: number;
  failed: number;
  released: number;
  /** Values that are not a record this library wrote. */
  corrupt: number;
  total: number;
}

export interface StatsReport {
  lockStore: string;
  lockPrefix: string;
  group: string | null;
  hash: string | null;
  /** The SCAN patterns that were read (record keys, then hashes of hash-mode records). */
  patterns: string[];
  records: RecordCounts;
  queues: QueueCounts[];
}

function tally(counts: RecordCounts, raw: string | null): void {
  if (raw === null) return; // deleted between SCAN and read
  counts.total++;
  const record = readStoredRecord(raw);
  if (record === undefined) counts.corrupt++;
  else counts[record.state]++;
}

/**
 * The values of keys one SCAN batch found: one MGET, or on a Cluster node (whose keys sit in
 * many slots, which MGET refuses) one pipeline of GETs.
 */
async function readKeys(
  node: Redis,
  keys: string[],
  clusterNode: boolean,
): Promise<(string | null)[]> {
  if (!clusterNode) return node.mget(...keys);
  const replies = (await node.pipeline(keys.map((key) => ['get', key])).exec()) ?? [];
  return replies.map(([err, value]) => {
    if (err) throw err;
    return typeof value === 'string' ? value : null;
  });
}

/** SCAN in COUNT-sized batches: never KEYS, which blocks a live store. */
async function scanKeys(
  client: Redis,
  pattern: string,
  type: 'string' | 'hash',
  batch: number,
  each: (keys: string[]) => Promise<void>,
): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', batch, 'TYPE', type);
    cursor = next;
    if (keys.length > 0) await each(keys);
  } while (cursor !== '0');
}

/** Hash-mode records: fields of one hash, minus those its expiry index says are past retention. */
async function tallyHash(client: Redis, key: string, batch: number, counts: RecordCounts) {
  const [seconds, micros] = await client.time();
  const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  let cursor = '0';
  do {
    const [next, flat] = await client.hscan(key, cursor, 'COUNT', batch);
    cursor = next;
    const fields = flat.filter((_, i) => i % 2 === 0);
    if (fields.length === 0) continue;
    const expiries = await client.zmscore(hashIndexKey(key), ...fields);
    fields.forEach((_, i) => {
      const expiresAt = expiries[i];
      if (expiresAt == null || Number(expiresAt) > now) tally(counts, flat[2 * i + 1] ?? null);
    });
  } while (cursor !== '0');
}

export async function collectStats(
  pool: RedisPool,
  target: Target,
  batch: number,
): Promise<StatsReport> {
  const counts: RecordCounts = {
    waiting: 0,
    running: 0,
    done: 0,
    failed: 0,
    released: 0,
    corrupt: 0,
    total: 0,
  };
  const patterns: string[] = [];
  // PairedProcessor's records are `recordId(group, jobId)`, PairedLock's the id as given.
  if (target.hash === undefined)
    patterns.push(recordKeyPattern(target.lockPrefix, groupIdPrefix(target.group)));
  const hashPattern =
    target.hash !== undefined || target.group === undefined
      ? recordHashPattern(target.lockPrefix, target.hash)
      : undefined; // a group's records are PairedProcessor's: never in hash mode
  if (hashPattern !== undefined) patterns.push(hashPattern);

  await pool.use(target.lockUrl, async (client) => {
    const [keyPattern] = patterns;
    // On a Cluster the records are spread over every master: SCAN each one.
    const nodes = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis];
    for (const node of nodes) {
      if (target.hash === undefined && keyPattern !== undefined) {
        await scanKeys(node, keyPattern, 'string', batch, async (keys) => {
          for (const raw of await readKeys(node, keys, client.isCluster)) tally(counts, raw);
        });
      }
      if (hashPattern !== undefined) {
        await scanKeys(node, hashPattern, 'hash', batch, async (keys) => {
          for (const key of keys) await tallyHash(node, key, batch, counts);
        });
      }
    }
  });
  const queues = await Promise.all(target.twins.map((twin) => countJobs(pool, twin)));
  return {
    lockStore: redactUrl(target.lockUrl),
    lockPrefix: target.lockPrefix,
    group: target.group ?? null,
    hash: target.hash ?? null,
    patterns,
    records: counts,
    queues,
  };
}
