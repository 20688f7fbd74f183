import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import { CorruptRecordError } from '../errors.js';
import type { RecordAddress } from './keys.js';
import { luaScripts, REPLY, REPLY_FIELDS } from './lua/scripts.generated.js';

/** A connection the lock can run scripts on: a standalone client or a Cluster. */
export type RedisConnection = Redis | Cluster;

type ScriptName = keyof typeof luaScripts;
const shas = new Map<ScriptName, string>();

function sha(name: ScriptName): string {
  let value = shas.get(name);
  if (value === undefined) {
    value = createHash('sha1').update(luaScripts[name].lua).digest('hex');
    shas.set(name, value);
  }
  return value;
}

/** Per client, the scripts it has sent whole once (which loads them on that server). */
const sentWhole = new WeakMap<RedisConnection, Set<ScriptName>>();

/**
 * The script by EVALSHA, with an EVAL fallback: the user's client is never modified (no
 * defineCommand). A client's first call of each script is an EVAL, which loads it: an
 * EVALSHA answered NOSCRIPT would cost a round trip more, and that first call may be the
 * one a takeover waits on (a shadow's first look at its executor's liveness, measured at
 * +40 ms over a 20 ms link). A flushed script cache (a restart, another Cluster node) costs
 * one extra round trip.
 */
export async function evalScript(
  client: RedisConnection,
  name: ScriptName,
  keys: string[],
  args: (string | number)[],
): Promise<unknown[]> {
  if (firstCall(client, name)) {
    return (await client.eval(luaScripts[name].lua, keys.length, ...keys, ...args)) as unknown[];
  }
  try {
    return (await client.evalsha(sha(name), keys.length, ...keys, ...args)) as unknown[];
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    return (await client.eval(luaScripts[name].lua, keys.length, ...keys, ...args)) as unknown[];
  }
}

/** Whether this is `client`'s first call of `name` (to be sent whole); marks it sent. */
function firstCall(client: RedisConnection, name: ScriptName): boolean {
  let sent = sentWhole.get(client);
  if (sent === undefined) {
    sent = new Set();
    sentWhole.set(client, sent);
  }
  if (sent.has(name)) return false;
  sent.add(name);
  return true;
}

/** With `durability` on a Cluster: how many replicas must hold a write, and how long to wait. */
export interface WaitFor {
  replicas: number;
  timeoutMs: number;
}

/** Redirections and refusals a Cluster gives while a slot moves or fails over: ask again. */
const CLUSTER_RETRY = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/;
const CLUSTER_RETRIES = 5;

/**
 * The script and a `WAIT` in one pipeline, on a Cluster: WAIT counts the writes of the
 * connection it is sent on, and a keyless command sent alone goes to any node. In one
 * pipeline both go to the record's master over the same connection, so the count is this
 * write's. A redirected script (MOVED, ASK: a resharding or failover) is not retried by
 * ioredis in a pipeline with a WAIT, so it is sent again here once the slot map is
 * refreshed; its WAIT's count, from a node that did not take the write, is never used.
 */
async function evalScriptThenWait(
  cluster: Cluster,
  name: ScriptName,
  keys: string[],
  args: (string | number)[],
  wait: WaitFor,
): Promise<{ reply: unknown[]; acked: number }> {
  for (let tries = 1; ; tries++) {
    const pipeline = cluster.pipeline();
    if (firstCall(cluster, name))
      pipeline.eval(luaScripts[name].lua, keys.length, ...keys, ...args);
    else pipeline.evalsha(sha(name), keys.length, ...keys, ...args);
    pipeline.wait(wait.replicas, wait.timeoutMs);
    const results = (await pipeline.exec()) ?? [];
    const [scriptError, reply] = results[0] ?? [new Error('empty pipeline reply'), undefined];
    const [waitError, acked] = results[1] ?? [new Error('empty pipeline reply'), undefined];
    if (scriptError) {
      if (scriptError.message.startsWith('NOSCRIPT')) {
        // Another node, or a flushed cache: send it whole next time.
        sentWhole.get(cluster)?.delete(name);
        continue;
      }
      if (!CLUSTER_RETRY.test(scriptError.message) || tries >= CLUSTER_RETRIES) throw scriptError;
      cluster.refreshSlotsCache();
      await delay(50 * tries);
      continue;
    }
    // A WAIT that failed (UNBLOCKED: the master was demoted meanwhile; a dropped connection)
    // vouches for nothing: the grant is given back, the settle retried.
    return { reply: reply as unknown[], acked: waitError ? 0 : Number(acked) };
  }
}

/** A pair-record script: KEYS are the record's two (and `extraKeys`), ARGV[1] its field. */
function runScript(
  client: RedisConnection,
  name: ScriptName,
  address: RecordAddress,
  args: (string | number)[],
  /** Keys after the record's two (KEYS[3]…), for the scripts that take them. */
  extraKeys: string[] = [],
): Promise<unknown[]> {
  return evalScript(
    client,
    name,
    [address.key, address.index, ...extraKeys],
    [address.field, ...args],
  );
}

type ReplyLayout = keyof typeof REPLY_FIELDS;
/** A reply's fields by the names replies.json gives them; unknown until each parser checks it. */
type ReplyFields<L extends ReplyLayout> = { [F in (typeof REPLY_FIELDS)[L][number]]: unknown };

/**
 * The one place a script's positional reply becomes named fields: `reply[from]` onwards, in
 * the order of `REPLY_FIELDS[layout]` (replies.json). `from` is 1 past the reply code, 0 for
 * the code-less INSPECT reply. Lua drops trailing nils, so a missing field is undefined.
 */
function replyFields<L extends ReplyLayout>(layout: L, reply: unknown[], from = 1): ReplyFields<L> {
  const fields: Record<string, unknown> = {};
  REPLY_FIELDS[layout].forEach((name: string, i: number) => {
    fields[name] = reply[from + i];
  });
  return fields as ReplyFields<L>;
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

export type TakeoverReason = 'expired' | 'failed' | 'released' | 'disconnected';

export type AcquireReply =
  | {
      kind: 'granted';
      fence: number;
      takeover: TakeoverReason | undefined;
      attempts: number;
      /** On a takeover: how long the job had no executor, as the lock store saw it; else undefined. */
      idleMs: number | undefined;
    }
  | {
      kind: 'busy';
      fence: number;
      owner: string;
      recheckMs: number;
      ownerChannel: string;
      ownerSessionKey: string;
    }
  | {
      kind: 'done';
      fence: number;
      owner: string;
      result: string | null;
      /** The executor's last reported progress, as JSON (a processor's `job.updateProgress`). */
      progress: string | null;
    }
  | { kind: 'failed'; fence: number; owner: string; error: string | null }
  /** A claim (`AcquireArgs.claim`) of a record another grant holds or held: no grant. */
  | { kind: 'taken'; fence: number; state: string; owner: string }
  /** The caller's session key is gone: make it anew, then ask again. */
  | { kind: 'noSession' }
  /**
   * Cluster: the caller's keys are not on the record's node (its slot map is stale), or its
   * sharded liveness channel there has no subscriber yet. Ask again shortly.
   */
  | { kind: 'unplaced'; what: 'moved' | 'unsubscribed' };

export interface AcquireArgs {
  member: string;
  token: string;
  leaseMs: number;
  retentionMs: number;
  policy: string;
  liveChannel: string;
  graceMs: number;
  warmupS: number;
  sessionKey: string;
  /** The lock store's epoch key (on a Cluster: the one on the record's master); '' when none. */
  epochKey?: string;
  /**
   * A Cluster: the channels are sharded, and the epoch key goes in ARGV (undeclared: a
   * declared key would have to share the record's slot).
   */
  sharded?: boolean;
  /** Lowest fence a grant may carry: 2 for a twin that is not the job's chosen executor. */
  minFence?: number;
  /**
   * A claim, granted only if nobody else holds or held the record: 'started' for a run already
   * started with fence 1 (granted fence 1), 'waiting' for a run that starts once granted
   * (fenced on the store's clock, as any grant).
   */
  claim?: 'started' | 'waiting';
  /** Settle channel, to announce a grant that replaces a standby's mark. */
  channel?: string;
  /** The caller's own liveness grace, kept with its grant (see `PairCore.ownGraceMs`). */
  ownGraceMs?: number;
  /** A twin that was not chosen: how long a 'waiting' record is left to the chosen one's claim. */
  waitForClaimMs?: number;
  /**
   * With a 'started' claim: the run already ended with this result, so a grant settles the
   * record 'done' in the same call (see `Completion`).
   */
  completion?: Completion;
}

/** A run's result (and last progress), both JSON, stored with its claim in one call. */
export interface Completion {
  result: string;
  progress?: string;
}

function corrupt(address: RecordAddress): never {
  throw new CorruptRecordError(address.key, address.field);
}

/** What a write answered, and with `wait` (a Cluster): how many replicas hold it. */
export type Acked<T> = T & { acked?: number };

/**
 * `runScript`, or with `wait` on a Cluster the script and its WAIT together; `acked` is
 * undefined without `wait` (a standalone client WAITs apart, see `Replication`).
 */
async function runWritten(
  client: RedisConnection,
  name: ScriptName,
  address: RecordAddress,
  args: (string | number)[],
  extraKeys: string[],
  wait: WaitFor | undefined,
): Promise<{ reply: unknown[]; acked?: number }> {
  if (wait === undefined || !client.isCluster) {
    return { reply: await runScript(client, name, address, args, extraKeys) };
  }
  return evalScriptThenWait(
    client as Cluster,
    name,
    [address.key, address.index, ...extraKeys],
    [address.field, ...args],
    wait,
  );
}

export async function acquire(
  client: RedisConnection,
  address: RecordAddress,
  a: AcquireArgs,
  wait?: WaitFor,
): Promise<Acked<AcquireReply>> {
  const { reply, acked } = await runWritten(
    client,
    'acquire',
    address,
    [
      a.member,
      a.token,
      a.leaseMs,
      a.retentionMs,
      a.policy,
      a.liveChannel,
      a.graceMs,
      a.warmupS,
      a.sessionKey,
      a.minFence ?? 1,
      a.claim === 'started' ? '1' : a.claim === 'waiting' ? '2' : '0',
      a.channel ?? '',
      a.ownGraceMs ?? 0,
      a.waitForClaimMs ?? 0,
      a.sharded ? '1' : '0',
      a.sharded ? (a.epochKey ?? '') : '',
      a.completion?.result ?? '',
      a.completion?.progress ?? '',
    ],
    a.epochKey && !a.sharded ? [a.epochKey] : [],
    wait,
  );
  return { ...acquireReply(address, reply), acked };
}

function acquireReply(address: RecordAddress, reply: unknown[]): AcquireReply {
  switch (reply[0]) {
    case REPLY.GRANTED: {
      const r = replyFields('GRANTED', reply);
      return {
        kind: 'granted',
        fence: Number(r.fence),
        takeover: r.takeover === '' ? undefined : (r.takeover as TakeoverReason),
        attempts: Number(r.attempts),
        // IDLE_UNKNOWN, or absent on a retried grant: unknown.
        idleMs: typeof r.idleMs === 'number' && r.idleMs >= 0 ? r.idleMs : undefined,
      };
    }
    case REPLY.BUSY: {
      const r = replyFields('BUSY', reply);
      return {
        kind: 'busy',
        fence: Number(r.fence),
        owner: String(r.owner),
        recheckMs: Number(r.recheckMs),
        ownerChannel: String(r.ownerChannel),
        ownerSessionKey: String(r.ownerSessionKey ?? ''),
      };
    }
    case REPLY.DONE: {
      const r = replyFields('DONE', reply);
      return {
        kind: 'done',
        fence: Number(r.fence),
        owner: String(r.owner),
        result: stringOrNull(r.result),
        progress: stringOrNull(r.progress),
      };
    }
    case REPLY.FAILED: {
      const r = replyFields('FAILED', reply);
      return {
        kind: 'failed',
        fence: Number(r.fence),
        owner: String(r.owner),
        error: stringOrNull(r.error),
      };
    }
    case REPLY.TAKEN: {
      const r = replyFields('TAKEN', reply);
      return {
        kind: 'taken',
        fence: Number(r.fence),
        state: String(r.state),
        owner: String(r.owner),
      };
    }
    case REPLY.NO_SESSION:
      return { kind: 'noSession' };
    case REPLY.UNPLACED: {
      const r = replyFields('UNPLACED', reply);
      return { kind: 'unplaced', what: r.what === 'moved' ? 'moved' : 'unsubscribed' };
    }
    default: // REPLY.CORRUPT, or not a reply of ours
      return corrupt(address);
  }
}

/** Reply of heartbeat, complete, fail and release. */
export type OwnerReply =
  | { kind: 'ok' }
  | { kind: 'stale'; state: string; fence: number; owner: string }
  | { kind: 'missing' };

function ownerReply(address: RecordAddress, reply: unknown[]): OwnerReply {
  switch (reply[0]) {
    case REPLY.OK:
      return { kind: 'ok' };
    case REPLY.STALE: {
      const r = replyFields('STALE', reply);
      return {
        kind: 'stale',
        state: String(r.state),
        fence: Number(r.fence),
        owner: String(r.owner),
      };
    }
    case REPLY.MISSING:
      return { kind: 'missing' };
    default: // REPLY.CORRUPT, or not a reply of ours
      return corrupt(address);
  }
}

export interface Grant {
  token: string;
  fence: number;
}

/** Where a heartbeat stamps the epoch, and (Cluster) the owner's keys to re-stamp. */
export interface HeartbeatPlace {
  /** The epoch key ('' none; on a Cluster the one on the record's master). */
  epochKey?: string;
  /** A Cluster: the epoch key goes in ARGV, and the keys below may be re-stamped. */
  sharded?: boolean;
  /** After a resharding: the owner's session key and channel on the record's new master. */
  sessionKey?: string;
  liveChannel?: string;
}

export async function heartbeat(
  client: RedisConnection,
  address: RecordAddress,
  grant: Grant,
  leaseMs: number,
  retentionMs: number,
  place: HeartbeatPlace = {},
): Promise<OwnerReply> {
  const epoch = place.epochKey ?? '';
  const args: (string | number)[] = [grant.token, grant.fence, leaseMs, retentionMs];
  if (place.sharded) args.push(epoch, place.sessionKey ?? '', place.liveChannel ?? '');
  const keys = epoch && !place.sharded ? [epoch] : [];
  return ownerReply(address, await runScript(client, 'heartbeat', address, args, keys));
}

export type Settlement =
  /** `progress`: JSON kept with the result for the shadows ('' or absent: none). */
  | { state: 'done'; result: string; progress?: string }
  /** `final`: no member may run the task again (a result that could not be stored). */
  | { state: 'failed'; error: string; final?: boolean }
  | { state: 'released' };

export async function settle(
  client: RedisConnection,
  address: RecordAddress,
  grant: Grant,
  retentionMs: number,
  channel: string,
  settlement: Settlement,
  wait?: WaitFor,
): Promise<Acked<OwnerReply>> {
  const base = [grant.token, grant.fence, retentionMs, channel];
  const { reply, acked } =
    settlement.state === 'done'
      ? await runWritten(
          client,
          'complete',
          address,
          [...base, settlement.result, settlement.progress ?? ''],
          [],
          wait,
        )
      : settlement.state === 'failed'
        ? await runWritten(
            client,
            'fail',
            address,
            [...base, settlement.error, settlement.final ? '1' : '0'],
            [],
            wait,
          )
        : await runWritten(client, 'release', address, base, [], wait);
  return { ...ownerReply(address, reply), acked };
}

export interface InspectReply {
  now: number;
  raw: string | null;
  retentionLeftMs: number;
  /** Lease left on the owner's session, when the record runs under one (else null). */
  sessionLeftMs: number | null;
}

export async function inspect(
  client: RedisConnection,
  address: RecordAddress,
  /** A standby twin's look: an absent record is marked 'waiting', kept this long (ms). */
  markWaitingMs?: number,
): Promise<InspectReply> {
  const args = markWaitingMs === undefined ? [] : [markWaitingMs];
  const r = replyFields('INSPECT', await runScript(client, 'inspect', address, args), 0);
  const sessionLeft = Number(r.sessionLeftMs);
  return {
    now: Number(r.now),
    raw: stringOrNull(r.raw),
    retentionLeftMs: Number(r.retentionLeftMs),
    // PTTL of the owner's session: -2 once the key is gone (its lease ran out).
    sessionLeftMs: sessionLeft === REPLY.NOT_UNDER_SESSION ? null : Math.max(sessionLeft, 0),
  };
}

/** How a shadow tells whether the owner of a busy record is alive. */
export function ownerOf(reply: { ownerChannel: string; ownerSessionKey: string }): {
  channel: string;
  sessionKey: string;
} {
  return { channel: reply.ownerChannel, sessionKey: reply.ownerSessionKey };
}
