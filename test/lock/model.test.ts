/**
 * Model-based test of the pair-record scripts (fast-check): random interleavings of acquire
 * (as the chosen executor, or as another twin: both fenced on the store's clock), a chosen
 * executor's claim of a run already started with fence 1, a standby's mark ('waiting'),
 * heartbeat, complete, fail, release and lease expiry by three members, each checked against
 * a small model of the state machine; and every grant's fence above every earlier one.
 * Per-record leases (no sessions), so expiry can be forced.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { type RecordAddress, recordAddress } from '../../src/lock/keys.js';
import { acquire, heartbeat, inspect, type OwnerReply, settle } from '../../src/lock/scripts.js';
import { fenceAbove } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { expireLease } from './lock-test-kit.js';

const redis = useRedis();
type Member = 'a' | 'b' | 'c';
type State = 'absent' | 'waiting' | 'running' | 'done' | 'failed' | 'released';

interface Model {
  state: State;
  fence: number;
  ownerToken: string | undefined;
  expired: boolean;
  /** Each member's latest grant (possibly stale). */
  grants: Partial<Record<Member, { token: string; fence: number }>>;
  /** The highest fence granted so far: a new grant must be above it. */
  highest: number;
}

function granted(m: Model, member: Member, token: string, claim = false): void {
  // A claim's run started with fence 1 before any answer: granted only where the store knows
  // of no grant (which a lost record hides). Every other grant is above all before it.
  if (!claim) expect(m.fence).toBeGreaterThan(m.highest);
  m.highest = Math.max(m.highest, m.fence);
  m.state = 'running';
  m.ownerToken = token;
  m.expired = false;
  m.grants[member] = { token, fence: m.fence };
}

interface Real {
  client: Redis;
  prefix: string;
  address: RecordAddress;
}

const LEASE = 60_000;
const RETENTION = 120_000;

const BASE_ARGS = {
  leaseMs: LEASE,
  retentionMs: RETENTION,
  liveChannel: '',
  graceMs: 0,
  warmupS: 0,
  sessionKey: '',
};

/** One acquire script call by `member` with a fresh token. */
async function ask(
  r: Real,
  member: Member,
  how: { policy: 'takeover' | 'respect'; minFence: 1 | 2; claim?: 'started' | 'waiting' },
) {
  const token = randomUUID();
  const reply = await acquire(r.client, r.address, { ...BASE_ARGS, member, token, ...how });
  return { token, reply };
}

class Acquire implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly member: Member,
    readonly policy: 'takeover' | 'respect',
    /** 1: the job's chosen executor (or no choice); 2: the other twin. */
    readonly minFence: 1 | 2,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const { token, reply } = await ask(r, this.member, {
      policy: this.policy,
      minFence: this.minFence,
    });
    const fresh = m.state === 'absent' || m.state === 'waiting';
    const grants =
      fresh ||
      m.state === 'released' ||
      (m.state === 'running' && m.expired) ||
      (m.state === 'failed' && this.policy === 'takeover');
    if (grants) {
      // Fenced on the store's clock and above every fence before it, a claim's 1 included.
      expect(reply).toMatchObject({ kind: 'granted', fence: fenceAbove(m.fence) });
      m.fence = (reply as { fence: number }).fence;
      granted(m, this.member, token);
    } else {
      const expected = { running: 'busy', done: 'done', failed: 'failed' }[
        m.state as 'running' | 'done' | 'failed'
      ];
      expect(reply).toMatchObject({ kind: expected, fence: m.fence });
    }
  }
  toString = () => `acquire(${this.member}, ${this.policy}, min ${this.minFence})`;
}

/** The chosen executor's claim of a run it started with fence 1 before any answer. */
class Claim implements fc.AsyncCommand<Model, Real> {
  constructor(readonly member: Member) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const { token, reply } = await ask(r, this.member, {
      policy: 'takeover',
      minFence: 1,
      claim: 'started',
    });
    if (m.state === 'absent' || m.state === 'waiting') {
      m.fence = 1;
      expect(reply).toMatchObject({ kind: 'granted', fence: 1 });
      granted(m, this.member, token, true);
    } else {
      expect(reply).toMatchObject({ kind: 'taken', fence: m.fence, state: m.state });
    }
  }
  toString = () => `claim(${this.member})`;
}

/** A standby's look: an absent record is marked 'waiting'. */
class Mark implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const reply = await inspect(r.client, r.address, RETENTION);
    if (m.state === 'absent') {
      m.state = 'waiting';
      m.fence = 0;
    }
    expect(JSON.parse(reply.raw ?? 'null')).toMatchObject({ state: m.state, fence: m.fence });
  }
  toString = () => 'mark()';
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
    if (m.state === 'absent') {
      expect(reply).toEqual({ kind: 'missing' });
      return;
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

/** The record is lost, as in a failover to a replica that never got it (or a restart without AOF). */
class Lose implements fc.AsyncCommand<Model, Real> {
  check = (m: Readonly<Model>) => m.state !== 'absent';
  async run(m: Model, r: Real): Promise<void> {
    await r.client.del(r.address.key);
    // A failover or restart takes longer than the clock's tick, the fence's unit (1 ms).
    await sleep(2);
    m.state = 'absent';
    m.fence = 0;
    m.ownerToken = undefined;
    m.expired = false;
  }
  toString = () => 'lose()';
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
        .tuple(
          members,
          fc.constantFrom<'takeover' | 'respect'>('takeover', 'respect'),
          fc.constantFrom<1 | 2>(1, 2),
        )
        .map(([m, p, min]) => new Acquire(m, p, min)),
      members.map((m) => new Claim(m)),
      fc.constant(new Mark()),
      fc
        .tuple(
          members,
          fc.constantFrom('heartbeat', 'complete', 'fail', 'release') as fc.Arbitrary<
            OwnerCall['call']
          >,
        )
        .map(([m, c]) => new OwnerCall(m, c)),
      fc.constant(new Expire()),
      fc.constant(new Lose()),
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
            highest: 0,
          },
          real: { client, prefix, address: recordAddress(prefix, id) },
        });
        await fc.asyncModelRun(setup, cmds);
      }),
      { numRuns: 1_000 },
    );
  });
});
