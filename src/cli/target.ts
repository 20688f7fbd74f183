import { type RecordAddress, recordAddress } from '../lock/keys.js';
import { recordId } from '../pairing/keys.js';
import { usageError } from './exit-codes.js';
import { parseClusterUrl, redactUrl } from './redis.js';

/** Options shared by every command, as commander parses them. */
export interface RawOptions {
  redis: string;
  queue?: string[];
  twinQueue?: string;
  twinRedis?: string[];
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

const PROTOCOLS = ['redis:', 'rediss:'];
/** A twin on BullMQ's PostgreSQL backend (`--twin-redis` only: the lock store is Redis). */
const POSTGRES_PROTOCOLS = ['postgres:', 'postgresql:'];

/** Whether a twin's server URL names PostgreSQL. */
export function isPostgresUrl(url: string): boolean {
  return POSTGRES_PROTOCOLS.some((p) => url.startsWith(`${p}//`));
}

function checkUrl(option: string, url: string): string {
  if (/^rediss?\+cluster:/.test(url)) {
    if (parseClusterUrl(url) !== undefined) return url;
    throw usageError(
      `${option}: ${redactUrl(url)} is not a Cluster URL; use redis+cluster://host:port[,host:port…]`,
    );
  }
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw usageError(
      `${option}: "${redactUrl(url)}" is not a URL; use redis://host:port or rediss://…`,
    );
  }
  if (!PROTOCOLS.includes(protocol)) {
    throw usageError(
      `${option}: ${redactUrl(url)} must start with redis:// or rediss:// (a Redis Cluster: redis+cluster://seed:port[,seed:port] or rediss+cluster://)`,
    );
  }
  return url;
}

/**
 * The twin queues: `--redis` and each `--twin-redis` is one server, in that order; their
 * queue names are the `--queue`s (and `--twin-queue`) by position, or one name for all.
 * Without `--twin-redis`, every name is a twin on `--redis`. Every twin after the first
 * takes `--twin-prefix` when given.
 */
function twinsOf(o: RawOptions): TwinQueue[] {
  const names = [...(o.queue ?? []), ...(o.twinQueue === undefined ? [] : [o.twinQueue])];
  const prefixOf = (i: number): string => (i === 0 ? o.prefix : (o.twinPrefix ?? o.prefix));
  const servers = [o.redis, ...(o.twinRedis ?? [])];
  if (servers.length > 1) {
    const [first] = names;
    if (first === undefined) {
      throw usageError('--twin-redis needs --queue <name> (the queue name on every server)');
    }
    if (names.length !== 1 && names.length !== servers.length) {
      throw usageError(
        `${servers.length} servers (--redis and ${servers.length - 1} --twin-redis) but ${names.length} queue names: give one name for all, or one per server in the same order`,
      );
    }
    return servers.map((url, i) => ({ url, queue: names[i] ?? first, prefix: prefixOf(i) }));
  }
  const seen = new Set<string>();
  return names.map((queue, i) => {
    const twin = { url: o.redis, queue, prefix: prefixOf(i) };
    const id = `${twin.prefix}:${queue}`;
    if (seen.has(id)) {
      throw usageError(
        `--queue ${queue} twice on one Redis: give each twin its own name, or --twin-redis <url>`,
      );
    }
    seen.add(id);
    return twin;
  });
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
    `${names.size === 2 ? 'two' : names.size} queue names (${[...names].join(', ')}): pass --group <name>, the group option of your PairedProcessor (e.g. the PairedQueue name)`,
  );
}

export function resolveTarget(o: RawOptions): Target {
  checkUrl('--redis', o.redis);
  for (const url of o.twinRedis ?? []) if (!isPostgresUrl(url)) checkUrl('--twin-redis', url);
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
