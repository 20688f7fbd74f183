import { afterAll, beforeAll } from 'vitest';
import { startPostgres, type TestPostgres } from './postgres.js';

/** Starts one private PostgreSQL for the calling test file and stops it after its last test. */
export function usePostgres(): () => TestPostgres {
  let postgres: TestPostgres | undefined;
  beforeAll(async () => {
    postgres = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await postgres?.stop();
  });
  return () => {
    if (postgres === undefined) {
      throw new Error('usePostgres(): PostgreSQL is not started yet (use it inside a test)');
    }
    return postgres;
  };
}
