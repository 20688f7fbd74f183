import {
  assertKnownOptions,
  booleanOption,
  enumOption,
  integerOption,
  optionError,
  show,
  stringOption,
} from '../validate.js';
import type { Durability } from './durability.js';

export type PeerFailurePolicy = 'takeover' | 'respect';

export interface PairedLockOptions {
  /** Name of this member of the pair (e.g. the region: `'eu'`). Shown as the record's owner. */
  member: string;
  /** How long a grant lasts without a heartbeat, in ms. The seed's `lockTimeout`. Default 30 000. */
  leaseMs?: number;
  /** How often the executor extends its lease, in ms. Must be below `leaseMs`. Default `leaseMs / 3`. */
  heartbeatMs?: number;
  /** How long a record is kept after its last write, in ms. Default 86 400 000 (24 h). */
  retentionMs?: number;
  /**
   * Fallback re-check period of a waiting shadow, in ms, in case a settle notification is
   * lost. The seed's `otherAttemptInterval`. Default 1 000.
   */
  pollIntervalMs?: number;
  /** What a shadow does when the executor throws: run the task itself, or fail too. Default `'takeover'`. */
  onPeerFailure?: PeerFailurePolicy;
  /** Key and channel prefix. Default `'paired'`. */
  prefix?: string;
  /**
   * Detect a dead executor by its closed connection instead of waiting for its lease (on a
   * Cluster: a session key and a sharded channel per master, Redis ≥ 7). Default true.
   */
  liveness?: boolean;
  /**
   * How long this process's session key lives on the lock store past its last refresh, in
   * ms, on one Redis or a Sentinel's master: a worker thread with its own connection
   * refreshes it every `sessionTtlMs / 2`, so a process cut off from the lock store
   * (connections open, packets lost, as when a region's network fails) is taken over this
   * long after its last refresh, while a main thread busy for seconds (a CPU-bound job) is
   * not; one silent for `leaseMs` is. At most `leaseMs / 2`; 0 keeps the key from the main
   * thread with a life of `leaseMs` (as on a Cluster). Default 3 000 when `leaseMs` is at
   * least 6 000, else 0.
   */
  sessionTtlMs?: number;
  /** How often a shadow checks its executors' liveness channels, in ms. Default 50. */
  livenessIntervalMs?: number;
  /**
   * How long an executor's channel must stay empty before a takeover, in ms, at least.
   * Default 100. A process far from the lock store derives a longer one from its measured
   * round trip (3 × round trip + 50 ms, at most `leaseMs / 4`) and keeps it with its grants.
   */
  livenessGraceMs?: number;
  /** Largest result stored in a record, as JSON bytes; larger fails the run. Default 65 536. */
  maxResultBytes?: number;
  /**
   * Count a grant or settle only once `replicas` replicas of the lock store hold it (`WAIT
   * replicas timeoutMs` after each), so a failover cannot undo it. A grant not acknowledged in
   * time is given back and treated like an unreachable lock store (`NotReplicatedError`); a
   * settle is retried. On a Cluster each write goes with its own WAIT to the record's master.
   * Default: off.
   */
  durability?: Durability;
  /**
   * Longest a lock-store call on a task's path may take (the start-up check and subscribe,
   * each acquire), in ms, whatever the connection's own retry settings
   * (`maxRetriesPerRequest`, back-off): past it the call is given up with
   * `LockStoreUnavailableError` (a processor parks the copy or runs it uncoordinated, per
   * `whenLockStoreDown`). Settles are not bounded: they retry until stored. Default 10 000.
   */
  lockStoreTimeoutMs?: number;
  /**
   * Accept a lock store whose `maxmemory-policy` evicts keys (`allkeys-lru`, `volatile-ttl`,
   * …). An evicted pair record or session lets the twin run its job again, with the same
   * fence, so by default such a store is refused at start-up (`LockStoreMisconfiguredError`
   * naming the policy and the fix, `maxmemory-policy noeviction`). `true`: it is used, and
   * reported once as a `LockStoreEvictionError` on the `error` event. Default false.
   */
  allowEviction?: boolean;
}

/** The session key's life under a keeper thread, by default (see `sessionTtlMs`). */
export const SESSION_TTL_MS = 3_000;

export type ResolvedLockOptions = Required<Omit<PairedLockOptions, 'durability'>> & {
  durability: Durability | undefined;
};

export const LOCK_OPTION_NAMES = [
  'member',
  'leaseMs',
  'heartbeatMs',
  'retentionMs',
  'pollIntervalMs',
  'onPeerFailure',
  'prefix',
  'liveness',
  'sessionTtlMs',
  'livenessIntervalMs',
  'livenessGraceMs',
  'maxResultBytes',
  'durability',
  'lockStoreTimeoutMs',
  'allowEviction',
] as const;

export const lockDefaults = {
  leaseMs: 30_000,
  retentionMs: 86_400_000,
  pollIntervalMs: 1_000,
  onPeerFailure: 'takeover',
  prefix: 'paired',
  liveness: true,
  livenessIntervalMs: 50,
  livenessGraceMs: 100,
  maxResultBytes: 65_536,
  lockStoreTimeoutMs: 10_000,
  allowEviction: false,
} as const satisfies Partial<PairedLockOptions>;

const DAY_MS = 86_400_000;

export function resolveLockOptions(options: unknown, OWNER = 'PairedLock'): ResolvedLockOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(
      `${OWNER}: options must be an object with at least { member }, received ${show(options)}`,
    );
  }
  assertKnownOptions(OWNER, options, LOCK_OPTION_NAMES);
  const o = options as Partial<Record<(typeof LOCK_OPTION_NAMES)[number], unknown>>;
  const pick = <K extends keyof typeof lockDefaults>(name: K): unknown =>
    o[name] ?? lockDefaults[name];

  const member = stringOption(OWNER, 'member', o.member);
  const leaseMs = integerOption(OWNER, 'leaseMs', pick('leaseMs'), { min: 100, max: 365 * DAY_MS });
  const heartbeatMs = integerOption(
    OWNER,
    'heartbeatMs',
    o.heartbeatMs ?? Math.floor(leaseMs / 3),
    {
      min: 10,
    },
  );
  if (heartbeatMs >= leaseMs) {
    throw optionError(OWNER, 'heartbeatMs', heartbeatMs, `below leaseMs (${leaseMs})`);
  }
  const retentionMs = integerOption(OWNER, 'retentionMs', pick('retentionMs'), { min: 1_000 });
  if (retentionMs < leaseMs) {
    throw optionError(OWNER, 'retentionMs', retentionMs, `at least leaseMs (${leaseMs})`);
  }
  const durability = durabilityOption(OWNER, o.durability, heartbeatMs);
  const sessionTtlMs = integerOption(
    OWNER,
    'sessionTtlMs',
    o.sessionTtlMs ?? (leaseMs >= 2 * SESSION_TTL_MS ? SESSION_TTL_MS : 0),
    { min: 0 },
  );
  if (sessionTtlMs !== 0 && (sessionTtlMs < 300 || sessionTtlMs * 2 > leaseMs)) {
    throw optionError(
      OWNER,
      'sessionTtlMs',
      sessionTtlMs,
      `0 (off) or between 300 and leaseMs / 2 (${Math.floor(leaseMs / 2)})`,
    );
  }
  const lockStoreTimeoutMs = integerOption(
    OWNER,
    'lockStoreTimeoutMs',
    pick('lockStoreTimeoutMs'),
    { min: 100 },
  );
  if (durability !== undefined && lockStoreTimeoutMs <= durability.timeoutMs) {
    // A grant waits up to durability.timeoutMs for its replicas, inside the acquire.
    throw optionError(
      OWNER,
      'lockStoreTimeoutMs',
      lockStoreTimeoutMs,
      `above durability.timeoutMs (${durability.timeoutMs}): a grant waits that long for its replicas`,
    );
  }
  const prefix = stringOption(OWNER, 'prefix', pick('prefix'));
  if (prefix.includes('{') || prefix.includes('}')) {
    throw optionError(
      OWNER,
      'prefix',
      prefix,
      'free of "{" and "}" (keys add their own hash tags)',
    );
  }
  return {
    member,
    leaseMs,
    heartbeatMs,
    retentionMs,
    pollIntervalMs: integerOption(OWNER, 'pollIntervalMs', pick('pollIntervalMs'), { min: 10 }),
    onPeerFailure: enumOption(OWNER, 'onPeerFailure', pick('onPeerFailure'), [
      'takeover',
      'respect',
    ]),
    prefix,
    liveness: booleanOption(OWNER, 'liveness', pick('liveness')),
    sessionTtlMs,
    livenessIntervalMs: integerOption(OWNER, 'livenessIntervalMs', pick('livenessIntervalMs'), {
      min: 10,
    }),
    livenessGraceMs: integerOption(OWNER, 'livenessGraceMs', pick('livenessGraceMs'), { min: 0 }),
    maxResultBytes: integerOption(OWNER, 'maxResultBytes', pick('maxResultBytes'), { min: 16 }),
    durability,
    lockStoreTimeoutMs,
    allowEviction: booleanOption(OWNER, 'allowEviction', pick('allowEviction')),
  };
}

const DURABILITY_KEYS = ['replicas', 'timeoutMs'];

/** `{ replicas, timeoutMs }` or undefined (off). */
function durabilityOption(
  OWNER: string,
  value: unknown,
  heartbeatMs: number,
): Durability | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw optionError(OWNER, 'durability', value, 'an object { replicas, timeoutMs }');
  }
  for (const key of Object.keys(value)) {
    if (!DURABILITY_KEYS.includes(key)) {
      throw new TypeError(
        `${OWNER}: unknown option "durability.${key}"; known options are "durability.replicas", "durability.timeoutMs"`,
      );
    }
  }
  const d = value as Partial<Record<keyof Durability, unknown>>;
  const replicas = integerOption(OWNER, 'durability.replicas', d.replicas, { min: 1, max: 100 });
  const timeoutMs = integerOption(OWNER, 'durability.timeoutMs', d.timeoutMs, { min: 1 });
  // A WAIT holds up every command queued behind it on the lock connection, session
  // refreshes and heartbeats included.
  if (timeoutMs >= heartbeatMs) {
    throw optionError(
      OWNER,
      'durability.timeoutMs',
      timeoutMs,
      `below heartbeatMs (${heartbeatMs}): a WAIT holds up the lock connection`,
    );
  }
  return { replicas, timeoutMs };
}
