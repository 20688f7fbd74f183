/**
 * A real local Redis Cluster for fault tests: three masters and three replicas, each a private
 * redis-server on a free port (test/support/redis.ts's BinaryRedis with cluster mode on),
 * joined by `redis-cli --cluster create … --cluster-replicas 1`.
 *   kill(server):        SIGKILL one node (a master: its replica is promoted after
 *                        `cluster-node-timeout`).
 *   freeze(server):      SIGSTOP one node (connections stay open); resume(server): SIGCONT.
 *   masterOf(key):       the node serving a key's slot now.
 *   waitForFailover(old): until another node serves `old`'s slots and the cluster is ok.
 *   moveSlotOf(key, to): a resharding of one slot, as `redis-cli --cluster reshard` does it.
 *   nodes:               seed addresses for an ioredis `Cluster`.
 * stop() ends every node.
 */
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { BinaryRedis, findBinary, freePort } from './redis.js';

export interface TestCluster {
  readonly servers: readonly BinaryRedis[];
  /** Seed nodes for `new Cluster(nodes)`. */
  readonly nodes: readonly { host: string; port: number }[];
  /** A new ioredis Cluster client (tracked: stop() closes it). */
  connect(): Cluster;
  /** The node that serves `key`'s slot now. */
  masterOf(key: string): Promise<BinaryRedis>;
  kill(server: BinaryRedis): Promise<void>;
  /** SIGSTOP: the node keeps its connections open and answers nothing; the harness asks others. */
  freeze(server: BinaryRedis): void;
  /** SIGCONT after `freeze`. */
  resume(server: BinaryRedis): void;
  /** Reshards: moves `key`'s slot, with its keys, to master `to` (IMPORTING/MIGRATING, MIGRATE). */
  moveSlotOf(key: string, to: BinaryRedis): Promise<void>;
  /** The masters serving slots now. */
  masters(): Promise<BinaryRedis[]>;
  /** The nodes not killed (frozen ones included). */
  running(): BinaryRedis[];
  /** Waits until a node other than `old` serves `old`'s slots and every node says ok. */
  waitForFailover(old: BinaryRedis, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

async function poll(what: string, timeoutMs: number, check: () => Promise<boolean>) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // a node that is down or not ready: ask again
    }
    if (Date.now() > deadline) {
      throw new Error(`cluster harness: timed out after ${timeoutMs} ms waiting ${what}`);
    }
    await sleep(100);
  }
}

/** One command on a short-lived direct connection to one node. */
async function ask(server: BinaryRedis, ...args: string[]): Promise<unknown> {
  const client = new Redis({
    host: server.host,
    port: server.port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
    // A frozen node accepts the connection (the kernel does) and answers nothing.
    enableReadyCheck: false,
    commandTimeout: 2_000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.call(args[0] as string, ...args.slice(1));
  } finally {
    client.disconnect();
  }
}

export async function startCluster(nodeTimeoutMs = 1_000): Promise<TestCluster> {
  const binary = findBinary();
  if (binary === undefined) throw new Error('cluster tests need redis-server on PATH');
  const servers: BinaryRedis[] = [];
  const clients = new Set<Cluster>();
  const stop = async (): Promise<void> => {
    await Promise.all([...clients].map((c) => c.quit().catch(() => c.disconnect())));
    for (const server of servers) await server.stop();
  };
  try {
    for (let i = 0; i < 6; i++) {
      const server = new BinaryRedis(binary, await freePort(), false, [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${i}.conf`,
        '--cluster-node-timeout',
        String(nodeTimeoutMs),
        // A replica with a stale link may still be promoted: a test kills masters on purpose.
        '--cluster-replica-validity-factor',
        '0',
        '--repl-diskless-sync-delay',
        '0',
      ]);
      servers.push(server);
      await server.launch();
    }
    const created = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...servers.map((s) => `${s.host}:${s.port}`),
        '--cluster-replicas',
        '1',
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (created.status !== 0) {
      throw new Error(`redis-cli --cluster create failed: ${created.stderr || created.stdout}`);
    }
    await poll('cluster_state:ok on every node', 20_000, async () => {
      for (const server of servers) {
        if (!String(await ask(server, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) {
          return false;
        }
      }
      return true;
    });
  } catch (err) {
    await stop();
    throw err;
  }
  const byPort = (port: number): BinaryRedis => {
    const server = servers.find((s) => s.port === port);
    if (server === undefined) throw new Error(`cluster harness: no node on port ${port}`);
    return server;
  };
  type SlotRange = [number, number, [string, number]];
  /** CLUSTER SLOTS from the first of `via` that answers. */
  const slotRanges = async (via: BinaryRedis[]): Promise<SlotRange[]> => {
    for (const server of via) {
      try {
        return (await ask(server, 'CLUSTER', 'SLOTS')) as SlotRange[];
      } catch {
        // a node that is down: ask the next
      }
    }
    throw new Error('cluster harness: no node answers CLUSTER SLOTS');
  };
  const slotOwner = async (slot: number, via: BinaryRedis[]): Promise<BinaryRedis> => {
    const range = (await slotRanges(via)).find(([from, to]) => slot >= from && slot <= to);
    if (range === undefined) throw new Error(`cluster harness: nobody serves slot ${slot}`);
    return byPort(Number(range[2][1]));
  };
  const alive = new Set(servers);
  const frozen = new Set<BinaryRedis>();
  /** The nodes that answer: not killed, not frozen. */
  const answering = (): BinaryRedis[] => [...alive].filter((s) => !frozen.has(s));
  return {
    servers,
    nodes: servers.map((s) => ({ host: s.host, port: s.port })),
    connect() {
      const client = new Cluster(
        servers.map((s) => ({ host: s.host, port: s.port })),
        { clusterRetryStrategy: () => 100 },
      );
      client.on('error', () => {});
      clients.add(client);
      return client;
    },
    async masterOf(key: string) {
      const [first] = servers;
      const slot = Number(await ask(first as BinaryRedis, 'CLUSTER', 'KEYSLOT', key));
      return slotOwner(slot, answering());
    },
    running() {
      return [...alive];
    },
    async masters() {
      return [
        ...new Set((await slotRanges(answering())).map((range) => byPort(Number(range[2][1])))),
      ];
    },
    async moveSlotOf(key: string, to: BinaryRedis) {
      const [first] = [...alive];
      const slot = Number(await ask(first as BinaryRedis, 'CLUSTER', 'KEYSLOT', key));
      const from = await slotOwner(slot, [...alive]);
      if (from === to) return;
      const [fromId, toId] = [
        String(await ask(from, 'CLUSTER', 'MYID')),
        String(await ask(to, 'CLUSTER', 'MYID')),
      ];
      await ask(to, 'CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId);
      await ask(from, 'CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId);
      for (;;) {
        const keys = (await ask(from, 'CLUSTER', 'GETKEYSINSLOT', String(slot), '100')) as string[];
        if (keys.length === 0) break;
        await ask(from, 'MIGRATE', to.host, String(to.port), '', '0', '5000', 'KEYS', ...keys);
      }
      for (const server of [to, from, ...[...alive].filter((s) => s !== to && s !== from)]) {
        await ask(server, 'CLUSTER', 'SETSLOT', String(slot), 'NODE', toId).catch(() => {});
      }
    },
    async kill(server: BinaryRedis) {
      alive.delete(server);
      await server.kill();
    },
    freeze(server: BinaryRedis) {
      server.signal('SIGSTOP');
      frozen.add(server);
    },
    resume(server: BinaryRedis) {
      server.signal('SIGCONT');
      frozen.delete(server);
    },
    async waitForFailover(old: BinaryRedis, timeoutMs = 20_000) {
      const slots = (await (async () => {
        for (const server of answering()) {
          try {
            const nodes = String(await ask(server, 'CLUSTER', 'NODES'));
            const line = nodes.split('\n').find((l) => l.includes(`:${old.port}@`));
            return line?.split(' ').slice(8) ?? [];
          } catch {
            // ask the next
          }
        }
        return [];
      })()) as string[];
      const firstSlot = Number(String(slots[0] ?? '0').split('-')[0]);
      await poll(`a new master for port ${old.port}'s slots`, timeoutMs, async () => {
        const owner = await slotOwner(firstSlot, answering());
        if (owner === old) return false;
        for (const server of answering()) {
          if (!String(await ask(server, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) {
            return false;
          }
        }
        return true;
      });
    },
    stop,
  };
}
