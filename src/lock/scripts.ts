import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { CorruptRecordError } from '../errors.js';
import type { RecordAddress } from './keys.js';
import { luaScripts } from './lua/scripts.generated.js';

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

/**
 * EVALSHA with a one-time EVAL fallback: the user's client is never modified (no
 * defineCommand), and a flushed script cache (Redis restart) costs one extra round trip.
 */
async function runScript(
  client: RedisConnection,
  name: ScriptName,
  address: RecordAddress,
  args: (string | number)[],
  /** Keys after the record's two (KEYS[3]…), for the scripts that take them. */
  extraKeys: string[] = [],
): Promise<unknown[]> {
  const keys = [address.key, address.index, ...extraKeys];
  try {
    return (await client.evalsha(
      sha(name),
      keys.length,
      ...keys,
      address.field,
      ...args,
    )) as unknown[];
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    return (await client.eval(
      luaScripts[name].lua,
      keys.length,
      ...keys,
      address.field,
      ...args,
    )) as unknown[];
  }
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
  | { kind: 'done'; fence: number; owner: string; result: string | null }
  | { kind: 'failed'; fence: number; owner: string; error: string | null }
  /** The caller's session key is gone: make it anew, then ask again. */
  | { kind: 'noSession' };

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
  /** The lock store's epoch key (KEYS[3]); absent or '' on a Cluster, where it would cross slots. */
  epochKey?: string;
}

function corrupt(address: RecordAddress): never {
  throw new CorruptRecordError(address.key, address.field);
}

export async function acquire(
  client: RedisConnection,
  address: RecordAddress,
  a: AcquireArgs,
): Promise<AcquireReply> {
  const reply = await runScript(
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
    ],
    a.epochKey ? [a.epochKey] : [],
  );
  const [code, fence, x, y, z, w] = reply as [number, number, unknown, unknown, unknown, unknown];
  switch (code) {
    case 1:
      return {
        kind: 'granted',
        fence,
        takeover: x === '' ? undefined : (x as TakeoverReason),
        attempts: Number(y),
        idleMs: typeof z === 'number' && z >= 0 ? z : undefined,
      };
    case 2:
      return {
        kind: 'busy',
        fence,
        owner: String(x),
        recheckMs: Number(y),
        ownerChannel: String(z),
        ownerSessionKey: String(w ?? ''),
      };
    case 3:
      return { kind: 'done', fence, owner: String(x), result: typeof y === 'string' ? y : null };
    case 4:
      return { kind: 'failed', fence, owner: String(x), error: typeof y === 'string' ? y : null };
    case 5:
      return { kind: 'noSession' };
    default:
      return corrupt(address);
  }
}

/** Reply of heartbeat, complete, fail and release. */
export type OwnerReply =
  | { kind: 'ok' }
  | { kind: 'stale'; state: string; fence: number; owner: string }
  | { kind: 'missing' };

function ownerReply(address: RecordAddress, reply: unknown[]): OwnerReply {
  const [code, state, fence, owner] = reply as [number, unknown, unknown, unknown];
  if (code === 1) return { kind: 'ok' };
  if (code === 0)
    return { kind: 'stale', state: String(state), fence: Number(fence), owner: String(owner) };
  if (code === -2) return { kind: 'missing' };
  return corrupt(address);
}

export interface Grant {
  token: string;
  fence: number;
}

export async function heartbeat(
  client: RedisConnection,
  address: RecordAddress,
  grant: Grant,
  leaseMs: number,
  retentionMs: number,
  /** The epoch key, '' on a Cluster (see the acquire script). */
  epochKey = '',
): Promise<OwnerReply> {
  const args = [grant.token, grant.fence, leaseMs, retentionMs];
  const keys = epochKey ? [epochKey] : [];
  return ownerReply(address, await runScript(client, 'heartbeat', address, args, keys));
}

export type Settlement =
  | { state: 'done'; result: string }
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
): Promise<OwnerReply> {
  const base = [grant.token, grant.fence, retentionMs, channel];
  const reply =
    settlement.state === 'done'
      ? await runScript(client, 'complete', address, [...base, settlement.result])
      : settlement.state === 'failed'
        ? await runScript(client, 'fail', address, [
            ...base,
            settlement.error,
            settlement.final ? '1' : '0',
          ])
        : await runScript(client, 'release', address, base);
  return ownerReply(address, reply);
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
): Promise<InspectReply> {
  const [now, raw, left, sessionLeft] = (await runScript(client, 'inspect', address, [])) as [
    number,
    unknown,
    number,
    number,
  ];
  return {
    now,
    raw: typeof raw === 'string' ? raw : null,
    retentionLeftMs: left,
    // -3: no session; -2: the session key is gone (its lease ran out).
    sessionLeftMs: sessionLeft === -3 ? null : Math.max(sessionLeft, 0),
  };
}

/** How a shadow tells whether the owner of a busy record is alive. */
export function ownerOf(reply: { ownerChannel: string; ownerSessionKey: string }): {
  channel: string;
  sessionKey: string;
} {
  return { channel: reply.ownerChannel, sessionKey: reply.ownerSessionKey };
}
