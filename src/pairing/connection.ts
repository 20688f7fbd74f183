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

/**
 * A node-redis (`redis` / `@redis/client`) client: BullMQ 6 adapts it itself (it spells its
 * commands `sendCommand`, and keeps `isOpen`/`isReady` and the options it was made with).
 */
function isNodeRedisClient(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.sendCommand === 'function' &&
    typeof v.isOpen === 'boolean' &&
    typeof v.duplicate === 'function'
  );
}

/**
 * A BullMQ client adapter (`IRedisClient`: what `createValkeyGlideClient` and
 * `createNodeRedisClient` from bullmq return): BullMQ runs its scripts through `runCommand`.
 */
function isBullmqAdapter(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.runCommand === 'function' && typeof v.defineCommand === 'function';
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
 * (as BullMQ takes them, `url` included), an ioredis instance or a node-redis client. Other
 * drivers are refused because PairedQueue must tell whether two connections reach the same
 * Redis (both copies in one MULTI) or two (high availability), and reads that from the
 * client's options: a client it cannot read would look like localhost:6379.
 */
export function connectionProblem(connection: unknown): string | undefined {
  if (typeof connection !== 'object' || connection === null) return 'not an object';
  if (isIoredisClient(connection) || isNodeRedisClient(connection)) return undefined;
  if (isBullmqAdapter(connection)) {
    if ((connection as { isCluster?: boolean }).isCluster === true) return undefined;
    if (adapterIdentity(connection) !== undefined) return undefined;
    return "a BullMQ client adapter whose options do not name its server (Valkey GLIDE's addresses, node-redis's socket or url)";
  }
  if (looksLikeClient(connection)) return 'a client of another Redis driver (Bun…)';
  if ('socket' in connection) {
    // createClient({ socket: { host, port } }) options are node-redis's; BullMQ would read
    // them as ioredis options, which ignore `socket`, and connect to localhost.
    return 'node-redis client options ({ socket }): pass the client, createClient(options)';
  }
  return undefined;
}

export const CONNECTION_EXPECTED =
  "ioredis options, an ioredis Redis/Cluster instance, a node-redis client (createClient) or a Valkey GLIDE client wrapped by bullmq's createValkeyGlideClient";

/** A server URL's host, port and path (its leading '/' off); undefined when it is no URL. */
export function urlParts(
  text: string,
): { host?: string; port?: number; path: string; params: URLSearchParams } | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined; // e.g. a socket path: cannot be compared
  }
  return {
    ...(url.hostname === '' ? {} : { host: url.hostname }),
    ...(url.port === '' ? {} : { port: Number(url.port) }),
    path: decodeURIComponent(url.pathname.replace(/^\//, '')),
    params: url.searchParams,
  };
}

/** A Redis db number written in a URL's path or `db` parameter, else `fallback`. */
function urlDb(parts: { path: string; params: URLSearchParams }, fallback?: number) {
  const param = parts.params.get('db');
  if (param !== null && /^\d+$/.test(param)) return Number(param);
  return /^\d+$/.test(parts.path) ? Number(parts.path) : fallback;
}

/** host:port/db (or socket path) of a node-redis client, from the options it was made with. */
function nodeRedisIdentity(client: object): string | undefined {
  const o = (client as { options?: unknown }).options as
    | { url?: string; socket?: { host?: string; port?: number; path?: string }; database?: number }
    | undefined;
  if (o === undefined) return undefined;
  let { host, port, path } = o.socket ?? {};
  let db = o.database;
  if (typeof o.url === 'string' && host === undefined && path === undefined) {
    const parts = urlParts(o.url);
    if (parts === undefined) return undefined;
    host = parts.host ?? host;
    port = parts.port ?? port;
    db ??= urlDb({ path: parts.path, params: new URLSearchParams() });
  }
  return path ?? `${host ?? 'localhost'}:${port ?? 6379}/${db ?? 0}`;
}

/**
 * The server of a BullMQ adapter that is not ioredis's: a Valkey GLIDE client's one address
 * and `databaseId` (its config), or a node-redis client's socket or url.
 */
function adapterIdentity(adapter: object): string | undefined {
  const o = (adapter as { options?: unknown }).options;
  if (typeof o !== 'object' || o === null) return undefined;
  const glide = o as { addresses?: { host?: string; port?: number }[]; databaseId?: number };
  if (Array.isArray(glide.addresses)) {
    const [only] = glide.addresses;
    // Several addresses are several servers (a cluster's seeds): not one identity.
    if (glide.addresses.length !== 1 || only === undefined) return undefined;
    return `${only.host ?? 'localhost'}:${only.port ?? 6379}/${glide.databaseId ?? 0}`;
  }
  if ('socket' in o || 'url' in o) return nodeRedisIdentity(adapter);
  return undefined;
}

/**
 * host:port/db (or the socket path) a connection reaches, read from ioredis options or an
 * ioredis, node-redis or GLIDE client's options; undefined for a Cluster or when it cannot be
 * told.
 */
export function redisIdentity(connection: ConnectionOptions): string | undefined {
  if ((connection as { isCluster?: boolean }).isCluster) return undefined;
  if (isNodeRedisClient(connection)) return nodeRedisIdentity(connection);
  if (isBullmqAdapter(connection) && !isIoredisClient(connection)) {
    return adapterIdentity(connection);
  }
  const options = isIoredisClient(connection)
    ? (connection as { options: unknown }).options
    : connection;
  if (typeof options !== 'object' || options === null) return undefined;
  const o = options as { host?: string; port?: number; db?: number; path?: string; url?: string };
  let { host, port, db, path } = o;
  if (typeof o.url === 'string') {
    // BullMQ opens `new Redis(url, rest)`: the URL's parts win over the other options.
    const parts = urlParts(o.url);
    if (parts === undefined) return undefined;
    host = parts.host ?? host;
    port = parts.port ?? port;
    db = urlDb(parts, db);
  }
  return path ?? `${host ?? 'localhost'}:${port ?? 6379}/${db ?? 0}`;
}
