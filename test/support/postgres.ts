/**
 * Private PostgreSQL servers for tests and benches (never the system service): `initdb` into a
 * temporary directory and a `postgres` process of our own on a free port, so a test can
 * SIGKILL it and start it again. As root, both run as the `postgres` user (initdb refuses
 * root). Kept free of vitest so benches can use it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.js';
import { untracked } from './untracked.js';

export interface TestPostgres {
  readonly host: string;
  readonly port: number;
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  /** SIGKILL the server (a crash: no shutdown checkpoint). */
  kill(): Promise<void>;
  /** Start it again on the same port and data directory, after kill(). */
  restart(): Promise<void>;
  /** Stop it and remove its data directory. */
  stop(): Promise<void>;
}

export class PostgresUnavailableError extends Error {
  constructor(why: string) {
    super(
      `PostgreSQL is needed here and ${why}. Install Debian's server binaries: apt-get install -y postgresql (initdb and postgres are then under /usr/lib/postgresql/<version>/bin; the system service is not used)`,
    );
    this.name = 'PostgresUnavailableError';
  }
}

/** `initdb`/`postgres` of the newest PostgreSQL installed (Debian keeps them off PATH). */
export function findPostgresBinary(name: 'initdb' | 'postgres'): string | undefined {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const version of versions) {
      const path = join(root, version, 'bin', name);
      if (existsSync(path)) return path;
    }
  }
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const path = (found.stdout ?? '').trim();
  return found.status === 0 && path !== '' ? path : undefined;
}

/** As root, the postgres user's ids (initdb and postgres refuse to run as root). */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  const uid = id('-u');
  const gid = id('-g');
  if (uid.status !== 0 || gid.status !== 0) {
    throw new PostgresUnavailableError('this process runs as root, but there is no postgres user');
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

class PrivatePostgres implements TestPostgres {
  readonly host = '127.0.0.1';
  private child: ChildProcess | undefined;

  constructor(
    private readonly binary: string,
    private readonly dir: string,
    readonly port: number,
    private readonly user: { uid: number; gid: number } | undefined,
  ) {}

  get url(): string {
    return `postgres://postgres@${this.host}:${this.port}/postgres`;
  }

  async start(): Promise<void> {
    // Durability off: a test's data need not survive the machine, only our own SIGKILL
    // (which loses no committed row with fsync off, as the OS keeps the pages).
    const args = [
      '-D',
      this.dir,
      '-p',
      String(this.port),
      '-k',
      this.dir,
      '-c',
      `listen_addresses=${this.host}`,
      '-c',
      'fsync=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=200',
    ];
    const child = untracked(() =>
      spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'], ...this.user }),
    );
    this.child = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        if (output.includes('ready to accept connections')) resolve();
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', (code) =>
        reject(new Error(`postgres exited with ${code} before it was ready:\n${output}`)),
      );
      child.once('error', reject);
    });
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    this.child = undefined;
  }

  async restart(): Promise<void> {
    // Its backends notice the postmaster's death and exit within a moment; until then the
    // old shared memory is in use and a new postmaster refuses to start.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await this.start();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT'); // fast shutdown
      await exited;
    }
    this.child = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A new private PostgreSQL server, trust auth, user and database `postgres`. */
export async function startPostgres(): Promise<TestPostgres> {
  const initdb = findPostgresBinary('initdb');
  const postgres = findPostgresBinary('postgres');
  if (initdb === undefined || postgres === undefined) {
    throw new PostgresUnavailableError('initdb/postgres were not found');
  }
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'bmqp-pg-'));
  if (user !== undefined) spawnSync('chown', [`${user.uid}:${user.gid}`, dir]);
  const init = spawnSync(
    initdb,
    ['-D', dir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C'],
    { encoding: 'utf8', ...user },
  );
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}):\n${init.stdout}\n${init.stderr}`);
  }
  const server = new PrivatePostgres(postgres, dir, await freePort(), user);
  await server.start();
  return server;
}
