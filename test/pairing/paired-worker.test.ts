import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PairedQueue, PairedWorker } from '../../src/index.js';
import { useClosers } from '../support/closers.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';
import { copiesIn } from './pairing-kit.js';

const redis = useRedis();
const closers = useClosers();

describe('PairedWorker', () => {
  it('pairs a sandboxed (file) processor: one run, both copies completed with its result', async () => {
    const base = uniquePrefix('sandbox');
    const file = fileURLToPath(new URL('../fixtures/sandboxed-processor.mjs', import.meta.url));
    const counts = { executed: 0, twinCompleted: 0 };
    for (const twin of ['eu', 'us'] as const) {
      const worker = new PairedWorker(`${base}-${twin}`, file, {
        connection: redis().connect(),
        paired: { twin, lockConnection: redis().connect(), group: base },
      });
      worker.on('error', () => {});
      worker.paired.on('executed', () => counts.executed++);
      worker.paired.on('twinCompleted', () => counts.twinCompleted++);
      closers.push(() => worker.close());
    }
    const connection = { host: redis().host, port: redis().port };
    const queue = new PairedQueue(base, {
      twins: { eu: { connection, queue: `${base}-eu` }, us: { connection, queue: `${base}-us` } },
    });
    closers.push(() => queue.close());
    const { id } = await queue.add('push', { ms: 200, echo: 'hi' });
    const jobs = await copiesIn(queue as never, id);
    expect(jobs.eu.returnvalue).toMatchObject({ echo: 'hi' });
    expect(jobs.us.returnvalue).toEqual(jobs.eu.returnvalue);
    expect((jobs.eu.returnvalue as unknown as { sandboxPid: number }).sandboxPid).not.toBe(
      process.pid,
    );
    expect(counts).toEqual({ executed: 1, twinCompleted: 1 });
  });

  it('refuses bad pairing options before the Worker opens a connection', () => {
    const connection = { host: redis().host, port: redis().port };
    expect(
      () =>
        new PairedWorker(uniquePrefix('bad'), async () => 1, {
          connection,
          paired: { twin: 'eu:1', lockConnection: redis().connect() },
        }),
    ).toThrow(/PairedProcessor: option "twin" must be free of ":"/);
    // The leak check after each test fails if the refused Worker left a connection open.
  });
});
