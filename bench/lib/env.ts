import { createPostgresBackend, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { type ExecutorChoice, PairedQueue } from '../../src/index.js';
import { FixtureProcess } from '../../test/support/child.js';
import { startCluster, type TestCluster } from '../../test/support/cluster.js';
import { startPostgres, type TestPostgres } from '../../test/support/postgres.js';
import { startRedis, type TestRedis, uniquePrefix } from '../../test/support/redis.js';

const BENCH = 'the benchmarks (npm run bench)';

/** One private Redis and the worker processes of one measurement; `close()` ends them all. */
export class BenchEnv {
  readonly children: FixtureProcess[] = [];
  readonly base = uniquePrefix('bench');
  private queues: Queue[] = [];
  private readonly observers = new Map<string, Queue>();
  private closers: (() => Promise<void>)[] = [];

  private constructor(readonly redis: TestRedis) {}

  static async start(): Promise<BenchEnv> {
    // Always a private server: measurements must not share a Redis with anything else.
    return new BenchEnv(await startRedis({ killable: true, purpose: BENCH }));
  }

  client(): Redis {
    return this.redis.connect();
  }

  /** A paired twin's worker process (test/fixtures/twin-worker.ts). */
  async twin(twin: string, env: Record<string, string> = {}): Promise<FixtureProcess> {
    return this.spawn('twin-worker.ts', {
      TWIN: twin,
      QUEUE: `${this.base}-${twin}`,
      GROUP: this.base,
      QUEUE_URL: this.redis.url,
      LOCK_URL: this.redis.url,
      LEDGER: `${this.base}:ledger`,
      LOCK_PREFIX: `${this.base}-lock`,
      QUIET: '1',
      NO_LEDGER: '1',
      ...env,
    });
  }

  /** Any TypeScript fixture (a file URL, e.g. under bench/fixtures), stopped with the environment. */
  async fixture(file: URL, env: Record<string, string>): Promise<FixtureProcess> {
    return this.spawn(file, env);
  }

  /** A plain BullMQ worker process on queue `<base>-plain`. */
  async plain(env: Record<string, string> = {}): Promise<FixtureProcess> {
    return this.spawn('plain-worker.ts', {
      QUEUE: `${this.base}-plain`,
      QUEUE_URL: this.redis.url,
      QUIET: '1',
      ...env,
    });
  }

  /**
   * The PairedQueue feeding the twins started by `twin()` (each twin's queue on `on[twin]`).
   * `executor` undefined (the default): the option is left out, so the library's default rules.
   */
  pairedQueue(
    on: Partial<Record<string, TestRedis>> = {},
    executor: ExecutorChoice | undefined = undefined,
    twins: readonly string[] = ['eu', 'us'],
  ): PairedQueue {
    const connection = (twin: string) => {
      const redis = on[twin] ?? this.redis;
      return { host: redis.host, port: redis.port };
    };
    const queue = new PairedQueue(this.base, {
      ...(executor === undefined ? {} : { executor }),
      twins: Object.fromEntries(
        twins.map((t) => [t, { connection: connection(t), queue: `${this.base}-${t}` }]),
      ),
    });
    this.closers.push(() => queue.close());
    return queue;
  }

  /**
   * A local Redis Cluster (3 masters, 3 replicas) stopped with the environment, and the
   * worker env that puts a twin's pair records on it.
   */
  async cluster(): Promise<Record<string, string>> {
    return (await this.lockCluster()).env;
  }

  /** A local Redis Cluster for the lock store: the twin env pointing at it, and the Cluster. */
  async lockCluster(): Promise<{ env: Record<string, string>; cluster: TestCluster }> {
    const cluster = await startCluster();
    this.closers.push(() => cluster.stop());
    const env = { LOCK_CLUSTER: cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',') };
    return { env, cluster };
  }

  /** A private PostgreSQL, stopped with the environment. */
  async postgres(): Promise<TestPostgres> {
    const postgres = await startPostgres();
    this.closers.push(() => postgres.stop());
    return postgres;
  }

  /** An observer Queue on PostgreSQL (BullMQ's PostgreSQL backend), closed with the environment. */
  pgQueue(name: string, on: TestPostgres): Queue {
    const key = `pg:${on.url}/${name}`;
    let queue = this.observers.get(key);
    if (queue === undefined) {
      queue = new Queue(
        name,
        { connection: { connectionString: on.url, migrate: true } } as never,
        createPostgresBackend as never,
      ) as unknown as Queue;
      this.observers.set(key, queue);
      this.queues.push(queue);
    }
    return queue;
  }

  /**
   * A PairedQueue with twin `eu` on Redis (`euRedis`, default this environment's) and twin
   * `us` on PostgreSQL, queues `<base>-eu` / `<base>-us`.
   */
  mixedPairedQueue(
    pg: TestPostgres,
    euRedis: TestRedis = this.redis,
    executor: ExecutorChoice | undefined = undefined,
  ): PairedQueue {
    const queue = new PairedQueue(this.base, {
      ...(executor === undefined ? {} : { executor }),
      twins: {
        eu: { connection: { host: euRedis.host, port: euRedis.port }, queue: `${this.base}-eu` },
        us: {
          connection: { connectionString: pg.url, migrate: true },
          queue: `${this.base}-us`,
          backend: createPostgresBackend,
        },
      },
    });
    for (const twin of queue.twins) queue.queue(twin).on('error', () => {});
    this.closers.push(() => queue.close());
    return queue;
  }

  /** Another private Redis, stopped with the environment. */
  async extraRedis(): Promise<TestRedis> {
    const redis = await startRedis({ killable: true, purpose: BENCH });
    this.closers.push(() => redis.stop());
    return redis;
  }

  /**
   * One observer Queue per name and server, made at the first call: a poll that made one per
   * call cost the measured Redis a connection, a HELLO and a script load each time (about
   * 5 commands and 430 µs of its CPU per poll, counted against the paired runs).
   */
  queue(name: string, on: TestRedis = this.redis): Queue {
    const key = `${on.host}:${on.port}/${name}`;
    let queue = this.observers.get(key);
    if (queue === undefined) {
      queue = new Queue(name, { connection: { host: on.host, port: on.port } });
      this.observers.set(key, queue);
      this.queues.push(queue);
    }
    return queue;
  }

  /** Sum of `calls` over INFO commandstats (commands run inside scripts count too). */
  async commandCalls(on: TestRedis = this.redis): Promise<number> {
    const info = await on.connect().info('commandstats');
    let total = 0;
    for (const match of info.matchAll(/calls=(\d+)/g)) total += Number(match[1]);
    return total;
  }

  /** The server's CPU time and its commands' own time so far (INFO cpu, INFO commandstats). */
  async redisCpu(on: TestRedis = this.redis): Promise<RedisCpu> {
    return redisCpu(on);
  }

  private async spawn(fixture: string | URL, env: Record<string, string>): Promise<FixtureProcess> {
    const child = new FixtureProcess(fixture, env);
    this.children.push(child);
    await child.next('ready');
    return child;
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((child) => child.kill()));
    await Promise.all(this.queues.map((queue) => queue.close()));
    // Reverse order: queues close before the extra Redis servers they talk to stop.
    for (const close of this.closers.reverse()) await close();
    await this.redis.stop();
  }
}

export interface RedisCpu {
  /** used_cpu_sys + used_cpu_user, ms (the whole server: commands, I/O, its cron). */
  cpuMs: number;
  /** Sum of `usec` over INFO commandstats, ms (time inside commands only). */
  commandMs: number;
}

/** CPU figures of one Redis (one short-lived connection; its INFO calls cost microseconds). */
export async function redisCpu(on: TestRedis): Promise<RedisCpu> {
  const client = on.connect();
  try {
    const [cpu, stats] = [await client.info('cpu'), await client.info('commandstats')];
    const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(cpu)?.[1] ?? 0);
    let usec = 0;
    for (const match of stats.matchAll(/,usec=(\d+)/g)) usec += Number(match[1]);
    return {
      cpuMs: (field('used_cpu_sys') + field('used_cpu_user')) * 1000,
      commandMs: usec / 1000,
    };
  } finally {
    client.disconnect();
  }
}

/**
 * Per command name, `calls` over INFO commandstats (script-internal calls included), without
 * INFO itself (the observer's own calls).
 */
export async function commandsByName(client: Redis): Promise<Map<string, number>> {
  const info = await client.info('commandstats');
  const calls = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    const name = match[1] as string;
    if (name !== 'info') calls.set(name, Number(match[2]));
  }
  return calls;
}

/** Runs `fn` with a fresh environment and always cleans up. */
export async function withEnv<T>(fn: (env: BenchEnv) => Promise<T>): Promise<T> {
  const env = await BenchEnv.start();
  try {
    return await fn(env);
  } finally {
    await env.close();
  }
}

/** Polls until `done()` is true (every 20 ms), failing after `timeoutMs`. */
export async function until(
  done: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
