import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { LockStoreEvictionError, LockStoreMisconfiguredError } from '../errors.js';
import { classifyError, replyCode } from './reply-errors.js';
import type { RedisConnection } from './scripts.js';

/**
 * Every command bullmq-paired sends to the lock store, directly or from its scripts, as ACL
 * rules (`pubsub|numsub` and, on a Cluster, `pubsub|shardnumsub`: the only PUBSUB subcommands
 * used). Keys and channels are all under `<prefix>:`.
 */
export const ACL_COMMANDS = [
  'ping',
  'info',
  'evalsha',
  'eval',
  'get',
  'set',
  'del',
  'exists',
  'mget',
  'pttl',
  'pexpire',
  'hget',
  'hmget',
  'hset',
  'hdel',
  'zadd',
  'zscore',
  'zrem',
  'zrangebyscore',
  // a PairedProcessor's watch over the other processes of its twin (src/pairing/siblings.ts)
  'zrange',
  'zremrangebyscore',
  'time',
  'publish',
  'subscribe',
  'unsubscribe',
  'pubsub|numsub',
  // a Redis Cluster: sharded liveness channels, and ioredis reading the slot map and the
  // cluster state, naming its helper connections
  'ssubscribe',
  'sunsubscribe',
  'pubsub|shardnumsub',
  'cluster|slots',
  'cluster|info',
  'client|setname',
] as const;

/** Writes a key under the prefix and publishes on the settle channel, as the real scripts do. */
const PROBE = `redis.call('SET', KEYS[1], '1', 'PX', 10000)
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], '')
return ttl`;

/** How to fix a permanent refusal, by its reply code. */
function fixFor(err: Error, prefix: string): string {
  if (/unknown command .?ssubscribe/i.test(err.message)) {
    return 'A Redis Cluster lock store needs Redis 7 or later for liveness (sharded pub/sub: SSUBSCRIBE, PUBSUB SHARDNUMSUB): upgrade it, or set liveness: false (a crashed executor is then taken over only when its lease ends)';
  }
  // Inside a script, Redis 7 words an ACL refusal "ERR The user executing the script can't …".
  const code = /user executing the script can't/i.test(err.message) ? 'NOPERM' : replyCode(err);
  switch (code) {
    case 'NOAUTH':
    case 'WRONGPASS':
      return "Check lockConnection's password (and username): the lock store does not accept them";
    case 'NOPERM':
      return `Grant lockConnection's ACL user the commands, keys and channels bullmq-paired needs, e.g. ACL SETUSER <user> ~${prefix}:* &${prefix}:* ${ACL_COMMANDS.map((c) => `+${c}`).join(' ')}`;
    case 'WRONGTYPE':
      return `A key under "${prefix}:" holds data bullmq-paired did not write: give the lock a prefix of its own`;
    default:
      return 'The lock store must be a Redis that runs Lua scripts (EVALSHA and EVAL); check lockConnection';
  }
}

/**
 * The error to report for `err` when no retry will cure it: `err` itself when it is already
 * a `LockStoreMisconfiguredError`, a new one for a permanent reply error (see
 * `classifyError`), else undefined (transient: the store comes back by itself).
 */
export function misconfigured(
  err: unknown,
  prefix: string,
  during?: string,
): LockStoreMisconfiguredError | undefined {
  if (err instanceof LockStoreMisconfiguredError) return err;
  if (!(err instanceof Error) || classifyError(err) !== 'permanent') return undefined;
  const reply = err.message.replace(/\.+$/, '');
  const problem = during === undefined ? reply : `${during} was refused: ${reply}`;
  return new LockStoreMisconfiguredError(problem, fixFor(err, prefix), err);
}

/** One `field:value` line of an INFO reply. */
function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

/**
 * Checks once, before the first acquire, that the lock store will ever serve bullmq-paired:
 * it accepts the credentials (PING), it is a primary (INFO replication), and the user may run
 * a script that writes a key under the prefix and publishes on the settle channel. Rejects
 * with `LockStoreMisconfiguredError` for what only a person can fix, and with the error as is
 * for what passes by itself (connection refused, LOADING), so the caller may retry later.
 * A `maxmemory-policy` that evicts keys is refused the same way, unless `allowEviction`: then
 * `warn` gets a `LockStoreEvictionError` and the store is used.
 */
export async function preflight(
  client: RedisConnection,
  prefix: string,
  settleChannel: string,
  warn: (err: Error) => void,
  allowEviction: boolean,
): Promise<void> {
  const step = async <T>(during: string, command: () => Promise<T>): Promise<T> => {
    try {
      return await command();
    } catch (err) {
      throw misconfigured(err, prefix, during) ?? err;
    }
  };
  await step('PING', () => client.ping());
  if (!client.isCluster) {
    // A Cluster sends writes to its primaries by itself; a standalone client goes where it is told.
    const replication = await step('INFO replication', () => client.info('replication'));
    if (infoField(replication, 'role') === 'slave') {
      const primary = `${infoField(replication, 'master_host')}:${infoField(replication, 'master_port')}`;
      throw new LockStoreMisconfiguredError(
        `it is a read-only replica (INFO replication says role:slave, replicating ${primary})`,
        'Point lockConnection at the primary, not a replica: every job writes its pair record',
      );
    }
  }
  const key = `${prefix}:preflight:{${randomUUID()}}`;
  // Sent once per process, so whole: by its hash it would only be answered NOSCRIPT first.
  await step('a script that writes a key (EVAL)', async () => {
    await client.eval(PROBE, 1, key, settleChannel);
  });
  // On a Cluster, every primary holds records: check each.
  const nodes = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis];
  const policies = new Set<string>();
  for (const node of nodes) {
    const policy = await evictionPolicy(node);
    if (policy !== undefined && policy !== 'noeviction') policies.add(policy);
  }
  if (policies.size > 0 && !allowEviction) throw evictionRefused([...policies]);
  for (const policy of policies) warn(new LockStoreEvictionError(policy));
}

/**
 * Why an evicting store is refused: an evicted record is a forgotten grant (and an evicted
 * session a live process taken for dead), so the twin runs the job again while it still runs.
 * Fenced higher (fences come from the store's clock), but run twice all the same.
 */
function evictionRefused(policies: string[]): LockStoreMisconfiguredError {
  const named = policies.map((p) => `"${p}"`).join(', ');
  return new LockStoreMisconfiguredError(
    `its maxmemory-policy is ${named}: when its memory fills up it evicts keys, and a job whose pair record or session was evicted runs again on the twin while it still runs`,
    'Set maxmemory-policy noeviction on the lock store (CONFIG SET maxmemory-policy noeviction, and in its config file) and give it memory of its own; or pass allowEviction: true to accept such repeats (then reported once as LockStoreEvictionError)',
  );
}

/** The node's `maxmemory-policy`, or undefined when it will not say (a warning is not worth failing for). */
async function evictionPolicy(node: Redis): Promise<string | undefined> {
  try {
    const policy = infoField(await node.info('memory'), 'maxmemory_policy');
    if (policy !== undefined) return policy;
  } catch {
    // fall through: some servers answer only CONFIG GET
  }
  try {
    // Managed Redis often refuses CONFIG: then nothing is known.
    const reply = (await node.config('GET', 'maxmemory-policy')) as string[];
    return reply[1];
  } catch {
    return undefined;
  }
}
