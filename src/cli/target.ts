import { type RecordAddress, recordAddress, recordId } from '../lock/keys.js';
import { usageError } from './exit-codes.js';
import { redactUrl } from './redis.js';

/** Options shared by every command, as commander parses them. */
export interface RawOptions {
  redis: string;
  queue?: string[];
  twinQueue?: string;
  twinRedis?: string;
  lockRedis?: string;
  prefix: string;
  twinPrefix?: string;
  lockPrefix: string;
  group?: string;
  hash?: string;
  timeout: number;
  json?: boolean;
}

/** One twin's copy of the queue: where BullMQ keeps it. */
export interface TwinQueue {
  url: string;
  queue: string;
  prefix: string;
}

/** Where the CLI looks: the twin queues and the lock store with its naming. */
export interface Target {
  twins: TwinQueue[];
  lockUrl: string;
  lockPrefix: string;
  /** Namespace of the record ids (`PairedProcessor`'s `group`); undefined: ids as given. */
  group: string | undefined;
  /** Hash-mode records (`PairedLock.run(id, fn, { hash })`): the hash key. */
  hash: string | undefined;
  timeoutMs: number;
}

function checkUrl(option: string, url: string): string {
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw usageError(
      `${option}: "${redactUrl(url)}" is not a URL; use redis://host:port or rediss://…`,
    );
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    throw usageError(`${option}: ${redactUrl(url)} must start with redis:// or rediss://`);
  }
  return url;
}

function twinsOf(o: RawOptions): TwinQueue[] {
  const names = [...(o.queue ?? []), ...(o.twinQueue === undefined ? [] : [o.twinQueue])];
  if (names.length > 2) {
    throw usageError(`at most two twin queues, received ${names.length}: ${names.join(', ')}`);
  }
  const [first, second] = names;
  if (o.twinRedis !== undefined) {
    if (first === undefined) {
      throw usageError('--twin-redis needs --queue <name> (the queue name on both servers)');
    }
    return [
      { url: o.redis, queue: first, prefix: o.prefix },
      { url: o.twinRedis, queue: second ?? first, prefix: o.twinPrefix ?? o.prefix },
    ];
  }
  if (first !== undefined && first === second && (o.twinPrefix ?? o.prefix) === o.prefix) {
    throw usageError(
      `--queue ${first} twice on one Redis: give the twin's own name, or --twin-redis <url>`,
    );
  }
  return names.map((queue, i) => ({
    url: o.redis,
    queue,
    prefix: i === 1 ? (o.twinPrefix ?? o.prefix) : o.prefix,
  }));
}

/**
 * `PairedProcessor` names a job's record `<group>:<jobId>`, its group defaulting to the
 * job's queue name; `PairedLock` uses the id as given.
 */
function groupOf(o: RawOptions, twins: TwinQueue[]): string | undefined {
  if (o.group !== undefined) return o.group;
  if (o.hash !== undefined) return undefined;
  const names = new Set(twins.map((t) => t.queue));
  if (names.size <= 1) return [...names][0];
  throw usageError(
    `two queue names (${[...names].join(', ')}): pass --group <name>, the group option of your PairedProcessor (e.g. the PairedQueue name)`,
  );
}

export function resolveTarget(o: RawOptions): Target {
  checkUrl('--redis', o.redis);
  if (o.twinRedis !== undefined) checkUrl('--twin-redis', o.twinRedis);
  if (o.lockRedis !== undefined) checkUrl('--lock-redis', o.lockRedis);
  for (const [option, value] of [
    ['--lock-prefix', o.lockPrefix],
    ['--group', o.group],
    ['--hash', o.hash],
  ] as const) {
    if (value === '') throw usageError(`${option} must not be empty`);
  }
  if (/[{}]/.test(o.lockPrefix)) {
    throw usageError(
      `--lock-prefix "${o.lockPrefix}" cannot hold "{" or "}" (records add their own)`,
    );
  }
  const twins = twinsOf(o);
  return {
    twins,
    lockUrl: o.lockRedis ?? o.redis,
    lockPrefix: o.lockPrefix,
    group: groupOf(o, twins),
    hash: o.hash,
    timeoutMs: o.timeout,
  };
}

/** The record of `jobId` exactly where `PairedProcessor` (or `PairedLock`) writes it. */
export function addressOf(target: Target, jobId: string): RecordAddress {
  const id = target.group === undefined ? jobId : recordId(target.group, jobId);
  return recordAddress(target.lockPrefix, id, target.hash);
}
