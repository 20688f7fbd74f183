import { quoteSchemaName } from 'bullmq';

/**
 * Where a twin's queue keeps its pairing record (`<prefix>:<queue>:paired`): beside the
 * queue's own data, in whatever the queue's BullMQ backend runs on. Redis (any driver BullMQ
 * adapts): a key, written by a script. PostgreSQL: a row of a small table in the queue's
 * schema.
 */
export interface PairingStore {
  /** The raw record, or undefined when none. */
  read(key: string): Promise<string | undefined>;
  /**
   * Writes `value` unless the key holds a record of another group: returns that one's raw
   * JSON then, undefined when written.
   */
  writeUnlessOtherGroup(key: string, value: string, group: string): Promise<string | undefined>;
}

/** A BullMQ Queue or Worker (a job's `queue`): its backend holds the client or the pool. */
export interface BackendSource {
  readonly name: string;
  readonly backend: unknown;
}

/**
 * What BullMQ 6's client interface (`IRedisClient`) offers on every driver it adapts (ioredis,
 * node-redis, Valkey GLIDE, Bun): a script is defined once per client and run by name.
 */
interface KeyClient {
  get(key: string): Promise<string | null | undefined>;
  defineCommand(name: string, definition: { numberOfKeys: number; lua: string }): void;
  runCommand(name: string, args: string[]): Promise<unknown>;
}

const WRITE_COMMAND = 'bullmqPairedWritePairing';

/** Writes ARGV[1] at KEYS[1] unless it holds a record whose group is not ARGV[2] (returned). */
const WRITE = `
local current = redis.call('GET', KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == 'table' and type(rec.group) == 'string' and rec.group ~= ARGV[2] then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return false
`;

function redisStore(client: Promise<unknown>): PairingStore {
  return {
    async read(key) {
      return (await ((await client) as KeyClient).get(key)) ?? undefined;
    },
    async writeUnlessOtherGroup(key, value, group) {
      const c = (await client) as KeyClient;
      if (typeof (c as unknown as Record<string, unknown>)[WRITE_COMMAND] !== 'function') {
        c.defineCommand(WRITE_COMMAND, { numberOfKeys: 1, lua: WRITE });
      }
      const conflict = await c.runCommand(WRITE_COMMAND, [key, value, group]);
      return typeof conflict === 'string' ? conflict : undefined;
    },
  };
}

interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

/** BullMQ's PostgreSQL backend: its connection's pool and schema (`PostgresConnection`). */
interface PostgresBackendLike {
  connection: { pool: PgQueryable; schema: string };
  waitUntilReady?(): Promise<void>;
}

function isPostgresBackend(backend: unknown): backend is PostgresBackendLike {
  const b = backend as Partial<PostgresBackendLike> | null | undefined;
  return (
    typeof b?.connection?.pool?.query === 'function' && typeof b.connection.schema === 'string'
  );
}

/** Per pool: the schemas whose table this process made (or found), so it is made once. */
const tables = new WeakMap<PgQueryable, Map<string, Promise<void>>>();

/** PostgreSQL's undefined_table: the pairing table is not made yet. */
const UNDEFINED_TABLE = '42P01';

function postgresStore(backend: PostgresBackendLike): PairingStore {
  const { pool, schema } = backend.connection;
  const table = `${quoteSchemaName(schema)}.bullmq_paired_pairing`;
  /**
   * Runs `query`; the first time the table is missing, makes it and runs `query` again. Only
   * then: `CREATE TABLE IF NOT EXISTS` needs the CREATE privilege on the schema even when the
   * table exists, which a least-privileged role (BullMQ's `migrate: false`) lacks.
   */
  const withTable = async <T>(query: () => Promise<T>): Promise<T> => {
    // BullMQ's migrations make the schema: wait for them first.
    await backend.waitUntilReady?.();
    try {
      return await query();
    } catch (err) {
      if ((err as { code?: string }).code !== UNDEFINED_TABLE) throw err;
    }
    let made = tables.get(pool);
    if (made === undefined) {
      made = new Map();
      tables.set(pool, made);
    }
    let done = made.get(schema);
    if (done === undefined) {
      done = createTable(pool, table);
      done.catch(() => made?.delete(schema));
      made.set(schema, done);
    }
    await done;
    return query();
  };
  const read = async (key: string): Promise<string | undefined> => {
    const { rows } = await pool.query(`SELECT value FROM ${table} WHERE key = $1`, [key]);
    const value = rows[0]?.value;
    return typeof value === 'string' ? value : undefined;
  };
  return {
    read: (key) => withTable(() => read(key)),
    writeUnlessOtherGroup: (key, value, group) =>
      withTable(async () => {
        // One statement: the row is written unless it holds another group's record.
        const { rows } = await pool.query(
          `INSERT INTO ${table} (key, value, pairing_group) VALUES ($1, $2, $3)
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, pairing_group = EXCLUDED.pairing_group
             WHERE ${table}.pairing_group = EXCLUDED.pairing_group
           RETURNING 1`,
          [key, value, group],
        );
        if (rows.length > 0) return undefined;
        // Not written: another group's row, read in a statement of its own (one that started
        // with the insert may not see a row another session committed meanwhile).
        return read(key);
      }),
  };
}

/** unique_violation, duplicate_object, duplicate_table. */
const CREATE_RACE_CODES = new Set(['23505', '42710', '42P07']);

async function createTable(pool: PgQueryable, table: string): Promise<void> {
  const create = `CREATE TABLE IF NOT EXISTS ${table} (
    key text PRIMARY KEY,
    value text NOT NULL,
    pairing_group text NOT NULL
  )`;
  try {
    await pool.query(create);
  } catch (err) {
    // Two processes creating it at once: one wins, the other's catalog insert collides, as
    // unique_violation, or duplicate_object for the table's row type ("type … already
    // exists"), or duplicate_table; the table is there either way.
    if (!CREATE_RACE_CODES.has((err as { code?: string }).code ?? '')) throw err;
  }
}

/** The pairing store of a queue's or worker's backend. */
export function pairingStoreOf(source: BackendSource): PairingStore {
  const backend = source.backend;
  if (isPostgresBackend(backend)) return postgresStore(backend);
  const client = (backend as { client?: Promise<unknown> } | undefined)?.client;
  if (client === undefined) {
    throw new TypeError(
      `bullmq-paired: queue "${source.name}" runs on a BullMQ backend that keeps no pairing record (neither a Redis client nor a PostgreSQL pool)`,
    );
  }
  return redisStore(client);
}
