import { readFileSync } from 'node:fs';
import { Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { PairedLock, PairedProcessor, PairedQueue } from '../src/index.js';
import { useRedis } from './support/file-redis.js';
import { uniquePrefix } from './support/redis.js';

// ACLs are server-wide: this needs a private server even when REDIS_URL is set.
const redis = useRedis({ killable: true });
const PASSWORD = 'test-secret';

/** The ACL line exactly as the README documents it. */
function readmeAclArgs(): string[] {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const line = readme.split('\n').find((l) => l.startsWith('ACL SETUSER paired '));
  if (line === undefined) throw new Error('README has no "ACL SETUSER paired" line');
  return line.replace('>PASSWORD', `>${PASSWORD}`).split(/\s+/).slice(2);
}

describe('a Redis user limited to the documented ACL', () => {
  it('runs PairedLock and paired BullMQ workers, and can touch nothing else', async () => {
    await redis()
      .connect()
      .call('ACL', 'SETUSER', ...readmeAclArgs());
    const limited = () => redis().connect({ username: 'paired', password: PASSWORD });

    const [eu, us] = [
      new PairedLock(limited(), { member: 'eu' }),
      new PairedLock(limited(), { member: 'us' }),
    ];
    const id = `acl-${uniquePrefix()}`;
    const [a, b] = await Promise.all([eu.run(id, () => 'ok'), us.run(id, () => 'ok')]);
    expect([a.role, b.role].sort()).toEqual(['executor', 'shadow']);
    await Promise.all([eu.close(), us.close()]);

    const base = uniquePrefix('acl');
    const connection = limited();
    const queue = new PairedQueue(base, {
      twins: { a: { connection, queue: `${base}-a` }, b: { connection, queue: `${base}-b` } },
    });
    const workers = ['a', 'b'].map((twin) => {
      const paired = new PairedProcessor(async () => ({ sent: true }), {
        twin,
        lockConnection: limited(),
        group: base,
      });
      const worker = new Worker(`${base}-${twin}`, paired.processor, { connection: limited() });
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
      await expect(limited().get('other:key')).rejects.toThrow(/NOPERM/);
    } finally {
      for (const { worker, paired } of workers) {
        await worker.close();
        await paired.close();
      }
      await queue.close();
    }
  });
});
