import { describe, expect, it } from 'vitest';
import { RedisUnavailableError, startRedis } from './redis.js';

describe('test Redis discovery', () => {
  it('starts a private killable redis-server that survives kill and restart with AOF', async () => {
    const redis = await startRedis({ killable: true, persistence: true });
    try {
      expect(redis.source).toBe('binary');
      expect(redis.port).not.toBe(6379);
      const client = redis.connect();
      await client.set('k', 'v');
      await redis.kill();
      await expect(
        redis.connect({ maxRetriesPerRequest: 0, retryStrategy: () => null }).ping(),
      ).rejects.toThrow();
      await redis.restart();
      expect(await client.get('k')).toBe('v');
    } finally {
      await redis.stop();
    }
  });

  it('names every way to get Redis when none is found', async () => {
    const error = await startRedis({ env: { PATH: '/nonexistent' } }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(RedisUnavailableError);
    const message = (error as Error).message;
    expect(message).toMatch(/set REDIS_URL/);
    expect(message).toMatch(/install redis-server/);
    expect(message).toMatch(/start Docker for @testcontainers\/redis/);
    expect(message).toMatch(/no redis-server on PATH/);
    expect(message).toMatch(/^no Redis found for the tests \(npm test\)\. To fix: /);
  });

  it("names the caller's purpose, and leaves REDIS_URL out when the caller must kill its Redis", async () => {
    const error = await startRedis({
      env: { PATH: '/nonexistent', REDIS_URL: 'redis://127.0.0.1:1' },
      killable: true,
      purpose: 'the demo (npm run demo)',
    }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(RedisUnavailableError);
    const message = (error as Error).message;
    expect(message).toMatch(
      /^no Redis found for the demo \(npm run demo\)\. To fix: install redis-server/,
    );
    expect(message).not.toMatch(/set REDIS_URL/);
    expect(message).toMatch(/REDIS_URL is set, but this caller must kill and restart its Redis/);
  });

  it('uses REDIS_URL without starting anything unless the caller must kill it', async () => {
    const own = await startRedis({ killable: true });
    try {
      const shared = await startRedis({ env: { ...process.env, REDIS_URL: own.url } });
      expect(shared.source).toBe('env');
      expect(shared.port).toBe(own.port);
      await expect(shared.kill()).rejects.toThrow(/killable/);
      await shared.stop();
    } finally {
      await own.stop();
    }
  });
});
