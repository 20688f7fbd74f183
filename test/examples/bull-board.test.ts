/**
 * The Bull Board example in a real headless Chromium (Debian's, through playwright-core: no
 * browser download): each job page shows the bullmq-paired line of that twin's decision.
 * The expected lines are derived from BullMQ's own record of each copy, not from the board.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { type Example, jobUrl, startExample, TWINS } from '../../examples/bull-board/server.js';
import { clockFence, firstRunFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';

const redis = useRedis();

// Browser start-up and the first render can take seconds on two busy cores.
const TEST_TIMEOUT_MS = 120_000;
const UI_TIMEOUT_MS = 30_000;

const CHROMIUM_HINT = 'install it (apt-get install chromium) or set CHROMIUM_PATH';

/** Debian's Chromium; when it is missing the test fails (never skips) and says how to get it. */
async function launchChromium(
  executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
): Promise<Browser> {
  if (!existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath}: ${CHROMIUM_HINT}`);
  }
  try {
    return await chromium.launch({
      executablePath,
      headless: true,
      args: ['--no-sandbox'],
      timeout: UI_TIMEOUT_MS,
    });
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new Error(`Chromium at ${executablePath} did not start (${reason}): ${CHROMIUM_HINT}`, {
      cause: err,
    });
  }
}

/** The example (workers, jobs, board on a free port) and a browser page; all closed after. */
async function withBoard(check: (example: Example, page: Page) => Promise<void>): Promise<void> {
  const connection = redis().connect();
  let example: Example | undefined;
  let browser: Browser | undefined;
  try {
    example = await startExample({ connection, port: 0 });
    browser = await launchChromium();
    const page = await browser.newPage();
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    await check(example, page);
  } finally {
    await browser?.close(); // waits for the Chromium process to exit
    await example?.close();
    await connection.quit();
  }
}

/**
 * Opens a copy's page, waits until the SPA has rendered that job, selects `tab` and returns
 * the text of its panel once `expected` shows in it.
 */
async function tabText(
  page: Page,
  example: Example,
  twin: string,
  jobId: string,
  tab: 'Logs' | 'Error',
  expected: string,
): Promise<string> {
  await page.goto(jobUrl(example.board, `push-${twin}`, jobId));
  await page.getByText(jobId, { exact: true }).first().waitFor();
  await page.getByRole('tab', { name: tab, exact: true }).click();
  const panel = page.getByRole('tabpanel');
  await panel.getByText(expected).waitFor();
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator; rendered text is what a user sees
  return panel.innerText();
}

interface Copy {
  state: string;
  returnvalue: { sentBy: string; fence: number } | undefined;
  failedReason: string | undefined;
}

/** What BullMQ holds for a job's copy on each twin. */
async function copies(example: Example, id: string): Promise<Record<string, Copy>> {
  const entries = await Promise.all(
    TWINS.map(async (twin) => {
      const queue = example.queue.queue(twin);
      const state = await queue.getJobState(id);
      const job = await queue.getJob(id);
      return [twin, { state, returnvalue: job?.returnvalue, failedReason: job?.failedReason }];
    }),
  );
  return Object.fromEntries(entries);
}

const other = (twin: string): string => (twin === 'eu' ? 'us' : 'eu');

describe('Bull Board example', () => {
  it(
    "shows 'executed on' on the executor twin's job page and 'completed by twin' on the other",
    async () => {
      await withBoard(async (example, page) => {
        expect(example.ids.notifications).toHaveLength(3);
        for (const id of example.ids.notifications) {
          const byTwin = await copies(example, id);
          expect(byTwin.eu?.state).toBe('completed');
          expect(byTwin.us?.state).toBe('completed');
          // The shadow completed with the executor's result: both copies name the same run.
          expect(byTwin.us?.returnvalue).toEqual(byTwin.eu?.returnvalue);
          const executor = byTwin.eu?.returnvalue?.sentBy ?? '<none>';
          expect(TWINS).toContain(executor);
          const fence = byTwin.eu?.returnvalue?.fence;
          expect(fence).toEqual(firstRunFence);
          const shadow = other(executor);

          const executed = `bullmq-paired: executed on ${executor} (fence ${fence})`;
          expect(await tabText(page, example, executor, id, 'Logs', executed)).toContain(executed);

          const completed = `bullmq-paired: completed by twin ${executor} (fence ${fence}); not run on ${shadow}`;
          const shadowLogs = await tabText(page, example, shadow, id, 'Logs', completed);
          expect(shadowLogs).toContain(completed);
          expect(shadowLogs).not.toContain('executed on');
        }
      });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'shows the takeover on the twin that took over, and the failure on the twin that failed',
    async () => {
      await withBoard(async (example, page) => {
        const id = example.ids.flaky;
        const byTwin = await copies(example, id);
        const failedTwin = TWINS.find((twin) => byTwin[twin]?.state === 'failed') ?? '<none>';
        const taker = other(failedTwin);
        expect(TWINS).toContain(failedTwin);
        expect(byTwin[taker]?.state).toBe('completed');
        expect(byTwin[taker]?.returnvalue).toEqual({ sentBy: taker, fence: clockFence });

        const fence = byTwin[taker]?.returnvalue?.fence;
        const takeover = `bullmq-paired: executed on ${taker} (fence ${fence}, took over: failed)`;
        expect(await tabText(page, example, taker, id, 'Logs', takeover)).toContain(takeover);

        const reason = `push gateway timed out on ${failedTwin}`;
        expect(byTwin[failedTwin]?.failedReason).toBe(reason);
        expect(await tabText(page, example, failedTwin, id, 'Error', reason)).toContain(reason);
      });
    },
    TEST_TIMEOUT_MS,
  );

  it('fails, naming apt-get install chromium, when there is no Chromium', async () => {
    await expect(launchChromium('/nonexistent/chromium')).rejects.toThrow(
      /apt-get install chromium/,
    );
  });
});
