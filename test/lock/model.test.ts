/**
 * Model-based test of the pair-record scripts (fast-check): random interleavings of acquire,
 * heartbeat, complete, fail, release and lease expiry by three members, each checked against a
 * small model of the state machine. Per-record leases (no sessions), so expiry can be forced.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { type RecordAddress, recordAddress } from '../../src/lock/keys.js';
import { acquire, heartbeat, type OwnerReply, settle } from '../../src/lock/scripts.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { expireLease } from './lock-test-kit.js';

const redis = useRedis();
type Member = 'a' | 'b' | 'c';
type State = 'absent' | 'running' | 'done' | 'failed' | 'released';

interface Model {
  state: State;
  fence: number;
  ownerToken: string | undefined;
  expired: boolean;
  /** Each member's latest grant (possibly stale). */
  grants: Partial<Record<Member, { token: string; fence: number }>>;
}

interface Real {
  client: Redis;
  prefix: string;
  address: RecordAddress;
}

const LEASE = 60_000;
const RETENTION = 120_000;

class Acquire implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly member: Member,
    readonly policy: 'takeover' | 'respect',
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const token = randomUUID();
    const args = {
      member: this.member,
      token,
      leaseMs: LEASE,
      retentionMs: RETENTION,
      policy: this.policy,
    };
    const reply = await acquire(r.client, r.address, {
      ...args,
      liveChannel: '',
      graceMs: 0,
      warmupS: 0,
      sessionKey: '',
    });
    const grants =
      m.state === 'absent' ||
      m.state === 'released' ||
      (m.state === 'running' && m.expired) ||
      (m.state === 'failed' && this.policy === 'takeover');
    if (grants) {
      m.fence = m.state === 'absent' ? 1 : m.fence + 1;
      expect(reply).toMatchObject({ kind: 'granted', fence: m.fence });
      m.state = 'running';
      m.ownerToken = token;
      m.expired = false;
      m.grants[this.member] = { token, fence: m.fence };
    } else {
      const expected = { running: 'busy', done: 'done', failed: 'failed' }[
        m.state as 'running' | 'done' | 'failed'
      ];
      expect(reply).toMatchObject({ kind: expected, fence: m.fence });
    }
  }
  toString = () => `acquire(${this.member}, ${this.policy})`;
}

/** heartbeat, complete, fail or release by a member holding a (possibly stale) grant. */
class OwnerCall implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly member: Member,
    readonly call: 'heartbeat' | 'complete' | 'fail' | 'release',
  ) {}
  check = (m: Readonly<Model>) => m.grants[this.member] !== undefined;
  async run(m: Model, r: Real): Promise<void> {
    const grant = m.grants[this.member] as { token: string; fence: number };
    let reply: OwnerReply;
    if (this.call === 'heartbeat') {
      reply = await heartbeat(r.client, r.address, grant, LEASE, RETENTION);
    } else {
      const settlement =
        this.call === 'complete'
          ? ({ state: 'done', result: '1' } as const)
          : this.call === 'fail'
            ? ({ state: 'failed', error: '{}' } as const)
            : ({ state: 'released' } as const);
      reply = await settle(
        r.client,
        r.address,
        grant,
        RETENTION,
        `${r.prefix}:settled`,
        settlement,
      );
    }
    const owns = m.state === 'running' && m.ownerToken === grant.token && m.fence === grant.fence;
    const target = { heartbeat: 'running', complete: 'done', fail: 'failed', release: 'released' }[
      this.call
    ] as State;
    // A settle repeated by the fence that made it is recognised as already done.
    const repeat = this.call !== 'heartbeat' && m.state === target && m.fence === grant.fence;
    if (owns || repeat) {
      expect(reply).toEqual({ kind: 'ok' });
      if (owns && this.call === 'heartbeat') m.expired = false;
      if (owns && this.call !== 'heartbeat') {
        m.state = target;
        m.ownerToken = undefined;
      }
    } else {
      expect(reply).toEqual({
        kind: 'stale',
        state: m.state,
        fence: m.fence,
        owner: expect.any(String),
      });
    }
  }
  toString = () => `${this.call}(${this.member})`;
}

class Expire implements fc.AsyncCommand<Model, Real> {
  check = (m: Readonly<Model>) => m.state === 'running';
  async run(m: Model, r: Real): Promise<void> {
    await expireLease(r.client, r.prefix, r.address.id);
    m.expired = true;
  }
  toString = () => 'expire()';
}

describe('pair record scripts against a model', () => {
  it('agree with the state machine over 1 000 random histories of three members', async () => {
    const client = redis().connect();
    const members = fc.constantFrom<Member>('a', 'b', 'c');
    const commands = [
      fc
        .tuple(members, fc.constantFrom<'takeover' | 'respect'>('takeover', 'respect'))
        .map(([m, p]) => new Acquire(m, p)),
      fc
        .tuple(
          members,
          fc.constantFrom('heartbeat', 'complete', 'fail', 'release') as fc.Arbitrary<
            OwnerCall['call']
          >,
        )
        .map(([m, c]) => new OwnerCall(m, c)),
      fc.constant(new Expire()),
    ];
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 25 }), async (cmds) => {
        const prefix = uniquePrefix('model');
        const id = `task-${randomUUID()}`;
        const setup = () => ({
          model: {
            state: 'absent' as State,
            fence: 0,
            ownerToken: undefined,
            expired: false,
            grants: {},
          },
          real: { client, prefix, address: recordAddress(prefix, id) },
        });
        await fc.asyncModelRun(setup, cmds);
      }),
      { numRuns: 1_000 },
    );
  });
});
