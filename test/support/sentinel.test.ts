import { describe, expect, it } from 'vitest';
import { startSentinel } from './sentinel.js';

describe('test Sentinel deployment', () => {
  it('fails over when the primary is killed, and the client follows the new primary', async () => {
    const sentinel = await startSentinel();
    try {
      const [first, second] = sentinel.servers;
      expect(await sentinel.primaryAddress()).toMatchObject({ port: first?.port });
      const client = sentinel.connect();
      await client.set('k', 'v');
      expect(await client.wait(1, 1_000)).toBe(1);

      const old = await sentinel.primaryAddress();
      await sentinel.kill(sentinel.server(old));
      const promoted = await sentinel.waitForFailover(old);
      expect(promoted.port).toBe(second?.port);
      expect(await client.get('k')).toBe('v'); // replicated, then promoted with it
      await client.set('k', 'after');

      // The old primary comes back empty and rejoins as a replica of the new one.
      await first?.restart();
      await sentinel.rejoin(first as never);
      await sentinel.waitForReplica(first as never);
      expect(await client.wait(1, 1_000)).toBe(1);
    } finally {
      await sentinel.stop();
    }
  });
});
