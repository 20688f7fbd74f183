import { type ExecutorChoice, PairedQueue } from '../../src/index.js';
import { FixtureProcess } from './child.js';
import type { TestRedis } from './redis.js';

/**
 * Twin worker processes (test/fixtures/twin-worker.ts) and the PairedQueue feeding them, all
 * on one Redis under the prefix `base`: a queue `<base>-<twin>` per twin (default eu and us),
 * ledger `<base>:ledger`.
 */
export class TwinProcesses {
  readonly queue: PairedQueue;

  constructor(
    private readonly redis: TestRedis,
    readonly base: string,
    private readonly settings: Record<string, string>,
    /** PairedQueue's `executor` option. */
    executor: ExecutorChoice = 'first',
    readonly twins: readonly string[] = ['eu', 'us'],
  ) {
    const connection = { host: redis.host, port: redis.port };
    this.queue = new PairedQueue(base, {
      executor,
      twins: Object.fromEntries(twins.map((t) => [t, { connection, queue: `${base}-${t}` }])),
    });
  }

  get ledgerKey(): string {
    return `${this.base}:ledger`;
  }

  /** Starts one worker process of `twin` and resolves once it is ready. */
  async start(twin: string): Promise<FixtureProcess> {
    const child = new FixtureProcess('twin-worker.ts', {
      GROUP: this.base,
      QUEUE_URL: this.redis.url,
      LOCK_URL: this.redis.url,
      LEDGER: this.ledgerKey,
      LOCK_PREFIX: `${this.base}-lock`,
      QUIET: '1',
      ...this.settings,
      TWIN: twin,
      QUEUE: `${this.base}-${twin}`,
    });
    await child.next('ready');
    return child;
  }
}
