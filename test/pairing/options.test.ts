import { describe, expect, it } from 'vitest';
import { InvalidJobIdError, PairedProcessor, PairedQueue } from '../../src/index.js';
import { useRedis } from '../support/file-redis.js';

const redis = useRedis();
const noop = async () => 'ok';

describe('PairedProcessor options', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      'missing twin',
      {},
      /PairedProcessor: option "twin" must be a non-empty string, received undefined/,
    ],
    ['twin with a colon', { twin: 'eu:1' }, /option "twin" must be free of ":", received "eu:1"/],
    [
      'missing lockConnection',
      { twin: 'eu' },
      /option "lockConnection" must be an ioredis Redis or Cluster instance, received undefined/,
    ],
    [
      'lockConnection as options',
      { twin: 'eu', lockConnection: { host: 'x' } },
      /option "lockConnection" must be an ioredis/,
    ],
    [
      'bad policy',
      { twin: 'eu', whenLockStoreDown: 'panic' },
      /option "whenLockStoreDown" must be one of "wait", "run", received "panic"/,
    ],
    [
      'bad retry',
      { twin: 'eu', lockStoreRetryMs: -1 },
      /option "lockStoreRetryMs" must be an integer >= 10, received -1/,
    ],
    [
      'bad park',
      { twin: 'eu', maxParkMs: Number.NaN },
      /option "maxParkMs" must be an integer >= 10, received NaN/,
    ],
    [
      'bad jobLogs',
      { twin: 'eu', jobLogs: 1 },
      /option "jobLogs" must be true or false, received 1/,
    ],
    [
      'empty group',
      { twin: 'eu', group: '' },
      /option "group" must be a non-empty string, received ""/,
    ],
    [
      'lock option out of range',
      { twin: 'eu', leaseMs: 5 },
      /PairedProcessor: option "leaseMs" must be an integer between 100/,
    ],
    [
      'heartbeat above lease',
      { twin: 'eu', leaseMs: 1000, heartbeatMs: 2000 },
      /option "heartbeatMs" must be below leaseMs/,
    ],
    ['member is not an option here', { twin: 'eu', member: 'eu' }, /unknown option "member"/],
    ['unknown option', { twin: 'eu', concurrency: 5 }, /unknown option "concurrency"/],
    ['null for a default', { twin: 'eu', maxParkMs: null }, /option "maxParkMs" is null/],
    [
      'pollIntervalMs is for PairedLock',
      { twin: 'eu', pollIntervalMs: 500 },
      /unknown option "pollIntervalMs"/,
    ],
  ];

  it.each(cases)('rejects %s with a TypeError', (_name, options, message) => {
    const lockConnection = redis().connect({ lazyConnect: true });
    // Every case but the connection cases gets a valid client, so only the named problem is wrong.
    const full = /lockConnection/.test(message.source) ? options : { lockConnection, ...options };
    const create = () => new PairedProcessor(noop, full as never);
    expect(create).toThrow(TypeError);
    expect(create).toThrow(message);
  });

  it('declares three parameters so BullMQ hands it an AbortSignal', () => {
    const paired = new PairedProcessor(noop, {
      twin: 'eu',
      lockConnection: redis().connect({ lazyConnect: true }),
    });
    expect(paired.processor.length).toBe(3);
    expect(paired.options).toMatchObject({
      twin: 'eu',
      whenLockStoreDown: 'wait',
      jobLogs: false,
      maxParkMs: 300_000,
    });
    expect(paired.options.lock).toMatchObject({
      member: 'eu',
      leaseMs: 30_000,
      heartbeatMs: 10_000,
    });
  });
});

describe('PairedQueue options and job ids', () => {
  const connection = () => ({ host: redis().host, port: redis().port });

  it.each<[string, unknown, RegExp]>([
    ['no twins', {}, /option "twins" must be an object with two or more twins/],
    ['one twin', { twins: { eu: { connection: {} } } }, /two or more twins/],
    [
      'three twins, two sharing a queue on one Redis',
      {
        twins: {
          a: { connection: { host: 'h', port: 1 }, queue: 'q' },
          b: { connection: { host: 'h', port: 1 }, queue: 'q' },
          c: { connection: { host: 'h', port: 1 }, queue: 'r' },
        },
      },
      /different queues: on one server give each twin its own `queue` name/,
    ],
    [
      'a twin without connection',
      { twins: { eu: {}, us: {} } },
      /option "twins.eu.connection" must be a connection \(Redis options or client/,
    ],
    [
      'one queue twice on one Redis',
      { twins: { eu: { connection: 'same' }, us: { connection: 'same' } } },
      /different queues: on one server/,
    ],
    [
      'bad add timeout',
      { twins: {}, addTimeoutMs: 0 },
      /option "addTimeoutMs" must be an integer >= 1, received 0/,
    ],
    ['unknown option', { twins: {}, connection: {} }, /unknown option "connection"/],
    ['null for a default', { twins: {}, addTimeoutMs: null }, /option "addTimeoutMs" is null/],
    [
      'defaultJobOptions not an object',
      { twins: { a: { connection: {} }, b: { connection: {} } }, defaultJobOptions: 'fast' },
      /option "defaultJobOptions" must be BullMQ's JobsOptions \(an object\), received "fast"/,
    ],
    [
      'one jobId for every job',
      {
        twins: { a: { connection: {} }, b: { connection: {} } },
        defaultJobOptions: { jobId: 'x' },
      },
      /option "defaultJobOptions" must be free of jobId/,
    ],
  ])('rejects %s', (_name, options, message) => {
    const resolved = JSON.parse(
      JSON.stringify(options).replaceAll('"same"', JSON.stringify(connection())),
    );
    expect(() => new PairedQueue('push', resolved as never)).toThrow(TypeError);
    expect(() => new PairedQueue('push', resolved as never)).toThrow(message);
  });

  it.each<[unknown, RegExp]>([
    ['123', /has only digits/],
    ['a:b', /contains ":"/],
    ['', /is empty/],
    [42, /is not a string/],
  ])('refuses job id %j before writing anything', async (jobId, message) => {
    const queue = new PairedQueue('push-ids', {
      twins: {
        a: { connection: connection(), queue: 'ids-a' },
        b: { connection: connection(), queue: 'ids-b' },
      },
    });
    try {
      const error = await queue
        .add('n', {}, { jobId: jobId as string })
        .catch((err: unknown) => err);
      expect(error).toBeInstanceOf(InvalidJobIdError);
      expect(error).toMatchObject({ code: 'ERR_PAIRED_INVALID_JOB_ID' });
      expect((error as Error).message).toMatch(message);
      const bulk = await queue
        .addBulk([
          { name: 'ok', data: {}, opts: { jobId: 'fine-1' } },
          { name: 'bad', data: {}, opts: { jobId: jobId as string } },
        ])
        .catch((err: unknown) => err);
      expect(bulk).toBeInstanceOf(InvalidJobIdError);
      expect(await queue.queue('a').getJob('fine-1')).toBeUndefined();
    } finally {
      await queue.close();
    }
  });

  it('adds both copies atomically on one Redis, with the same id and options', async () => {
    const queue = new PairedQueue('push-one', {
      twins: {
        a: { connection: connection(), queue: 'one-a' },
        b: { connection: connection(), queue: 'one-b' },
      },
      defaultJobOptions: { attempts: 3 },
    });
    try {
      const added = await queue.add('notify', { text: 'hi' }, { jobId: 'n-7', priority: 2 });
      expect(added.id).toBe('n-7');
      for (const twin of ['a', 'b']) {
        const job = await queue.queue(twin).getJob('n-7');
        expect(job?.data).toEqual({ text: 'hi' });
        expect(job?.opts).toMatchObject({ attempts: 3, priority: 2 });
      }
      const generated = await queue.add('notify', { text: 'x' });
      expect(generated.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(await queue.queue('b').getJob(generated.id)).toBeDefined();
      expect(() => queue.queue('c')).toThrow(/no twin "c"; twins are a, b/);
    } finally {
      await queue.close();
    }
  });
});
