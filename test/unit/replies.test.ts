/**
 * The scripts' replies, parsed into named fields by src/lock/scripts.ts from the layouts of
 * replies.json, and the keys and patterns of src/lock/keys.ts. A fake client hands each
 * parser a positional reply as ioredis would (Lua false: null; trailing nils dropped).
 */
import { describe, expect, it, vi } from 'vitest';
import { CorruptRecordError } from '../../src/errors.js';
import {
  globLiteral,
  livenessChannel,
  recordAddress,
  recordHashPattern,
  recordKeyPattern,
  sessionKey,
  sessionKeyPattern,
} from '../../src/lock/keys.js';
import { luaScripts, REPLY, REPLY_FIELDS } from '../../src/lock/lua/scripts.generated.js';
import {
  acquire,
  heartbeat,
  inspect,
  type RedisConnection,
  settle,
} from '../../src/lock/scripts.js';
import { groupIdPrefix, recordId } from '../../src/pairing/keys.js';

const address = recordAddress('unit', 'task-1');

function answering(reply: unknown[]) {
  const evalsha = vi.fn(async () => reply);
  // EVAL (a client's first call of each script) or EVALSHA: the same arguments after the first.
  return { client: { evalsha, eval: evalsha } as unknown as RedisConnection, evalsha };
}

const ARGS = {
  member: 'us',
  token: 't',
  leaseMs: 1_000,
  retentionMs: 10_000,
  policy: 'takeover',
  liveChannel: '',
  graceMs: 100,
  warmupS: 0,
  sessionKey: '',
};

describe('acquire replies', () => {
  it('names the fields of each code', async () => {
    const cases: [unknown[], unknown][] = [
      [
        [REPLY.GRANTED, 3, 'disconnected', 3, 120],
        { kind: 'granted', fence: 3, takeover: 'disconnected', attempts: 3, idleMs: 120 },
      ],
      [
        [REPLY.GRANTED, 1, '', 1, REPLY.IDLE_UNKNOWN],
        { kind: 'granted', fence: 1, takeover: undefined, attempts: 1, idleMs: undefined },
      ],
      // A retried grant (same token) has no idleMs: Lua drops the trailing nil.
      [
        [REPLY.GRANTED, 2, 'expired', 2],
        { kind: 'granted', fence: 2, takeover: 'expired', attempts: 2, idleMs: undefined },
      ],
      [
        [REPLY.BUSY, 1, 'eu', 900, livenessChannel('unit', 'eu'), sessionKey('unit', 'eu')],
        {
          kind: 'busy',
          fence: 1,
          owner: 'eu',
          recheckMs: 900,
          ownerChannel: livenessChannel('unit', 'eu'),
          ownerSessionKey: sessionKey('unit', 'eu'),
        },
      ],
      [
        [REPLY.DONE, 2, 'eu', '{"ok":true}'],
        { kind: 'done', fence: 2, owner: 'eu', result: '{"ok":true}', progress: null },
      ],
      [
        [REPLY.DONE, 2, 'eu', null],
        { kind: 'done', fence: 2, owner: 'eu', result: null, progress: null },
      ],
      [
        [REPLY.DONE, 2, 'eu', '1', '{"sent":3}'],
        { kind: 'done', fence: 2, owner: 'eu', result: '1', progress: '{"sent":3}' },
      ],
      [[REPLY.FAILED, 2, 'eu', '{}'], { kind: 'failed', fence: 2, owner: 'eu', error: '{}' }],
      [[REPLY.NO_SESSION], { kind: 'noSession' }],
    ];
    for (const [reply, parsed] of cases) {
      expect(await acquire(answering(reply).client, address, ARGS)).toEqual(parsed);
    }
  });

  it('throws CorruptRecordError on CORRUPT and on a code of no acquire reply', async () => {
    for (const code of [REPLY.CORRUPT, REPLY.STALE, 99]) {
      await expect(acquire(answering([code]).client, address, ARGS)).rejects.toBeInstanceOf(
        CorruptRecordError,
      );
    }
  });

  it('passes the epoch key as KEYS[3] only when given', async () => {
    const plain = answering([REPLY.NO_SESSION]);
    await acquire(plain.client, address, ARGS);
    expect(plain.evalsha.mock.calls[0]?.slice(1, 4)).toEqual([2, address.key, address.index]);
    const epoch = answering([REPLY.NO_SESSION]);
    await acquire(epoch.client, address, { ...ARGS, epochKey: 'unit:epoch' });
    expect(epoch.evalsha.mock.calls[0]?.slice(1, 5)).toEqual([
      3,
      address.key,
      address.index,
      'unit:epoch',
    ]);
  });
});

describe('owner replies (heartbeat, complete, fail, release)', () => {
  const grant = { token: 't', fence: 1 };
  const calls = [
    (client: RedisConnection) => heartbeat(client, address, grant, 1_000, 10_000),
    (client: RedisConnection) =>
      settle(client, address, grant, 10_000, 'unit:pair:settled', { state: 'done', result: '1' }),
    (client: RedisConnection) =>
      settle(client, address, grant, 10_000, 'c', { state: 'failed', error: '{}', final: true }),
    (client: RedisConnection) => settle(client, address, grant, 10_000, 'c', { state: 'released' }),
  ];

  it('names the fields of each code', async () => {
    for (const call of calls) {
      expect(await call(answering([REPLY.OK, 1]).client)).toEqual({ kind: 'ok' });
      expect(await call(answering([REPLY.STALE, 'done', 2, 'us']).client)).toEqual({
        kind: 'stale',
        state: 'done',
        fence: 2,
        owner: 'us',
      });
      expect(await call(answering([REPLY.MISSING]).client)).toEqual({ kind: 'missing' });
      await expect(call(answering([REPLY.CORRUPT]).client)).rejects.toBeInstanceOf(
        CorruptRecordError,
      );
    }
  });
});

describe('inspect replies', () => {
  it('has no code: now, raw, retention left, session left', async () => {
    const raw = '{"state":"running","owner":"eu","fence":1}';
    expect(
      await inspect(answering([1_000, raw, 5_000, REPLY.NOT_UNDER_SESSION]).client, address),
    ).toEqual({ now: 1_000, raw, retentionLeftMs: 5_000, sessionLeftMs: null });
    // The session key is gone (PTTL -2): its lease has run out.
    expect(await inspect(answering([1_000, raw, 5_000, -2]).client, address)).toMatchObject({
      sessionLeftMs: 0,
    });
    expect(await inspect(answering([1_000, null, -2, -3]).client, address)).toMatchObject({
      raw: null,
    });
  });
});

describe('replies.json', () => {
  it('gives every reply code a layout, and every script only named codes', () => {
    for (const name of Object.keys(REPLY)) {
      if (name === 'IDLE_UNKNOWN' || name === 'NOT_UNDER_SESSION') continue;
      expect(REPLY_FIELDS).toHaveProperty(name);
    }
    for (const script of Object.values(luaScripts)) {
      expect(script.lua).toContain('local REPLY = {');
      expect(script.lua).not.toMatch(/return\s*\{\s*-?\d/);
    }
  });
});

describe('keys', () => {
  // Pinned on purpose: records and sessions outlive a deploy, so their names must not drift.
  it('builds record ids and addresses in one way', () => {
    expect(recordId('push', 'job-1')).toBe('push:job-1');
    expect(recordAddress('p', recordId('push', 'job-1'))).toEqual({
      id: 'push:job-1',
      hash: undefined,
      key: 'p:pair:{push:job-1}',
      index: 'p:pair:{push:job-1}',
      field: '',
    });
    expect(recordAddress('p', 'job-1', 'h')).toEqual({
      id: 'job-1',
      hash: 'h',
      key: 'p:pairs:{h}',
      index: 'p:pairs:{h}:expiry',
      field: 'job-1',
    });
  });

  it('matches names literally in patterns', () => {
    expect(globLiteral('a*b?[c]\\')).toBe('a\\*b\\?\\[c\\]\\\\');
    expect(recordKeyPattern('p')).toBe('p:pair:{*}');
    expect(recordKeyPattern('p*', groupIdPrefix('g?'))).toBe('p\\*:pair:{g\\?:*}');
    expect(recordHashPattern('p')).toBe('p:pairs:{*}');
    expect(recordHashPattern('p', 'h[1]')).toBe('p:pairs:{h\\[1\\]}');
    expect(sessionKeyPattern('p')).toBe(`${sessionKey('p', '')}*`);
  });
});
