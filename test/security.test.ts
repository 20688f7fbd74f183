import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { useRedis } from './support/file-redis.js';
import { pairedRoundTrip } from './support/round-trip.js';

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

    await pairedRoundTrip(limited);
    await expect(limited().get('other:key')).rejects.toThrow(/NOPERM/);
  });
});
