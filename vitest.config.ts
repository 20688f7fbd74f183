import { defineConfig } from 'vitest/config';
import { SummaryReporter } from './test/support/summary-reporter.js';
import { HOOK_TIMEOUT_MS, TEST_TIMEOUT_MS } from './test/support/timeouts.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real processes: tests spawn and SIGKILL children and start their own redis-server.
    pool: 'forks',
    setupFiles: ['test/support/leaks.ts'],
    reporters: ['default', new SummaryReporter()],
    testTimeout: TEST_TIMEOUT_MS,
    hookTimeout: HOOK_TIMEOUT_MS,
    // 2-core machines: two files at a time keeps timing tolerances honest.
    maxWorkers: 2,
  },
});
