import { describe, expect, it } from 'vitest';
import {
  type PushDemoSummary,
  printSummary,
  runPushDemo,
} from '../../examples/push-notifications/demo.js';

/** eu was killed, and still: nothing lost, each notification delivered once, every copy completed. */
function expectEveryNotificationOnce(
  summary: PushDemoSummary,
  count: number,
  regions: readonly string[] = ['eu', 'us'],
): void {
  expect(summary.killedAtMs).not.toBeNull();
  expect(summary.lost).toBe(0);
  expect(summary.delivered).toBe(count);
  // Every region completed every copy: eu's after its restart, mostly with its twins' results.
  for (const region of regions) expect(summary.regions[region]?.copiesCompleted).toBe(count);
  // A repeat reaches the gateway only from a takeover of a job whose executor died after
  // sending; the gateway suppresses it by its fence.
  expect(summary.duplicatesSuppressed).toBeLessThanOrEqual(summary.takeovers);
  expect(summary.staleRejected).toBe(0);
}

/** eu killed once 30 % is delivered, back 1.5 s later, 300 notifications a second. */
const KILLED_MIDWAY = { killAt: 0.3, restartAfterMs: 1_500, rate: 300 };

describe('npm run demo (push notifications in two regions)', () => {
  it('delivers every notification once when the eu region is SIGKILLed mid-run and restarted', async () => {
    const count = 240;
    const summary = await runPushDemo({ count, ...KILLED_MIDWAY, log: () => {} });
    expectEveryNotificationOnce(summary, count);
    // The workers' /metrics count the same decisions.
    expect(
      summary.metrics.some((l) =>
        l.startsWith('bullmq_paired_executions_total{queue="push",twin="us"}'),
      ),
    ).toBe(true);
    // Without --rtt there is no WAN, and the printed summary has no WAN line.
    expect(summary.rttMs).toBeNull();
    const printed: string[] = [];
    printSummary(summary, (line) => printed.push(line));
    expect(printed.some((l) => l.includes('enqueue → delivered'))).toBe(false);
  });

  it('--backends redis,postgres: us on PostgreSQL, eu SIGKILLed mid-run and restarted, every notification once', async () => {
    const count = 200;
    const lines: string[] = [];
    const summary = await runPushDemo({
      count,
      ...KILLED_MIDWAY,
      backends: ['redis', 'postgres'],
      log: (line) => lines.push(line),
    });
    expect(lines[0]).toMatch(/eu \(Redis redis:.*us \(PostgreSQL postgres:/);
    expectEveryNotificationOnce(summary, count);
  });

  it('--rtt 80 --executor balanced: the same over the WAN lab (lock store at a third site), executors chosen at add, eu killed and restarted', async () => {
    const count = 120;
    const lines: string[] = [];
    const summary = await runPushDemo({
      count,
      ...KILLED_MIDWAY,
      rttMs: 80,
      executor: 'balanced',
      timeoutMs: 150_000,
      log: (line) => lines.push(line),
    });
    expect(lines[0]).toMatch(/over the WAN lab, rtt 80 ms/);
    expect(summary.rttMs).toBe(80);
    expectEveryNotificationOnce(summary, count);
    // Each twin executed some (balanced), and half the notifications were added to us's queue
    // through the 40 ms cross-region link before us could run them: the WAN is in the lab.
    expect(summary.regions.eu?.executed).toBeGreaterThan(0);
    expect(summary.regions.us?.executed).toBeGreaterThan(0);
    expect(summary.enqueueToDeliveredP50Ms).toBeGreaterThanOrEqual(20);
    expect(summary.enqueueToDeliveredP99Ms).toBeGreaterThanOrEqual(
      summary.enqueueToDeliveredP50Ms ?? 0,
    );
    const printed: string[] = [];
    printSummary(summary, (line) => printed.push(line));
    expect(
      printed.some((l) => /enqueue → delivered over rtt 80 ms, p50 \/ p99 +\d+ ms/.test(l)),
    ).toBe(true);
  }, 180_000);

  it('--regions eu,us,ap: three regions, eu killed: its jobs go to us and ap, nothing lost', async () => {
    const count = 240;
    const summary = await runPushDemo({
      count,
      ...KILLED_MIDWAY,
      regions: ['eu', 'us', 'ap'],
      log: () => {},
    });
    expectEveryNotificationOnce(summary, count, ['eu', 'us', 'ap']);
  }, 180_000);
});
