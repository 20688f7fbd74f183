import { describe, expect, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { useRedis } from '../support/file-redis.js';

const redis = useRedis();

const cases: [string, Record<string, unknown>, RegExp][] = [
  ['missing member', {}, /option "member" must be a non-empty string, received undefined/],
  ['empty member', { member: '' }, /option "member" must be a non-empty string, received ""/],
  ['member not a string', { member: 7 }, /option "member" must be a non-empty string, received 7/],
  [
    'lease NaN',
    { member: 'eu', leaseMs: Number.NaN },
    /option "leaseMs" must be an integer between 100 and .*, received NaN/,
  ],
  [
    'lease Infinity',
    { member: 'eu', leaseMs: Number.POSITIVE_INFINITY },
    /"leaseMs" .* received Infinity/,
  ],
  ['lease negative', { member: 'eu', leaseMs: -5 }, /"leaseMs" .* received -5/],
  ['lease as string', { member: 'eu', leaseMs: '30000' }, /"leaseMs" .* received "30000"/],
  ['lease fractional', { member: 'eu', leaseMs: 1000.5 }, /"leaseMs" must be an integer/],
  [
    'lease null',
    { member: 'eu', leaseMs: null },
    /option "leaseMs" is null; leave it out \(or undefined\) for its default/,
  ],
  [
    'heartbeat equal to lease',
    { member: 'eu', leaseMs: 1000, heartbeatMs: 1000 },
    /"heartbeatMs" must be below leaseMs \(1000\), received 1000/,
  ],
  [
    'heartbeat above lease',
    { member: 'eu', leaseMs: 1000, heartbeatMs: 5000 },
    /"heartbeatMs" must be below leaseMs/,
  ],
  [
    'heartbeat zero',
    { member: 'eu', heartbeatMs: 0 },
    /"heartbeatMs" must be an integer >= 10, received 0/,
  ],
  [
    'session key outliving half the lease',
    { member: 'eu', leaseMs: 10_000, sessionTtlMs: 6_000 },
    /"sessionTtlMs" must be 0 \(off\) or between 300 and leaseMs \/ 2 \(5000\), received 6000/,
  ],
  [
    'session key too short to refresh',
    { member: 'eu', sessionTtlMs: 100 },
    /"sessionTtlMs" must be 0 \(off\) or between 300 and leaseMs \/ 2 \(15000\), received 100/,
  ],
  [
    'retention below lease',
    { member: 'eu', leaseMs: 60_000, retentionMs: 5_000 },
    /"retentionMs" must be at least leaseMs \(60000\)/,
  ],
  [
    'retention tiny',
    { member: 'eu', retentionMs: 10 },
    /"retentionMs" must be an integer >= 1000, received 10/,
  ],
  [
    'poll interval negative',
    { member: 'eu', pollIntervalMs: -1 },
    /"pollIntervalMs" .* received -1/,
  ],
  [
    'bad policy',
    { member: 'eu', onPeerFailure: 'retry' },
    /"onPeerFailure" must be one of "takeover", "respect", received "retry"/,
  ],
  ['empty prefix', { member: 'eu', prefix: '' }, /"prefix" must be a non-empty string/],
  [
    'prefix with hash tag',
    { member: 'eu', prefix: '{x}' },
    /"prefix" must be free of "\{" and "\}"/,
  ],
  [
    'liveness not boolean',
    { member: 'eu', liveness: 'yes' },
    /"liveness" must be true or false, received "yes"/,
  ],
  [
    'allowEviction not boolean',
    { member: 'eu', allowEviction: 'yes' },
    /"allowEviction" must be true or false, received "yes"/,
  ],
  [
    'liveness interval zero',
    { member: 'eu', livenessIntervalMs: 0 },
    /"livenessIntervalMs" .* received 0/,
  ],
  [
    'liveness grace negative',
    { member: 'eu', livenessGraceMs: -1 },
    /"livenessGraceMs" .* received -1/,
  ],
  [
    'unknown option (seed name)',
    { member: 'eu', lockTimeout: 1000 },
    /unknown option "lockTimeout"; known options are "member", "leaseMs"/,
  ],
];

describe('PairedLock options', () => {
  it.each(cases)('rejects %s with a TypeError naming the option', (_name, options, message) => {
    const client = redis().connect({ lazyConnect: true });
    const create = () => new PairedLock(client, options as never);
    expect(create).toThrow(TypeError);
    expect(create).toThrow(message);
  });

  it('rejects a missing options object and a client that is not ioredis', () => {
    const client = redis().connect({ lazyConnect: true });
    expect(() => new PairedLock(client, undefined as never)).toThrow(/options must be an object/);
    expect(() => new PairedLock({} as never, { member: 'eu' })).toThrow(
      /must be an ioredis Redis or Cluster/,
    );
  });

  it('fills defaults and derives the heartbeat from the lease', () => {
    const client = redis().connect({ lazyConnect: true });
    expect(new PairedLock(client, { member: 'eu', leaseMs: 9_000 }).options).toEqual({
      member: 'eu',
      leaseMs: 9_000,
      heartbeatMs: 3_000,
      retentionMs: 86_400_000,
      pollIntervalMs: 1_000,
      onPeerFailure: 'takeover',
      prefix: 'paired',
      liveness: true,
      sessionTtlMs: 3_000,
      livenessIntervalMs: 50,
      livenessGraceMs: 100,
      maxResultBytes: 65_536,
      lockStoreTimeoutMs: 10_000,
      allowEviction: false,
    });
    // A lease too short for a 3 s key keeps the session on the main thread.
    expect(new PairedLock(client, { member: 'eu', leaseMs: 5_000 }).options.sessionTtlMs).toBe(0);
  });

  it('rejects bad run arguments before touching Redis', async () => {
    const client = redis().connect({ lazyConnect: true });
    const lock = new PairedLock(client, { member: 'eu' });
    expect(() => lock.run('', () => 1)).toThrow(/id must be a non-empty string/);
    expect(() => lock.run('a', 'nope' as never)).toThrow(/fn must be a function/);
    expect(() => lock.run('a', () => 1, { hash: '' })).toThrow(
      /option "hash" must be a non-empty string/,
    );
    expect(() => lock.run('a', () => 1, { hsh: 'x' } as never)).toThrow(/unknown option "hsh"/);
    expect(() => lock.inspect(7 as never)).toThrow(
      /PairedLock.inspect: id must be a non-empty string, received 7/,
    );
    expect(() => lock.inspect('a', { hash: 5 } as never)).toThrow(
      /PairedLock.inspect: option "hash" must be a non-empty string/,
    );
    await lock.close();
    expect(client.status).toBe('wait');
  });
});
