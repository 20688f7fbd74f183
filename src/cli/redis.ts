import { Cluster, Redis } from 'ioredis';
import { CliError, EXIT } from './exit-codes.js';

/** A Redis Cluster named by URL: `redis+cluster://[user:password@]host:port[,host:port…]`. */
export interface ClusterUrl {
  tls: boolean;
  username: string | undefined;
  password: string | undefined;
  nodes: { host: string; port: number }[];
}

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^@/]+)\/?$/;

/** The seeds of a `redis+cluster://` URL; undefined for any other URL (or a malformed one). */
export function parseClusterUrl(url: string): ClusterUrl | undefined {
  const match = CLUSTER_URL.exec(url);
  if (match === null) return undefined;
  const [, scheme, user, password, hosts] = match;
  const nodes = (hosts ?? '').split(',').map((node) => {
    const colon = node.lastIndexOf(':');
    const host = colon < 0 ? node : node.slice(0, colon);
    const port = colon < 0 ? 6379 : Number(node.slice(colon + 1));
    return { host, port };
  });
  if (
    nodes.some((n) => n.host === '' || !Number.isInteger(n.port) || n.port < 1 || n.port > 65_535)
  ) {
    return undefined;
  }
  const decode = (text: string | undefined) =>
    text === undefined || text === '' ? undefined : decodeURIComponent(text);
  return { tls: scheme === 'rediss', username: decode(user), password: decode(password), nodes };
}

/** The URL as safe to print: the password, if any, replaced by `***`. */
export function redactUrl(url: string): string {
  if (/^rediss?\+cluster:/.test(url)) return url.replace(/(\/\/[^:@/]*:)[^@/]*@/, '$1***@');
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparsable URL>';
  }
}

/**
 * Errors that mean "this Redis cannot be used as given": not reachable, too slow, or it
 * refused our credentials or a command under its ACL. Anything else is a real failure.
 */
const UNAVAILABLE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EPIPE|Connection is closed|Command timed out|no answer within|Stream isn't writeable|NOAUTH|WRONGPASS|NOPERM|LOADING/;

export function isUnavailable(err: unknown): boolean {
  return (
    err instanceof Error && UNAVAILABLE.test(`${err.message} ${String(Reflect.get(err, 'code'))}`)
  );
}

export function unavailable(url: string, err: unknown, what = 'Redis'): CliError {
  const reason = err instanceof Error ? err.message : String(err);
  return new CliError(`cannot use ${what} at ${redactUrl(url)}: ${reason}`, EXIT.redisUnavailable);
}

/**
 * ioredis' disconnect() on a connection that has already ended arms a 2 s timer that
 * nothing clears (the socket's 'close' came before), holding the process open for 2 s.
 */
function hangUp(client: Redis | Cluster): void {
  if (client.status !== 'end') client.disconnect();
}

/**
 * One client per distinct URL, connected on first use. A CLI must answer or fail within
 * seconds: no reconnects, no retries, a deadline on the connect and on every command.
 */
export class RedisPool {
  private readonly clients = new Map<string, Promise<Redis | Cluster>>();

  constructor(readonly timeoutMs: number) {}

  get(url: string): Promise<Redis | Cluster> {
    let client = this.clients.get(url);
    if (client === undefined) {
      client = this.connect(url);
      this.clients.set(url, client);
    }
    return client;
  }

  /** Runs `fn` on the client for `url`; connection trouble becomes exit code 3 naming the URL. */
  async use<T>(url: string, fn: (client: Redis | Cluster) => Promise<T>): Promise<T> {
    const client = await this.get(url);
    try {
      return await fn(client);
    } catch (err) {
      throw isUnavailable(err) ? unavailable(url, err) : err;
    }
  }

  async close(): Promise<void> {
    const settled = await Promise.allSettled(this.clients.values());
    this.clients.clear();
    await Promise.all(
      settled.map(async (result) => {
        if (result.status !== 'fulfilled') return;
        const client = result.value;
        try {
          if (client.status === 'ready') await client.quit();
        } catch {
          // disconnect below
        }
        hangUp(client);
      }),
    );
  }

  private async connect(url: string): Promise<Redis | Cluster> {
    const once = {
      connectTimeout: this.timeoutMs,
      commandTimeout: this.timeoutMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    };
    const cluster = parseClusterUrl(url);
    const client =
      cluster === undefined
        ? new Redis(url, { lazyConnect: true, ...once })
        : new Cluster(cluster.nodes, {
            lazyConnect: true,
            clusterRetryStrategy: () => null,
            redisOptions: {
              ...once,
              ...(cluster.username === undefined ? {} : { username: cluster.username }),
              ...(cluster.password === undefined ? {} : { password: cluster.password }),
              ...(cluster.tls ? { tls: {} } : {}),
            },
          });
    // ioredis rejects connect() with a bare "Connection is closed": the event has the cause.
    let cause: unknown;
    client.on('error', (err) => {
      cause = err;
    });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
    });
    try {
      await Promise.race([client.connect(), deadline]);
      return client;
    } catch (err) {
      hangUp(client);
      throw unavailable(url, cause ?? err);
    } finally {
      clearTimeout(timer);
    }
  }
}
