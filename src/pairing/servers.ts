import {
  type BackendFactory,
  type ConnectionOptions,
  createPostgresBackend,
  createRedisBackend,
  getDefaultBackendFactory,
} from 'bullmq';
import { redisIdentity, urlParts } from './connection.js';

/** Where a twin's queue lives: its connection, and BullMQ's backend factory when not Redis. */
export interface Placed {
  connection: unknown;
  // biome-ignore lint/suspicious/noExplicitAny: BullMQ's factories differ in backend and options types
  backend?: BackendFactory<any, any> | undefined;
}

/**
 * host:port/database/schema of a PostgreSQL connection as BullMQ's `createPostgresBackend`
 * takes it (a connection string, or a pool config with `connectionString` or
 * host/port/database, and `schema`); undefined for a `pg.Pool` (told apart by identity only).
 */
function postgresIdentity(connection: unknown): string | undefined {
  const config =
    typeof connection === 'string'
      ? { connectionString: connection }
      : (connection as {
          connectionString?: string;
          host?: string;
          port?: number;
          database?: string;
          schema?: string;
          query?: unknown;
        } | null);
  if (config === null || typeof config !== 'object' || typeof config.query === 'function') {
    return undefined;
  }
  let { host, port, database } = config;
  if (typeof config.connectionString === 'string') {
    const parts = urlParts(config.connectionString);
    if (parts === undefined) return undefined;
    host = parts.host ?? host;
    port = parts.port ?? port;
    if (parts.path !== '') database = parts.path;
  }
  return `${host ?? 'localhost'}:${port ?? 5432}/${database ?? ''}/${config.schema ?? 'bullmq'}`;
}

/**
 * Where `placed` lives, as a comparable string; undefined when it cannot be told (another
 * backend than Redis or PostgreSQL: told apart by its connection object only). `backend` is
 * undefined for Redis (see `resolveBackend`).
 */
function identity(placed: Placed): string | undefined {
  if (placed.backend === undefined) {
    const id = redisIdentity(placed.connection as ConnectionOptions);
    return id === undefined ? undefined : `redis:${id}`;
  }
  if (placed.backend !== createPostgresBackend) return undefined;
  const id = postgresIdentity(placed.connection);
  return id === undefined ? undefined : `postgres:${id}`;
}

/** Whether two twins' queues live on one server (the same connection object, or the same address). */
export function sameServer(a: Placed, b: Placed): boolean {
  if (a.backend !== b.backend) return false;
  if (a.connection === b.connection) return true;
  const id = identity(a);
  return id !== undefined && id === identity(b);
}

/**
 * The backend factory a twin's queue really uses, undefined for Redis: the one given, else
 * BullMQ's process-wide default (`setDefaultBackendFactory`), with BullMQ's Redis factory
 * (given or default) as undefined, so that Redis connections are read as Redis ones.
 */
// biome-ignore lint/suspicious/noExplicitAny: BullMQ's factories differ in backend and options types
export function resolveBackend(given: BackendFactory<any, any> | undefined): Placed['backend'] {
  const backend = given ?? getDefaultBackendFactory();
  return backend === createRedisBackend ? undefined : backend;
}
