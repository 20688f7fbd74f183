import { createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { InspectReport } from '../../src/cli/inspect.js';
import { PairedLock } from '../../src/index.js';
import { recordKey } from '../../src/lock/keys.js';
import { useRedis } from '../support/file-redis.js';
import { freePort, startRedis, uniquePrefix } from '../support/redis.js';
import { parseJson, runCli } from './run-cli.js';

const redis = useRedis();

describe('bullmq-paired exit codes', () => {
  it('exits 0 for --help, and the help lists the exit codes', async () => {
    const run = await runCli(['inspect', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('--twin-redis <url>');
    expect(run.stdout).toMatch(/Exit codes:\n\s+0\s+ok\n\s+1\s+inspect: nothing found/);
  });

  it('exits 1 when neither a pair record nor a copy exists under the id', async () => {
    const queue = uniquePrefix('none');
    const args = ['inspect', '--redis', redis().url, '--queue', queue, 'no-such-job'];
    const [human, json] = await Promise.all([runCli(args), runCli([...args, '--json'])]);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(`pair record ${queue}:no-such-job`);
    expect(human.stdout).toContain('none (never run, or past retention)');
    expect(human.stdout).toMatch(new RegExp(`${queue}\\s+redis://\\S+\\s+absent`));
    expect(json.code).toBe(1);
    const report = parseJson<InspectReport>(json);
    expect(report.record).toBeNull();
    expect(report.copies.map((c) => c.found)).toEqual([false]);
  });

  it('exits 2 on usage errors, saying what to fix', async () => {
    const url = redis().url;
    const runs = await Promise.all([
      runCli(['inspect', 'job-1']), // no --redis (and no REDIS_URL)
      runCli(['inspect', '--redis', url, '--no-such-option', 'job-1']),
      runCli(['inspect', '--redis', url, '--queue', 'push']), // no job id
      runCli(['inspect', '--redis', url, '--queue', 'push-a', '--queue', 'push-b', 'job-1']),
      runCli(['stats', '--redis', 'http://user:hunter2@example.com']),
      runCli(['stats', '--redis', url, '--timeout', 'soon']),
      runCli(['frobnicate']),
      runCli([]),
    ]);
    expect(runs.map((run) => run.code)).toEqual([2, 2, 2, 2, 2, 2, 2, 2]);
    const [noRedis, unknown, noId, noGroup, badUrl, badTimeout] = runs.map((run) => run.stderr);
    expect(noRedis).toContain("required option '--redis <url>' not specified");
    expect(unknown).toContain("unknown option '--no-such-option'");
    expect(noId).toContain("missing required argument 'jobId'");
    expect(noGroup).toMatch(/two queue names \(push-a, push-b\): pass --group <name>/);
    expect(badUrl).toContain('must start with redis:// or rediss://');
    expect(badUrl).not.toContain('hunter2');
    expect(badTimeout).toContain('expected a whole number');
  });

  it('exits 3 when nothing listens on the port, naming the URL without its password', async () => {
    const port = await freePort();
    const url = `redis://:hunter2@127.0.0.1:${port}`;
    const runs = await Promise.all([
      runCli(['inspect', '--redis', url, '--queue', 'push', 'job-1']),
      runCli(['stats', '--redis', redis().url, '--lock-redis', url]),
      runCli(['inspect', '--redis', redis().url, '--twin-redis', url, '--queue', 'push', 'job-1']),
    ]);
    for (const run of runs) {
      expect(run.code).toBe(3);
      expect(run.stderr).toContain(`cannot use Redis at redis://:***@127.0.0.1:${port}`);
      expect(run.stderr).toContain('ECONNREFUSED');
      expect(run.stderr).not.toContain('hunter2');
    }
  });

  it('exits 3 within its timeout when a server accepts the connection but never answers', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    try {
      const run = await runCli([
        'stats',
        '--redis',
        `redis://127.0.0.1:${port}`,
        '--timeout',
        '500',
      ]);
      expect(run.code).toBe(3);
      expect(run.stderr).toContain(`cannot use Redis at redis://127.0.0.1:${port}`);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('exits 3 when Redis refuses the password, or asks for one', async () => {
    const guarded = await startRedis({ killable: true, args: ['--requirepass', 'right-password'] });
    try {
      const [wrong, none] = await Promise.all([
        runCli(['stats', '--redis', `redis://:wrong-password@127.0.0.1:${guarded.port}`]),
        runCli(['stats', '--redis', `redis://127.0.0.1:${guarded.port}`]),
      ]);
      expect(wrong.code).toBe(3);
      expect(wrong.stderr).toContain(`cannot use Redis at redis://:***@127.0.0.1:${guarded.port}`);
      expect(wrong.stderr).toMatch(/WRONGPASS/);
      expect(wrong.stderr).not.toContain('wrong-password');
      expect(none.code).toBe(3);
      expect(none.stderr).toMatch(/NOAUTH/);
    } finally {
      await guarded.stop();
    }
  });

  it('exits 4 on a record this library did not write', async () => {
    const lockPrefix = uniquePrefix('corrupt');
    const client = redis().connect();
    await client.set(recordKey(lockPrefix, 'junk-1'), 'not json');
    const run = await runCli([
      'inspect',
      '--redis',
      redis().url,
      '--lock-prefix',
      lockPrefix,
      'junk-1',
    ]);
    expect(run.code).toBe(4);
    expect(run.stderr).toContain('ERR_PAIRED_CORRUPT_RECORD');
    // The rest of a store with one bad record still counts.
    const lock = new PairedLock(client, { member: 'eu', prefix: lockPrefix });
    await lock.run('fine-1', () => 'ok');
    await lock.close();
    const stats = await runCli([
      'stats',
      '--redis',
      redis().url,
      '--lock-prefix',
      lockPrefix,
      '--json',
    ]);
    expect(stats.code).toBe(0);
    expect(parseJson<{ records: unknown }>(stats).records).toMatchObject({
      done: 1,
      corrupt: 1,
      total: 2,
    });
  });
});
