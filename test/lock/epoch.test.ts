/**
 * The liveness warm-up after a failover. A replica promoted to primary may have been up for
 * hours, so uptime says nothing; the epoch key (`<prefix>:epoch`, replicated from the old
 * primary) names the server that wrote it, and a server that finds another run_id there
 * starts a new epoch: owners granted before it are not judged by their empty channels until
 * the epoch is LIVENESS_WARMUP_S old.
 */
import { describe, expect, it } from 'vitest';
import { epochKey, livenessChannel, recordAddress } from '../../src/lock/keys.js';
import { acquire, heartbeat } from '../../src/lock/scripts.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { usAcquire } from './lock-test-kit.js';

const redis = useRedis();
const WARMUP_S = 10;

async function serverNow(client: ReturnType<ReturnType<typeof redis>['connect']>) {
  const [s, us] = await client.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** The acquire of member 'us', a shadow of the record's owner 'eu', with the epoch key. */
function askAsUs(
  client: ReturnType<ReturnType<typeof redis>['connect']>,
  address: ReturnType<typeof recordAddress>,
  prefix: string,
  overrides: { graceMs?: number; retentionMs?: number; warmupS?: number } = {},
) {
  return acquire(
    client,
    address,
    usAcquire({ warmupS: WARMUP_S, epochKey: epochKey(prefix), ...overrides }),
  );
}

/** A record running under an owner whose liveness channel has no subscriber. */
async function setup() {
  const client = redis().connect();
  const prefix = uniquePrefix('epoch');
  const address = recordAddress(prefix, 'task');
  const now = await serverNow(client);
  await client.set(
    address.key,
    JSON.stringify({
      state: 'running',
      owner: 'eu',
      token: 'eu-token',
      fence: 1,
      attempts: 1,
      leaseUntil: now + 60_000,
      grantedAt: now - 1_000,
      createdAt: now - 1_000,
      updatedAt: now - 1_000,
      live: livenessChannel(prefix, 'gone'),
    }),
  );
  const ask = () => askAsUs(client, address, prefix, { graceMs: 0 });
  return { client, prefix, now, ask };
}

describe('liveness warm-up after a failover', () => {
  it('starts a new epoch when the epoch key names another server, and waits it out', async () => {
    const { client, prefix, now, ask } = await setup();
    // As replicated from the old primary: another run_id, an epoch that began long ago.
    await client.hset(epochKey(prefix), 'runId', 'old-primary', 'since', now - 3_600_000);
    const reply = await ask();
    expect(reply).toMatchObject({ kind: 'busy', owner: 'eu' });
    expect(reply.kind === 'busy' && reply.recheckMs).toBeGreaterThan(WARMUP_S * 1000 - 2_000);
    const [runId, since] = await client.hmget(epochKey(prefix), 'runId', 'since');
    const info = await client.info('server');
    expect(runId).toBe(/run_id:(\w+)/.exec(info)?.[1]);
    expect(Number(since)).toBeGreaterThanOrEqual(now);
    expect(await client.pttl(epochKey(prefix))).toBeGreaterThan(0); // expires with the records
  });

  it('takes over from an owner whose channel is empty once the epoch is older than the warm-up', async () => {
    const { client, prefix, now, ask } = await setup();
    const runId = /run_id:(\w+)/.exec(await client.info('server'))?.[1] ?? '';
    await client.hset(epochKey(prefix), 'runId', runId, 'since', now - 60_000);
    expect(await ask()).toMatchObject({
      kind: 'granted',
      fence: clockFence,
      takeover: 'disconnected',
    });
  });

  it('stamps the epoch at a grant, so that a replica has it before any failover', async () => {
    const client = redis().connect();
    const prefix = uniquePrefix('epoch');
    const reply = await acquire(client, recordAddress(prefix, 'fresh'), {
      member: 'eu',
      token: 't',
      leaseMs: 60_000,
      retentionMs: 120_000,
      policy: 'takeover',
      liveChannel: '',
      graceMs: 0,
      warmupS: WARMUP_S,
      sessionKey: '',
      epochKey: epochKey(prefix),
    });
    expect(reply).toMatchObject({ kind: 'granted', fence: clockFence });
    expect(await client.hget(epochKey(prefix), 'runId')).toMatch(/^\w{40}$/);
  });
});

describe('a record a failover left running under a live owner', () => {
  /**
   * The owner lives (its liveness channel has a subscriber), but the record was last written
   * before the epoch began: a failover undid its settle, and its owner no longer runs it.
   */
  async function orphan(epochBeganMsAgo: number, runId?: string) {
    const client = redis().connect();
    const subscriber = redis().connect();
    const prefix = uniquePrefix('orphan');
    const address = recordAddress(prefix, 'task');
    const live = livenessChannel(prefix, 'eu');
    await subscriber.subscribe(live);
    const now = await serverNow(client);
    await client.set(
      address.key,
      JSON.stringify({
        state: 'running',
        owner: 'eu',
        token: 'eu-token',
        fence: 3,
        attempts: 3,
        leaseUntil: now + 600_000,
        grantedAt: now - 60_000,
        createdAt: now - 60_000,
        updatedAt: now - 60_000,
        live,
      }),
    );
    const info = await client.info('server');
    const serverRunId = /run_id:(\w+)/.exec(info)?.[1] ?? '';
    await client.hset(epochKey(prefix), {
      runId: runId ?? serverRunId,
      since: now - epochBeganMsAgo,
    });
    return askAsUs(client, address, prefix);
  }

  it('is taken over once the epoch is past the warm-up (before: the twin waited as long as the owner lived)', async () => {
    expect(await orphan(20_000)).toMatchObject({
      kind: 'granted',
      fence: clockFence,
      takeover: 'expired',
    });
  });

  it('is not taken over while its owner may still reconnect and refresh it', async () => {
    expect(await orphan(2_000)).toMatchObject({ kind: 'busy', owner: 'eu' });
    // The epoch key names another server: this one was just promoted.
    expect(await orphan(600_000, 'old-primary')).toMatchObject({ kind: 'busy', owner: 'eu' });
  });

  it('is not an orphan when it was written in this epoch', async () => {
    expect(await orphan(120_000)).toMatchObject({ kind: 'busy', owner: 'eu' });
  });
});

describe('a live run refreshed after a failover', () => {
  it('is never an orphan: its heartbeat stamps the epoch before writing', async () => {
    const client = redis().connect();
    const subscriber = redis().connect();
    const prefix = uniquePrefix('refreshed');
    const address = recordAddress(prefix, 'task');
    const live = livenessChannel(prefix, 'eu');
    await subscriber.subscribe(live);
    const now = await serverNow(client);
    const record = { state: 'running', owner: 'eu', token: 'eu-token', fence: 1, attempts: 1 };
    await client.set(
      address.key,
      JSON.stringify({ ...record, leaseUntil: now + 600_000, updatedAt: now - 60_000, live }),
    );
    // Replicated from the old primary: this server was just promoted.
    await client.hset(epochKey(prefix), { runId: 'old-primary', since: now - 600_000 });
    // The owner reconnects and refreshes its run (LeaseKeeper.check after a reconnect).
    const grant = { token: 'eu-token', fence: 1 };
    expect(
      await heartbeat(client, address, grant, 600_000, 600_000, { epochKey: epochKey(prefix) }),
    ).toEqual({
      kind: 'ok',
    });
    const ask = () => askAsUs(client, address, prefix, { retentionMs: 600_000, warmupS: 1 });
    // Two warm-ups later. Before the heartbeat stamped the epoch, a later acquire started it
    // after the refresh, and the live run looked older than its epoch: taken over, run twice.
    for (let i = 0; i < 3; i++) {
      expect(await ask()).toMatchObject({ kind: 'busy', owner: 'eu' });
      await new Promise((resolve) => setTimeout(resolve, 1_100)); // past the 1 s warm-up
    }
    expect(await ask()).toMatchObject({ kind: 'busy', owner: 'eu' });
  });
});
