import { createPostgresBackend, createRedisBackend, setDefaultBackendFactory } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveBackend, sameServer } from '../../src/pairing/servers.js';
import { resolveTwins } from '../../src/pairing/twins.js';

afterEach(() => {
  setDefaultBackendFactory(createRedisBackend);
});

describe('which server a twin is on', () => {
  it('reads BullMQ’s Redis factory, given or default, as Redis: two Redis servers stay two', () => {
    const redis = (port: number) => ({
      connection: { host: '10.0.0.1', port },
      backend: resolveBackend(createRedisBackend),
    });
    expect(resolveBackend(createRedisBackend)).toBeUndefined();
    expect(resolveBackend(undefined)).toBeUndefined();
    expect(sameServer(redis(6379), redis(6380))).toBe(false);
    expect(sameServer(redis(6379), redis(6379))).toBe(true);
  });

  it('takes BullMQ’s default factory when none is given (setDefaultBackendFactory(createPostgresBackend))', () => {
    setDefaultBackendFactory(createPostgresBackend);
    const pg = (url: string) => ({
      connection: { connectionString: url },
      backend: resolveBackend(undefined),
    });
    expect(resolveBackend(undefined)).toBe(createPostgresBackend);
    // Before: read as ioredis options, both were localhost:6379, one server.
    expect(sameServer(pg('postgres://eu-db/app'), pg('postgres://us-db/app'))).toBe(false);
    expect(sameServer(pg('postgres://eu-db/app'), pg('postgres://eu-db:5432/app'))).toBe(true);
  });

  it('tells PostgreSQL databases and schemas apart, and never takes Redis for PostgreSQL', () => {
    const pg = (connection: unknown) => ({ connection, backend: createPostgresBackend });
    expect(sameServer(pg('postgres://h/a'), pg('postgres://h/b'))).toBe(false);
    expect(
      sameServer(
        pg({ connectionString: 'postgres://h/a', schema: 'one' }),
        pg({ connectionString: 'postgres://h/a', schema: 'two' }),
      ),
    ).toBe(false);
    expect(sameServer(pg({ host: 'h', database: 'a' }), pg('postgres://h:5432/a'))).toBe(true);
    expect(
      sameServer({ connection: { host: 'h', port: 5432 } }, pg({ host: 'h', port: 5432 })),
    ).toBe(false);
  });

  it('refuses two PostgreSQL twins on one database under one queue name, whatever their prefixes (PostgreSQL keeps none)', () => {
    const twin = (prefix: string) => ({
      connection: { connectionString: 'postgres://h/app' },
      backend: createPostgresBackend,
      prefix,
    });
    const twins = { eu: twin('eu'), us: twin('us') };
    expect(() => resolveTwins('PairedQueue', 'push', Object.entries(twins), twins)).toThrow(
      /different queues: on one server give each twin its own `queue` name/,
    );
  });
});
