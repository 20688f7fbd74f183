import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { PairedProcessor } from '../../src/index.js';
import { clockFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { inProcessTwins } from './in-process-twins.js';

const redis = useRedis();
const SECRET_DATA = 'device-token-7f3a';
const SECRET_RESULT = 'receipt-99b1';

/** A real pino logger writing JSON lines into an array. */
function capturingPino() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

describe('logger option', () => {
  it('logs every paired decision to a pino logger with ids and fences, never job data or results', async () => {
    const { logger, lines } = capturingPino();
    let failedOnce = false;
    const twins = inProcessTwins(redis(), {
      // The first run fails wherever it lands: the twin takes over, so both twins log.
      run: () => async () => {
        if (!failedOnce) {
          failedOnce = true;
          throw new Error('first run fails');
        }
        return { receipt: SECRET_RESULT };
      },
      options: () => ({ logger }),
    });
    try {
      twins.start();
      const { id } = await twins.queue.add('push', { token: SECRET_DATA });
      await expect
        .poll(() => lines.filter((l) => l.jobId === id && l.msg === 'bullmq-paired: executed'), {
          timeout: 20_000,
        })
        .toHaveLength(1);
      const mine = lines.filter((l) => l.jobId === id);
      const messages = mine.map((l) => l.msg);
      expect(messages).toContain('bullmq-paired: taking over');
      const takeover = mine.find((l) => l.msg === 'bullmq-paired: taking over');
      expect(takeover).toMatchObject({
        level: 30,
        reason: 'failed',
        fence: clockFence,
        queue: expect.any(String),
      });
      const executed = mine.find((l) => l.msg === 'bullmq-paired: executed');
      expect(executed).toMatchObject({ level: 20, fence: clockFence, takeover: 'failed' });
      const everything = JSON.stringify(lines);
      expect(everything).not.toContain(SECRET_DATA);
      expect(everything).not.toContain(SECRET_RESULT);
    } finally {
      await twins.close();
    }
  });

  it('is silent by default and rejects something that is not a logger', () => {
    const lockConnection = redis().connect();
    const paired = new PairedProcessor(async () => 1, { twin: 'eu', lockConnection });
    expect(paired.options.logger.info).toBeTypeOf('function');
    expect(
      () =>
        new PairedProcessor(async () => 1, {
          twin: 'eu',
          lockConnection,
          logger: console.log as never,
        }),
    ).toThrow(/option "logger" must be an object with debug, info, warn and error methods/);
    expect(
      () =>
        new PairedProcessor(async () => 1, {
          twin: 'eu',
          lockConnection,
          logger: { info() {} } as never,
        }),
    ).toThrow(/option "logger" must be a logger with debug, warn, error method\(s\)/);
    return paired.close();
  });
});
