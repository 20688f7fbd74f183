import { describe, expect, it } from 'vitest';
import { runPushDemo } from '../../examples/push-notifications/demo.js';

describe('npm run demo (push notifications in two regions)', () => {
  it('delivers every notification once when the eu region is SIGKILLed mid-run and restarted', async () => {
    const count = 240;
    const summary = await runPushDemo({
      count,
      killAt: 0.3,
      restartAfterMs: 1_500,
      rate: 300,
      log: () => {},
    });
    expect(summary.killedAtMs).not.toBeNull();
    expect(summary.lost).toBe(0);
    expect(summary.delivered).toBe(count);
    // Both regions completed every copy: eu's after its restart, mostly with us's results.
    expect(summary.regions.eu?.copiesCompleted).toBe(count);
    expect(summary.regions.us?.copiesCompleted).toBe(count);
    // A repeat reaches the gateway only from a takeover of a job whose executor died after
    // sending; the gateway suppresses it by its fence.
    expect(summary.duplicatesSuppressed).toBeLessThanOrEqual(summary.takeovers);
    expect(summary.staleRejected).toBe(0);
    // The workers' /metrics count the same decisions.
    expect(
      summary.metrics.some((l) =>
        l.startsWith('bullmq_paired_executions_total{queue="push",twin="us"}'),
      ),
    ).toBe(true);
  });
});
