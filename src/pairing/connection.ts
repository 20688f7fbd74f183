import type { ConnectionOptions } from 'bullmq';

/**
 * An ioredis `Redis` or `Cluster` instance (or BullMQ's proxy of one), told apart by shape:
 * node-redis, Bun's client and BullMQ's other adapters have no `evalsha` (node-redis spells it
 * `evalSha`), no `defineCommand` and no `status` string. Not `instanceof`: the application
 * may load another copy of ioredis than this package does.
 */
function isIoredisClient(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.options === 'object' &&
    v.options !== null &&
    typeof v.status === 'string' &&
    typeof v.duplicate === 'function' &&
    typeof v.evalsha === 'function' &&
    typeof v.defineCommand === 'function'
  );
}

/** Anything that is a client of some driver rather than an options object. */
function looksLikeClient(value: object): boolean {
  const v = value as Record<string, unknown>;
  return ['connect', 'duplicate', 'disconnect', 'sendCommand', 'send', 'runCommand'].some(
    (name) => typeof v[name] === 'function',
  );
}

/**
 * Why `connection` cannot be a twin's connection, or undefined when it can: ioredis options
 * (as BullMQ takes them, `url` included) or an ioredis instance. Other drivers are refused
 * because PairedQueue must tell whether two connections reach the same Redis (both copies
 * in one MULTI) or two (high availability), and reads that from ioredis' options: a
 * node-redis client would look like localhost:6379 and both copies would land on one server.
 */
export function connectionProblem(connection: unknown): string | undefined {
  if (typeof connection !== 'object' || connection === null) return 'not an object';
  if (isIoredisClient(connection)) return undefined;
  if (looksLikeClient(connection)) return 'a client of another Redis driver (node-redis, Bun…)';
  if ('socket' in connection) {
    // createClient({ socket: { host, port } }) is node-redis; ioredis ignores `socket` and
    // would connect to localhost.
    return 'node-redis client options ({ socket })';
  }
  return undefined;
}

export const CONNECTION_EXPECTED = 'ioredis options or an ioredis Redis/Cluster instance';

/**
 * host:port/db (or the socket path) a connection reaches, read from ioredis options or an
 * ioredis client's options; undefined for a Cluster or when it cannot be told.
 */
function redisIdentity(connection: ConnectionOptions): string | undefined {
  if ((connection as { isCluster?: boolean }).isCluster) return undefined;
  const options = isIoredisClient(connection)
    ? (connection as { options: unknown }).options
    : connection;
  if (typeof options !== 'object' || options === null) return undefined;
  const o = options as { host?: string; port?: number; db?: number; path?: string; url?: string };
  let { host, port, db, path } = o;
  if (typeof o.url === 'string') {
    // BullMQ opens `new Redis(url, rest)`: the URL's parts win over the other options.
    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      return undefined; // e.g. a socket path: cannot be compared
    }
    if (url.hostname !== '') host = url.hostname;
    if (url.port !== '') port = Number(url.port);
    const dbPart = url.pathname.replace(/^\//, '');
    if (/^\d+$/.test(dbPart)) db = Number(dbPart);
    const dbParam = url.searchParams.get('db');
    if (dbParam !== null && /^\d+$/.test(dbParam)) db = Number(dbParam);
  }
  return path ?? `${host ?? 'localhost'}:${port ?? 6379}/${db ?? 0}`;
}

export function sameRedis(a: ConnectionOptions, b: ConnectionOptions): boolean {
  const id = redisIdentity(a);
  return a === b || (id !== undefined && id === redisIdentity(b));
}
