import type { Telemetry } from 'bullmq';
import {
  LOCK_OPTION_NAMES,
  type PairedLockOptions,
  type ResolvedLockOptions,
  resolveLockOptions,
} from '../lock/options.js';
import type { RedisConnection } from '../lock/scripts.js';
import { loggerOption, type PairedLogger } from '../observability/logger.js';
import { telemetryOption } from '../observability/tracing.js';
import {
  assertKnownOptions,
  booleanOption,
  enumOption,
  integerOption,
  optionError,
  show,
  stringOption,
} from '../validate.js';

export type LockStoreDownPolicy = 'wait' | 'run';

export interface PairedProcessorOptions
  extends Omit<PairedLockOptions, 'member' | 'pollIntervalMs'> {
  /** This side's twin name, as in `PairedQueue`'s `twins` (e.g. `'eu'`). */
  twin: string;
  /** Redis holding the pair records; both twins must reach it. May be the queue's own Redis. */
  lockConnection: RedisConnection;
  /**
   * Namespace of the pair records (a job's record id is `<group>:<jobId>`); both twins must
   * use the same one. Default: the group `PairedQueue` recorded for the job's queue (in its
   * Redis, at `<prefix>:<queue>:paired`): the twins' queue name when they share one, else the
   * `PairedQueue` name. For jobs of a queue no `PairedQueue` recorded: the job's queue name.
   * A group set here that differs from the recorded one is refused: each such copy fails with
   * `PairingMismatchError` (`ERR_PAIRED_MISCONFIGURED_GROUP`, also on the `error` event once
   * per queue), since twins whose groups differ would both run every job.
   */
  group?: string;
  /** Lock store unreachable: park the copy and retry (`'wait'`), or run it uncoordinated (`'run'`). Default `'wait'`. */
  whenLockStoreDown?: LockStoreDownPolicy;
  /** How long a copy parks while the lock store is unreachable, in ms. Default 1 000. */
  lockStoreRetryMs?: number;
  /**
   * Longest a shadow's copy stays parked before it re-checks by itself, in ms. It is woken
   * sooner when the pair settles, the executor dies or its lease runs out; this bounds the
   * wait only when this process dies meanwhile. Default: 10 × `leaseMs` (5 min).
   */
  maxParkMs?: number;
  /**
   * How long a shadow first waits in its worker slot for the executor to finish before it
   * parks its copy, in ms. Short jobs then complete without a park; 0 parks at once.
   * Default 100.
   */
  shadowHoldMs?: number;
  /**
   * Jobs whose executor `PairedQueue` chose (its `executor` option): how long this twin's
   * standby copy waits for the chosen twin to claim the job before running it itself, in
   * ms. It covers the chosen twin's queue backlog; a job that twin already runs is taken over
   * as soon as its process dies, whatever this says. The chosen twin starts a job before its
   * claim is answered only while the job is younger than half of this, so the two never
   * run it at once unless clocks differ by more than that. Both twins should use the same
   * value. Default 10 000.
   */
  standbyGraceMs?: number;
  /**
   * Write a `job.log` line for each paired decision (shows in Bull Board). Each line is one
   * more command on the job's path, so they are off unless asked for. Default false.
   */
  jobLogs?: boolean;
  /**
   * Where paired decisions are logged: a pino logger or anything with its `debug`/`info`/
   * `warn`/`error(fields, message)` shape. Ids and pair facts only, never job data.
   * Default: silent.
   */
  logger?: PairedLogger;
  /**
   * BullMQ telemetry (e.g. `new BullMQOtel('app')` from bullmq-otel) for a `paired <queue>`
   * span per copy with twin, role and fence attributes. Default: the worker's own
   * `telemetry` option, so a traced worker traces its pairing without being told twice.
   */
  telemetry?: Telemetry;
}

export interface ResolvedProcessorOptions {
  lock: ResolvedLockOptions;
  twin: string;
  group: string | undefined;
  whenLockStoreDown: LockStoreDownPolicy;
  lockStoreRetryMs: number;
  maxParkMs: number;
  shadowHoldMs: number;
  standbyGraceMs: number;
  jobLogs: boolean;
  logger: PairedLogger;
  telemetry: Telemetry | undefined;
}

const OWNER = 'PairedProcessor';
const OWN_OPTIONS = [
  'twin',
  'lockConnection',
  'group',
  'whenLockStoreDown',
  'lockStoreRetryMs',
  'maxParkMs',
  'shadowHoldMs',
  'standbyGraceMs',
  'jobLogs',
  'logger',
  'telemetry',
] as const;

export function resolveProcessorOptions(options: unknown): ResolvedProcessorOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(
      `${OWNER}: options must be an object with { twin, lockConnection }, received ${show(options)}`,
    );
  }
  assertKnownOptions(OWNER, options, [
    ...OWN_OPTIONS,
    // member is the twin; pollIntervalMs paces PairedLock's waiting shadows, and a
    // processor's shadows do not wait: they park.
    ...LOCK_OPTION_NAMES.filter((n) => n !== 'member' && n !== 'pollIntervalMs'),
  ]);
  const {
    twin,
    lockConnection,
    group,
    whenLockStoreDown,
    lockStoreRetryMs,
    maxParkMs,
    shadowHoldMs,
    standbyGraceMs,
    jobLogs,
    logger,
    telemetry,
    ...lockOptions
  } = options as Partial<PairedProcessorOptions>;
  const twinName = stringOption(OWNER, 'twin', twin);
  if (twinName.includes(':')) throw optionError(OWNER, 'twin', twin, 'free of ":"');
  if (
    typeof lockConnection !== 'object' ||
    lockConnection === null ||
    typeof lockConnection.evalsha !== 'function'
  ) {
    throw optionError(
      OWNER,
      'lockConnection',
      lockConnection,
      'an ioredis Redis or Cluster instance',
    );
  }
  const lock = resolveLockOptions({ ...lockOptions, member: twinName }, OWNER);
  return {
    lock,
    twin: twinName,
    group: group === undefined ? undefined : stringOption(OWNER, 'group', group),
    whenLockStoreDown: enumOption(OWNER, 'whenLockStoreDown', whenLockStoreDown ?? 'wait', [
      'wait',
      'run',
    ]),
    lockStoreRetryMs: integerOption(OWNER, 'lockStoreRetryMs', lockStoreRetryMs ?? 1_000, {
      min: 10,
    }),
    maxParkMs: integerOption(OWNER, 'maxParkMs', maxParkMs ?? 10 * lock.leaseMs, { min: 10 }),
    shadowHoldMs: integerOption(OWNER, 'shadowHoldMs', shadowHoldMs ?? 100, { min: 0 }),
    standbyGraceMs: integerOption(OWNER, 'standbyGraceMs', standbyGraceMs ?? 10_000, {
      min: 10,
    }),
    // Off by default: a job.log line per copy is a command per copy on the job's path.
    jobLogs: booleanOption(OWNER, 'jobLogs', jobLogs ?? false),
    logger: loggerOption(OWNER, logger),
    telemetry: telemetryOption(OWNER, telemetry),
  };
}
