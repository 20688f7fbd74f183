/**
 * A Redis Sentinel deployment for failover tests: a primary, one replica and three sentinels
 * (quorum 2), each a private redis-server on a free port, like test/support/redis.ts's.
 *   kill(server):   SIGKILL (restart() it later; rejoin() makes it a replica again).
 *   freeze/resume:  SIGSTOP / SIGCONT: the server keeps its connections open and answers
 *                   nothing meanwhile, as a stalled VM or a long GC pause of the host does.
 *   waitForFailover(old): until the sentinels name a new primary and it answers as one.
 *   connect():      an ioredis client that finds the primary through the sentinels.
 * stop() ends every process and client and removes the temporary directory.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import { BinaryRedis, findBinary, freePort, spawnServer } from './redis.js';

export interface SentinelOptions {
  /** The master name the sentinels monitor. Default 'paired'. */
  name?: string;
  /** `sentinel down-after-milliseconds`. Default 1000. */
  downAfterMs?: number;
  /** `sentinel failover-timeout`. Default 5000. */
  failoverTimeoutMs?: number;
}

export interface Address {
  host: string;
  port: number;
}

export interface TestSentinel {
  readonly name: string;
  /** The data servers: [0] starts as the primary, [1] as its replica. */
  readonly servers: readonly BinaryRedis[];
  /** The three sentinels. */
  readonly sentinels: readonly Address[];
  /** An ioredis client that asks the sentinels for the primary (tracked: stop() closes it). */
  connect(options?: RedisOptions): Redis;
  /** The primary as the sentinels name it now (asks one that answers). */
  primaryAddress(): Promise<Address>;
  /** The data server at `address`. */
  server(address: Address): BinaryRedis;
  kill(server: BinaryRedis): Promise<void>;
  freeze(server: BinaryRedis): void;
  resume(server: BinaryRedis): void;
  /** Waits until every sentinel names a primary other than `old` and it answers as primary. */
  waitForFailover(old: Address, timeoutMs?: number): Promise<BinaryRedis>;
  /** Makes `server` (running, e.g. restarted after kill) a replica of the current primary. */
  rejoin(server: BinaryRedis): Promise<void>;
  /** Waits until `server` replicates the current primary with its link up. */
  waitForReplica(server: BinaryRedis, timeoutMs?: number): Promise<void>;
  /** Close the clients connect() made. */
  closeClients(): Promise<void>;
  stop(): Promise<void>;
}

/** Polls `check` every 100 ms until it returns a value other than undefined. */
async function poll<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`sentinel harness: timed out after ${timeoutMs} ms waiting ${what}`, {
        cause: last,
      });
    }
    await sleep(100);
  }
}

/** One command on a short-lived direct connection that never retries. */
async function ask(address: Address, ...args: (string | number)[]): Promise<unknown> {
  const client = new Redis({
    host: address.host,
    port: address.port,
    lazyConnect: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
    commandTimeout: 1_000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.call(String(args[0]), ...args.slice(1));
  } finally {
    client.disconnect();
  }
}

function infoField(info: unknown, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(String(info))?.[1]?.trim();
}

/** `SENTINEL replicas|sentinels` entries, as objects. */
function entries(reply: unknown): Record<string, string>[] {
  return (reply as string[][]).map((flat) => {
    const entry: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) entry[flat[i] as string] = flat[i + 1] as string;
    return entry;
  });
}

export async function startSentinel(options: SentinelOptions = {}): Promise<TestSentinel> {
  const binary = findBinary();
  if (binary === undefined) throw new Error('sentinel tests need redis-server on PATH');
  const name = options.name ?? 'paired';
  const dir = mkdtempSync(join(tmpdir(), 'paired-sentinel-'));
  const servers: BinaryRedis[] = [];
  const sentinelProcesses: ChildProcess[] = [];
  const sentinels: Address[] = [];
  const clients = new Set<Redis>();
  // A full sync must not wait for more replicas to join (Redis 7's default is 5 s).
  const serverArgs = ['--repl-diskless-sync-delay', '0'];

  const stop = async (): Promise<void> => {
    await closeClients();
    for (const child of sentinelProcesses) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    for (const server of servers) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };

  const closeClients = async (): Promise<void> => {
    await Promise.all(
      [...clients].map(async (client) => {
        try {
          if (client.status === 'ready') await client.quit();
        } catch {
          // fall through to disconnect
        }
        client.disconnect();
      }),
    );
    clients.clear();
  };

  try {
    const primary = new BinaryRedis(binary, await freePort(), false, serverArgs);
    servers.push(primary);
    await primary.launch();
    const replica = new BinaryRedis(binary, await freePort(), false, [
      ...serverArgs,
      '--replicaof',
      primary.host,
      String(primary.port),
    ]);
    servers.push(replica);
    await replica.launch();

    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${i}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          'sentinel resolve-hostnames yes',
          `sentinel monitor ${name} ${primary.host} ${primary.port} 2`,
          `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1_000}`,
          `sentinel failover-timeout ${name} ${options.failoverTimeoutMs ?? 5_000}`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      const started = spawnServer(binary, [conf, '--sentinel'], '+monitor master');
      sentinelProcesses.push(started.child);
      await started.ready;
      sentinels.push({ host: '127.0.0.1', port });
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const serverAt = (address: Address): BinaryRedis => {
    const found = servers.find((s) => s.port === Number(address.port));
    if (found === undefined) throw new Error(`no data server at ${address.host}:${address.port}`);
    return found;
  };

  const masterFrom = async (sentinel: Address): Promise<Address> => {
    const [host, port] = (await ask(sentinel, 'SENTINEL', 'get-master-addr-by-name', name)) as [
      string,
      string,
    ];
    return { host, port: Number(port) };
  };

  const waitForReplica = async (server: BinaryRedis, timeoutMs = 20_000): Promise<void> => {
    await poll(`for ${server.port} to replicate the primary`, timeoutMs, async () => {
      const primary = await masterFrom(sentinels[0] as Address);
      const info = await ask(server, 'INFO', 'replication');
      return infoField(info, 'role') === 'slave' &&
        Number(infoField(info, 'master_port')) === primary.port &&
        infoField(info, 'master_link_status') === 'up'
        ? true
        : undefined;
    });
  };

  const setup: TestSentinel = {
    name,
    servers,
    sentinels,
    connect(clientOptions: RedisOptions = {}): Redis {
      const client = new Redis({
        sentinels: [...sentinels],
        name,
        maxRetriesPerRequest: null,
        // A primary demoted to replica answers writes with READONLY until its clients move:
        // reconnect (asking the sentinels again) and resend, as ioredis recommends.
        reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
        ...clientOptions,
      });
      client.on('error', () => {}); // expected while tests kill the primary
      clients.add(client);
      client.once('end', () => clients.delete(client));
      return client;
    },
    async primaryAddress(): Promise<Address> {
      return poll('for a sentinel to name the primary', 5_000, async () => {
        for (const sentinel of sentinels) {
          try {
            return await masterFrom(sentinel);
          } catch {
            // try the next one
          }
        }
        return undefined;
      });
    },
    server: serverAt,
    kill(server: BinaryRedis): Promise<void> {
      return server.kill();
    },
    freeze(server: BinaryRedis): void {
      server.signal('SIGSTOP');
    },
    resume(server: BinaryRedis): void {
      server.signal('SIGCONT');
    },
    async waitForFailover(old: Address, timeoutMs = 30_000): Promise<BinaryRedis> {
      const address = await poll(
        'for the sentinels to promote a new primary',
        timeoutMs,
        async () => {
          const named = await Promise.all(sentinels.map(masterFrom));
          const first = named[0] as Address;
          const agreed = named.every((a) => a.port === first.port) && first.port !== old.port;
          if (!agreed) return undefined;
          const role = infoField(await ask(first, 'INFO', 'replication'), 'role');
          return role === 'master' ? first : undefined;
        },
      );
      return serverAt(address);
    },
    async rejoin(server: BinaryRedis): Promise<void> {
      const primary = await setup.primaryAddress();
      await ask(server, 'REPLICAOF', primary.host, primary.port);
    },
    waitForReplica,
    closeClients,
    stop,
  };

  try {
    // Ready when the replica is in sync and every sentinel knows the replica and the two
    // other sentinels (without them there is no majority to elect a failover leader).
    await waitForReplica(servers[1] as BinaryRedis);
    await poll('for the sentinels to discover each other and the replica', 30_000, async () => {
      for (const sentinel of sentinels) {
        const known = entries(await ask(sentinel, 'SENTINEL', 'sentinels', name));
        const replicas = entries(await ask(sentinel, 'SENTINEL', 'replicas', name));
        const healthy = replicas.filter(
          (r) => !r.flags?.includes('s_down') && r['master-link-status'] === 'ok',
        );
        if (known.length < 2 || healthy.length < 1) return undefined;
      }
      return true;
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return setup;
}
