import type { BackendFactory, ConnectionOptions, PostgresConnectionOptions, Queue } from 'bullmq';
import { PairingMismatchError, PartialTwinOperationError } from '../errors.js';
import { assertKnownOptions, optionError, stringOption } from '../validate.js';
import { CONNECTION_EXPECTED, connectionProblem } from './connection.js';
import { resolveBackend, sameServer } from './servers.js';

export interface TwinQueueOptions {
  /**
   * Connection to this twin's Redis, as for a BullMQ `Queue`: ioredis options (`url`
   * included), an ioredis `Redis`/`Cluster` instance, a node-redis client, or a Valkey GLIDE
   * client wrapped by bullmq's `createValkeyGlideClient`. A client whose server cannot be read
   * (e.g. Bun's) is refused with a TypeError: PairedQueue reads the client's options to tell
   * whether both twins live on one Redis.
   */
  connection: ConnectionOptions | PostgresConnectionOptions;
  /** Queue name there. Default: the `PairedQueue` name. */
  queue?: string;
  /** BullMQ key prefix there. Default `'bull'`. */
  prefix?: string;
  /**
   * BullMQ's backend factory for a twin that is not on Redis, as BullMQ's classes take it
   * third: `createPostgresBackend` from bullmq, with `connection` a PostgreSQL connection
   * string, pool config (`{ connectionString, migrate: true }`) or `pg.Pool`. Default: Redis.
   */
  // biome-ignore lint/suspicious/noExplicitAny: BullMQ's factories differ in backend and options types
  backend?: BackendFactory<any, any>;
}

/** One twin's checked configuration, before its queue is opened. */
export interface TwinConfig {
  name: string;
  queueName: string;
  prefix: string;
  connection: ConnectionOptions;
  /** BullMQ's backend factory when this twin is not on Redis (e.g. PostgreSQL). */
  // biome-ignore lint/suspicious/noExplicitAny: as TwinQueueOptions.backend
  backend: BackendFactory<any, any> | undefined;
}

/** One twin of a PairedQueue, its BullMQ queue open. */
export interface Twin extends TwinConfig {
  queue: Queue;
}

/** One twin's side of a PairedQueue, for `PairedFlowProducer`. */
export interface TwinTarget {
  twin: string;
  queueName: string;
  prefix: string;
  connection: ConnectionOptions;
  /** BullMQ's backend factory when this twin is not on Redis. */
  // biome-ignore lint/suspicious/noExplicitAny: as TwinQueueOptions.backend
  backend: BackendFactory<any, any> | undefined;
  /** Writes the pairing record to this twin's queue Redis (once; as before an add). */
  record(): Promise<void>;
}

/** Rejects when `promise` has not settled after `ms`; the operation itself may still land later. */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what = 'the add',
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${ms} ms (${what} may still land later)`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** One twin's options, checked (a TypeError naming the option and the fix). */
export function twinConfig(
  owner: string,
  pairedName: string,
  twin: string,
  config: TwinQueueOptions,
): TwinConfig {
  if (twin.length === 0 || twin.includes(':')) {
    throw optionError(owner, 'twins', twin, 'keyed by names that are non-empty and free of ":"');
  }
  if (typeof config !== 'object' || config === null || config.connection === undefined) {
    throw optionError(
      owner,
      `twins.${twin}.connection`,
      config?.connection,
      "a connection (Redis options or client; with `backend`, that backend's connection)",
    );
  }
  assertKnownOptions(`${owner} twins.${twin}`, config, [
    'connection',
    'queue',
    'prefix',
    'backend',
  ]);
  if (config.backend !== undefined && typeof config.backend !== 'function') {
    throw optionError(
      owner,
      `twins.${twin}.backend`,
      config.backend,
      "BullMQ's backend factory (e.g. createPostgresBackend from bullmq), or absent for Redis",
    );
  }
  // Another backend checks its own connection; a Redis one must name its server to us.
  const backend = resolveBackend(config.backend);
  const problem = backend === undefined ? connectionProblem(config.connection) : undefined;
  if (problem !== undefined) {
    throw new TypeError(
      `${owner}: option "twins.${twin}.connection" must be ${CONNECTION_EXPECTED}, received ${problem}. The client's options tell whether the twins share one Redis (one MULTI) or live on two (high availability)`,
    );
  }
  const queueName =
    config.queue === undefined
      ? pairedName
      : stringOption(owner, `twins.${twin}.queue`, config.queue);
  const prefix =
    config.prefix === undefined
      ? 'bull'
      : stringOption(owner, `twins.${twin}.prefix`, config.prefix);
  return {
    name: twin,
    queueName,
    prefix,
    connection: config.connection as ConnectionOptions,
    backend,
  };
}

/**
 * Every twin's configuration, checked before any connection opens, and whether they all
 * live on one server (then both copies of a job are written together: one MULTI on Redis, one
 * statement on PostgreSQL). Twins that share a server need queues of their own there.
 */
export function resolveTwins(
  owner: string,
  pairedName: string,
  entries: [string, TwinQueueOptions][],
  twinsOption: unknown,
): { configs: TwinConfig[]; oneServer: boolean } {
  const configs = entries.map(([twin, config]) => twinConfig(owner, pairedName, twin, config));
  configs.forEach((ca, i) => {
    for (const cb of configs.slice(i + 1)) {
      // PostgreSQL (any backend but Redis) keeps no prefix: one queue name is one queue there.
      const samePrefix = ca.prefix === cb.prefix || ca.backend !== undefined;
      if (sameServer(ca, cb) && ca.queueName === cb.queueName && samePrefix) {
        throw optionError(
          owner,
          'twins',
          twinsOption,
          'different queues: on one server give each twin its own `queue` name',
        );
      }
    }
  });
  const first = configs[0];
  const oneServer = first !== undefined && configs.every((c) => sameServer(first, c));
  return { configs, oneServer };
}

/**
 * Runs `op` on each of `twins` in parallel, each bounded by `timeoutMs` unless `bounded` is
 * false; resolves per twin. A twin that fails: rejects with its own error when no twin
 * succeeded (nothing took effect, as in BullMQ), else with `PartialTwinOperationError` naming
 * where it did. A conflicting recorded pairing is thrown as is.
 */
export async function onTwins<T>(
  operation: string,
  op: (twin: Twin) => Promise<T>,
  twins: readonly Twin[],
  timeoutMs: number,
  bounded = true,
): Promise<Record<string, T>> {
  const settled = await Promise.allSettled(
    twins.map((t) => (bounded ? withTimeout(op(t), timeoutMs, operation) : op(t))),
  );
  const done: Record<string, T> = {};
  const failed: Record<string, Error> = {};
  settled.forEach((result, i) => {
    const twin = (twins[i] as Twin).name;
    if (result.status === 'fulfilled') done[twin] = result.value;
    else {
      if (result.reason instanceof PairingMismatchError) throw result.reason;
      failed[twin] =
        result.reason instanceof Error ? result.reason : new Error(String(result.reason));
    }
  });
  const errors = Object.values(failed);
  if (errors.length === 0) return done;
  if (Object.keys(done).length === 0) throw errors[0];
  throw new PartialTwinOperationError(operation, Object.keys(done), failed);
}
