import { describe, expect, it } from 'vitest';
import { startCluster } from '../support/cluster.js';
import { useRedis } from '../support/file-redis.js';
import { runSoak } from './soak.js';

const redis = useRedis();

describe('chaos soak (CI size)', () => {
  it.each(['first', 'balanced'] as const)(
    'loses nothing while worker processes are SIGKILLed every ~2 s (executor %s)',
    {
      timeout: 240_000,
    },
    async (executor) => {
      // Jobs of 200–600 ms keep the run long enough (about half a minute) for several kills.
      const report = await runSoak(redis(), 1_000, { minMs: 200, maxMs: 600, executor });
      console.info(`chaos: ${JSON.stringify(report)}`);
      expect(report.kills).toBeGreaterThanOrEqual(3);
      expect(report.lost).toBe(0);
      expect(report.duplicates).toBeLessThanOrEqual(report.kills * 10); // at most a killed process's in-flight jobs (concurrency 10)
      expect(report.fenceViolations).toBe(0);
      expect(report.overlapsWithLiveOwner).toBe(0);
    },
  );

  it('loses nothing with three twins while worker processes are SIGKILLed every ~2 s', {
    timeout: 240_000,
  }, async () => {
    // Three twins spread the runs over 60 slots: more jobs keep it long enough for several kills.
    const report = await runSoak(redis(), 1_600, {
      minMs: 200,
      maxMs: 600,
      twins: ['eu', 'us', 'ap'],
    });
    console.info(`chaos (three twins): ${JSON.stringify(report)}`);
    expect(report.kills).toBeGreaterThanOrEqual(3);
    expect(report.lost).toBe(0);
    expect(report.duplicates).toBeLessThanOrEqual(report.kills * 10);
    expect(report.fenceViolations).toBe(0);
    expect(report.overlapsWithLiveOwner).toBe(0);
  });

  it('loses nothing with the pair records on a Redis Cluster while worker processes are SIGKILLed', {
    timeout: 240_000,
  }, async () => {
    const cluster = await startCluster();
    try {
      const report = await runSoak(redis(), 1_000, {
        minMs: 200,
        maxMs: 600,
        lockCluster: cluster.nodes,
      });
      console.info(`chaos (Cluster lock store): ${JSON.stringify(report)}`);
      expect(report.kills).toBeGreaterThanOrEqual(3);
      expect(report.lost).toBe(0);
      expect(report.duplicates).toBeLessThanOrEqual(report.kills * 10);
      expect(report.fenceViolations).toBe(0);
      expect(report.overlapsWithLiveOwner).toBe(0);
    } finally {
      await cluster.stop();
    }
  });
});
