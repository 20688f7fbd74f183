import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { PairedLock, PairedProcessor, PairedQueue } from '../src/index.js';
import { useRedis } from './support/file-redis.js';
import { uniquePrefix } from './support/redis.js';

// A self-signed certificate for 127.0.0.1, made before the file's Redis starts.
const dir = mkdtempSync(join(tmpdir(), 'paired-tls-'));
const [certFile, keyFile] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
const made = spawnSync('openssl', [
  'req',
  '-x509',
  '-newkey',
  'rsa:2048',
  '-nodes',
  '-days',
  '1',
  '-subj',
  '/CN=localhost',
  '-addext',
  'subjectAltName=IP:127.0.0.1,DNS:localhost',
  '-keyout',
  keyFile,
  '-out',
  certFile,
]);
if (made.status !== 0)
  throw new Error(
    `openssl could not make a test certificate (apt-get install -y openssl): ${made.stderr}`,
  );
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const redis = useRedis({ tls: { certFile, keyFile } });

describe('over TLS (rediss://, self-signed certificate)', () => {
  it('runs PairedLock and paired BullMQ workers', async () => {
    expect(redis().url).toMatch(/^rediss:\/\//);
    const [eu, us] = [
      new PairedLock(redis().connect(), { member: 'eu' }),
      new PairedLock(redis().connect(), { member: 'us' }),
    ];
    const id = `tls-${uniquePrefix()}`;
    const outcomes = await Promise.all([eu.run(id, () => 'ok'), us.run(id, () => 'ok')]);
    expect(outcomes.map((o) => o.role).sort()).toEqual(['executor', 'shadow']);
    await Promise.all([eu.close(), us.close()]);

    const base = uniquePrefix('tls');
    const connection = redis().connect();
    const queue = new PairedQueue(base, {
      twins: { a: { connection, queue: `${base}-a` }, b: { connection, queue: `${base}-b` } },
    });
    const workers = ['a', 'b'].map((twin) => {
      const paired = new PairedProcessor(async () => 'sent', {
        twin,
        lockConnection: redis().connect(),
        group: base,
      });
      const worker = new Worker(`${base}-${twin}`, paired.processor, {
        connection: redis().connect(),
      });
      paired.attach(worker);
      return { worker, paired };
    });
    try {
      const { id: jobId } = await queue.add('push', {});
      for (const twin of ['a', 'b']) {
        await expect
          .poll(() => queue.queue(twin).getJobState(jobId), { timeout: 10_000, interval: 50 })
          .toBe('completed');
      }
    } finally {
      for (const { worker, paired } of workers) {
        await worker.close();
        await paired.close();
      }
      await queue.close();
    }
  });
});
