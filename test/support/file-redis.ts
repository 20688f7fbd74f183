import { afterAll, afterEach, beforeAll } from 'vitest';
import { type StartRedisOptions, startRedis, type TestRedis } from './redis.js';

/**
 * Starts one Redis for the calling test file and stops it after the file's last test;
 * clients made with connect() are closed after each test.
 */
export function useRedis(options: StartRedisOptions = {}): () => TestRedis {
  let redis: TestRedis | undefined;
  beforeAll(async () => {
    redis = await startRedis(options);
  });
  afterEach(async () => {
    await redis?.closeClients();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  return () => {
    if (redis === undefined)
      throw new Error('useRedis(): Redis is not started yet (use it inside a test)');
    return redis;
  };
}
