import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { FixtureProcess } from '../support/child.js';
import { clockFence, isClockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { lockKit, taskId } from './lock-test-kit.js';

const redis = useRedis();
const kit = lockKit(redis);
const children: FixtureProcess[] = [];

afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill()));
});

function member(env: Record<string, string>): FixtureProcess {
  const child = new FixtureProcess('lock-member.ts', {
    REDIS_URL: redis().url,
    PREFIX: kit.prefix,
    ...env,
  });
  children.push(child);
  return child;
}

/** A process holds the task; this test's member shadows it; the holder is SIGKILLed. */
async function killHolder(
  holderEnv: Record<string, string>,
  shadowOptions: { leaseMs?: number; liveness?: boolean },
) {
  const id = taskId();
  const holder = member({ MODE: 'hold', TASK_ID: id, MEMBER: 'eu', ...holderEnv });
  expect(await holder.next('executing')).toMatchObject({ fence: clockFence });
  const us = kit.lock({ member: 'us', ...shadowOptions }, kit.prefix);
  let startedAt = 0;
  const shadow = us.run(id, ({ fence, takeover }) => {
    startedAt = performance.now();
    return { fence, takeover };
  });
  const killedAt = performance.now();
  await holder.kill('SIGKILL');
  const outcome = await shadow;
  return { outcome, takeoverMs: startedAt - killedAt };
}

describe('PairedLock across processes', () => {
  it('takes over from a SIGKILLed executor by lease expiry when liveness is off', async () => {
    const { outcome, takeoverMs } = await killHolder(
      { LEASE_MS: '1500', LIVENESS: '0' },
      { liveness: false },
    );
    expect(outcome).toMatchObject({
      role: 'executor',
      result: { fence: clockFence, takeover: 'expired' },
    });
    // Nothing but the lease can reveal the death here, so the takeover cannot beat it by much.
    expect(takeoverMs).toBeGreaterThan(500);
  });

  it('takes over from a SIGKILLed executor within seconds despite a 30 s lease (liveness)', async () => {
    const { outcome, takeoverMs } = await killHolder({ LEASE_MS: '30000' }, { leaseMs: 30_000 });
    expect(outcome).toMatchObject({
      role: 'executor',
      result: { fence: clockFence, takeover: 'disconnected' },
    });
    expect(takeoverMs).toBeLessThan(5_000);
  });

  it('never runs a task twice when two processes race over the same ids', async () => {
    const ids = Array.from({ length: 60 }, () => taskId());
    const ledger = `${uniquePrefix('ledger')}:executions`;
    const env = { MODE: 'race', TASK_IDS: ids.join(','), LEDGER: ledger };
    const racers = [member({ ...env, MEMBER: 'eu' }), member({ ...env, MEMBER: 'us' })];
    await Promise.all(racers.map((racer) => racer.next('finished')));
    await Promise.all(racers.map((racer) => racer.exited()));
    const entries = await redis().connect().lrange(ledger, 0, -1);
    const executed = entries.map((entry) => entry.split('|')[0]);
    expect(executed.sort()).toEqual([...ids].sort());
    // Each ran once, on its first grant.
    expect(entries.every((entry) => isClockFence(Number(entry.split('|')[2])))).toBe(true);
  });
});
