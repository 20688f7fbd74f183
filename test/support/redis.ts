/**
 * A private Redis for each test file, bench or example run. Discovery order:
 *   1. REDIS_URL (shared: callers isolate themselves with a random key prefix; never flushed)
 *   2. a redis-server binary on PATH: a private instance on a free port (killable)
 *   3. @testcontainers/redis when a Docker engine answers (killable)
 *   4. otherwise one error (RedisUnavailableError) that names the caller's purpose and the fixes.
 * The Redis on 127.0.0.1:6379 that the machine may run is never used unless REDIS_URL says so.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { untracked } from './untracked.js';

export type RedisSource = 'env' | 'binary' | 'testcontainers';

export interface StartRedisOptions {
  /** Who needs this Redis, named in the error when none is found. Default 'the tests (npm test)'. */
  purpose?: string;
  /**
   * A server of its own: ignore REDIS_URL and start a private one. For callers that kill or
   * restart it, change server-wide settings, or need it distinct from their other servers.
   */
  killable?: boolean;
  /** Keep data across restart() (appendonly yes). Default false. */
  persistence?: boolean;
  /** Extra redis-server arguments, e.g. ['--maxmemory-policy', 'noeviction']. */
  args?: string[];
  /** Where to look for the binary and Docker; for tests of discovery itself. */
  env?: NodeJS.ProcessEnv;
  /** Serve TLS only (PEM files; the certificate is also the CA clients trust). */
  tls?: { certFile: string; keyFile: string };
}

export interface TestRedis {
  readonly source: RedisSource;
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** A new client (tracked: stop() closes it). */
  connect(options?: RedisOptions): Redis;
  /** SIGKILL the server (binary) or stop the container. */
  kill(): Promise<void>;
  /** Start it again on the same port, after kill(). */
  restart(): Promise<void>;
  /** Close the clients connect() made (the server keeps running). */
  closeClients(): Promise<void>;
  /** Close tracked clients and stop the server if it is ours. */
  stop(): Promise<void>;
}

const DEFAULT_PURPOSE = 'the tests (npm test)';

export class RedisUnavailableError extends Error {
  readonly code = 'ERR_NO_REDIS';
  /**
   * @param details what each way of finding Redis said
   * @param purpose who needed it: 'the tests (npm test)', 'the demo (npm run demo)', …
   * @param killable the caller kills its Redis, so REDIS_URL cannot serve it
   */
  constructor(details: string[], purpose = DEFAULT_PURPOSE, killable = false) {
    const fixes = [
      'install redis-server (Debian or Ubuntu: sudo apt-get install -y redis-server)',
      ...(killable ? [] : ['set REDIS_URL to a Redis it may use (e.g. redis://127.0.0.1:6390)']),
      'start Docker for @testcontainers/redis',
    ];
    super(
      `no Redis found for ${purpose}. To fix: ${fixes.join('; or ')}.\n${details.map((d) => `  - ${d}`).join('\n')}`,
    );
    this.name = 'RedisUnavailableError';
  }
}

/** A random key prefix, so tests sharing one Redis (REDIS_URL) never see each other's keys. */
export function uniquePrefix(label = 't'): string {
  return `${label}-${randomBytes(6).toString('hex')}`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export function findBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { env, encoding: 'utf8' });
  // With no shell on PATH at all, spawnSync fails and leaves stdout null.
  const path = (found.stdout ?? '').trim();
  return found.status === 0 && path !== '' ? path : undefined;
}

/**
 * Spawns a redis-server (untracked: it belongs to the harness) and resolves `ready` once its
 * log says `readyLine`; rejects if it exits first.
 */
export function spawnServer(
  binary: string,
  args: string[],
  readyLine: string | RegExp = 'Ready to accept connections',
): { child: ChildProcess; ready: Promise<void> } {
  const child = untracked(() => spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (typeof readyLine === 'string' ? output.includes(readyLine) : readyLine.test(output)) {
        child.stdout?.off('data', onData);
        // Keep draining so a full pipe never blocks the server.
        child.stdout?.resume();
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}:\n${output}`)));
    child.once('error', reject);
  });
  return { child, ready };
}

abstract class BaseRedis implements TestRedis {
  abstract readonly source: RedisSource;
  abstract readonly host: string;
  abstract readonly port: number;
  private readonly clients = new Set<Redis>();

  /** Client TLS options when the server speaks TLS only. */
  tls: RedisOptions['tls'] = undefined;

  get url(): string {
    return `${this.tls ? 'rediss' : 'redis'}://${this.host}:${this.port}`;
  }

  connect(options: RedisOptions = {}): Redis {
    const client = new Redis({
      host: this.host,
      port: this.port,
      maxRetriesPerRequest: null,
      ...(this.tls ? { tls: this.tls } : {}),
      ...options,
    });
    client.on('error', () => {}); // expected while tests kill the server
    this.clients.add(client);
    client.once('end', () => this.clients.delete(client));
    return client;
  }

  async closeClients(): Promise<void> {
    await Promise.all(
      [...this.clients].map(async (client) => {
        try {
          if (client.status === 'ready') await client.quit();
        } catch {
          // fall through to disconnect
        }
        client.disconnect();
      }),
    );
    this.clients.clear();
  }

  abstract kill(): Promise<void>;
  abstract restart(): Promise<void>;
  abstract stop(): Promise<void>;
}

class EnvRedis extends BaseRedis {
  readonly source = 'env';
  readonly host: string;
  readonly port: number;
  constructor(url: string) {
    super();
    const parsed = new URL(url);
    this.host = parsed.hostname;
    this.port = Number(parsed.port || 6379);
  }
  kill(): Promise<void> {
    return Promise.reject(
      new Error('REDIS_URL points at a shared Redis: start with { killable: true }'),
    );
  }
  restart(): Promise<void> {
    return this.kill();
  }
  stop(): Promise<void> {
    return this.closeClients();
  }
}

export class BinaryRedis extends BaseRedis {
  readonly source = 'binary';
  readonly host = '127.0.0.1';
  private child: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'paired-redis-'));

  constructor(
    private readonly binary: string,
    readonly port: number,
    private readonly persistence: boolean,
    private readonly extraArgs: string[],
    private readonly tlsFiles?: { certFile: string; keyFile: string },
  ) {
    super();
    if (tlsFiles) this.tls = { ca: readFileSync(tlsFiles.certFile) };
  }

  async launch(): Promise<void> {
    const tls = this.tlsFiles;
    const listen = tls
      ? [
          '--port',
          '0',
          '--tls-port',
          String(this.port),
          '--tls-cert-file',
          tls.certFile,
          '--tls-key-file',
          tls.keyFile,
        ]
      : ['--port', String(this.port)];
    const args = [
      ...listen,
      ...(tls ? ['--tls-ca-cert-file', tls.certFile, '--tls-auth-clients', 'no'] : []),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--appendonly',
      this.persistence ? 'yes' : 'no',
      '--appendfsync',
      'always',
      '--maxmemory-policy',
      'noeviction',
      ...this.extraArgs,
    ];
    const started = spawnServer(this.binary, args);
    this.child = started.child;
    await started.ready;
  }

  /** Sends a signal to the server: SIGSTOP freezes it (connections stay open), SIGCONT resumes it. */
  signal(signal: NodeJS.Signals): void {
    if (this.child === undefined || this.child.exitCode !== null) {
      throw new Error(`signal(${signal}): the server is not running`);
    }
    this.child.kill(signal);
  }

  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  restart(): Promise<void> {
    if (this.child !== undefined) throw new Error('restart() needs kill() first');
    return this.launch();
  }

  async stop(): Promise<void> {
    await this.closeClients();
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

interface StartedContainer {
  getHost(): string;
  getPort(): number;
  stop(): Promise<unknown>;
  restart(): Promise<void>;
}

class ContainerRedis extends BaseRedis {
  readonly source = 'testcontainers';
  constructor(private readonly container: StartedContainer) {
    super();
  }
  get host(): string {
    return this.container.getHost();
  }
  get port(): number {
    return this.container.getPort();
  }
  async kill(): Promise<void> {
    await this.closeClients();
    await this.container.restart(); // the closest a container gets to a crash and return
  }
  restart(): Promise<void> {
    return Promise.resolve();
  }
  async stop(): Promise<void> {
    await this.closeClients();
    await this.container.stop();
  }
}

export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  const env = options.env ?? process.env;
  const details: string[] = [];
  const url = env.REDIS_URL;
  if (url && !options.killable && !options.tls) return new EnvRedis(url);
  details.push(
    url
      ? 'REDIS_URL is set, but this caller must kill and restart its Redis'
      : 'REDIS_URL is not set',
  );

  const binary = findBinary(env);
  if (binary !== undefined) {
    const redis = new BinaryRedis(
      binary,
      await freePort(),
      options.persistence ?? false,
      options.args ?? [],
      options.tls,
    );
    await redis.launch();
    return redis;
  }
  details.push('no redis-server on PATH');

  try {
    const { RedisContainer } = await import('@testcontainers/redis');
    const container = await new RedisContainer('redis:7-alpine').start();
    return new ContainerRedis(container);
  } catch (err) {
    details.push(
      `testcontainers: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
    );
  }
  throw new RedisUnavailableError(
    details,
    options.purpose ?? DEFAULT_PURPOSE,
    Boolean(options.killable || options.tls),
  );
}
