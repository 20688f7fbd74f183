import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { PairedMetrics } from '../../src/prometheus.js';
import { useRedis } from '../support/file-redis.js';
import { inProcessTwins } from './in-process-twins.js';

const redis = useRedis();

/** The value of one series, or 0 when it does not exist yet. */
async function value(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const series = (metric?.values ?? []).find((v) =>
    Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want),
  );
  return series?.value ?? 0;
}

describe('PairedMetrics (prom-client)', () => {
  it('counts executions, takeovers with their latency, and twin completions per queue and twin', async () => {
    const registry = new Registry();
    const metrics = new PairedMetrics({ registry });
    // Job "fail-once": the first run fails wherever it lands, so the other twin takes over.
    let failed = false;
    const twins = inProcessTwins(redis(), {
      run: () => async (job) => {
        if (job.name === 'fail-once' && !failed) {
          failed = true;
          throw new Error('first run fails');
        }
        return 'sent';
      },
    });
    const stop = [metrics.observe(twins.processors.eu), metrics.observe(twins.processors.us)];
    try {
      twins.start();
      const plain = await twins.queue.add('push', {});
      await twins.settled(plain.id);
      const { id: failingId } = await twins.queue.add('fail-once', {});
      const states = () =>
        Promise.all(
          (['eu', 'us'] as const).map((t) => twins.queue.queue(t).getJobState(failingId)),
        );
      // Its first copy fails in BullMQ (no attempts left); the twin's copy completes.
      await expect
        .poll(async () => (await states()).sort(), { timeout: 20_000 })
        .toEqual(['completed', 'failed']);
      const sum = async (name: string, labels: Record<string, string> = {}) =>
        (await value(registry, name, { ...labels, twin: 'eu' })) +
        (await value(registry, name, { ...labels, twin: 'us' }));
      // Two jobs executed once each (the failed first run is not an execution that completed).
      await expect.poll(() => sum('bullmq_paired_executions_total'), { timeout: 10_000 }).toBe(2);
      expect(await sum('bullmq_paired_takeovers_total', { reason: 'failed' })).toBe(1);
      expect(await sum('bullmq_paired_twin_completions_total')).toBe(1);
      const histogram = (await registry.getMetricsAsJSON()).find(
        (m) => m.name === 'bullmq_paired_takeover_latency_seconds',
      );
      const count = histogram?.values.find(
        (v) =>
          (v as { metricName?: string }).metricName ===
          'bullmq_paired_takeover_latency_seconds_count',
      );
      expect(count?.value).toBe(1);
      expect(count?.labels).toMatchObject({
        reason: 'failed',
        queue: expect.stringMatching(/-(eu|us)$/),
      });
      const text = await registry.metrics();
      expect(text).toContain('# HELP bullmq_paired_takeovers_total');
      expect(text).not.toContain(plain.id); // job ids never become labels
    } finally {
      for (const s of stop) s();
      await twins.close();
    }
  });

  it('stops counting when told, and rejects a bad prefix', async () => {
    const registry = new Registry();
    const metrics = new PairedMetrics({ registry, prefix: 'app_paired_' });
    const twins = inProcessTwins(redis(), { run: () => async () => 'sent' });
    metrics.observe(twins.processors.eu)();
    metrics.observe(twins.processors.us)();
    try {
      twins.start();
      const { id } = await twins.queue.add('push', {});
      await twins.settled(id);
      expect(await value(registry, 'app_paired_executions_total', {})).toBe(0);
    } finally {
      await twins.close();
    }
    expect(() => new PairedMetrics({ registry, prefix: 'bad prefix' })).toThrow(
      /PairedMetrics: option "prefix" must be a Prometheus metric name prefix/,
    );
  });
});
