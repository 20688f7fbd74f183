import { PairingMismatchError } from '../errors.js';
import { pairingStoreOf } from './pairing-store.js';

/**
 * How `PairedQueue` paired a queue, kept in that queue's Redis at `<prefix>:<queue>:paired`
 * (next to BullMQ's own keys), so that the twin's workers can read it.
 */
export interface PairingRecord {
  /** The `PairedQueue` name. */
  pairedQueue: string;
  /** Namespace of the pair records (`<group>:<jobId>`) that both twins' workers must use. */
  group: string;
  /** The twin this queue belongs to. */
  twin: string;
  /** Every twin's queue. */
  twins: Record<string, { queue: string; prefix: string }>;
}

/** `queue.toKey(PAIRING_KEY)` is `<prefix>:<queue>:paired`. */
export const PAIRING_KEY = 'paired';

/**
 * The group `PairedQueue` records: the queue name when both twins use the same one (two
 * Redis servers; it is what `PairedProcessor` used by default before the group was recorded,
 * so upgrading renames no record), else the `PairedQueue` name (what the docs told users to
 * set as `group`).
 */
export function pairingGroup(pairedQueue: string, queueNames: readonly string[]): string {
  const [first] = queueNames;
  return first !== undefined && queueNames.every((name) => name === first) ? first : pairedQueue;
}

/** A BullMQ Queue, Worker (a job's `queue`) or anything with its key builder and backend. */
export interface PairingSource {
  readonly name: string;
  toKey(type: string): string;
  readonly backend: unknown;
}

function twinsText(record: PairingRecord): string {
  return Object.entries(record.twins)
    .map(([twin, { queue }]) => `${twin} → ${queue}`)
    .join(', ');
}

function parseRecord(raw: string | null | undefined): PairingRecord | undefined {
  if (raw === null || raw === undefined) return undefined;
  try {
    const value = JSON.parse(raw) as Partial<PairingRecord> | null;
    if (
      typeof value?.group === 'string' &&
      typeof value.twin === 'string' &&
      typeof value.twins === 'object' &&
      value.twins !== null
    ) {
      return value as PairingRecord;
    }
  } catch {
    // not ours: treated as absent
  }
  return undefined;
}

/**
 * Records the pairing in `source`'s queue Redis. Rejects with `PairingMismatchError` when the
 * queue is paired under another group already: re-pairing it would give the jobs in flight
 * other record ids, and run them twice.
 */
export async function writePairingRecord(
  source: PairingSource,
  record: PairingRecord,
): Promise<void> {
  const key = source.toKey(PAIRING_KEY);
  const conflict = await pairingStoreOf(source).writeUnlessOtherGroup(
    key,
    JSON.stringify(record),
    record.group,
  );
  if (conflict === undefined) return;
  const recorded = parseRecord(conflict);
  throw new PairingMismatchError({
    by: 'PairedQueue',
    option: 'group',
    queue: source.name,
    key,
    recorded: recorded?.group ?? conflict,
    configured: record.group,
    twins: recorded ? twinsText(recorded) : '',
  });
}

/**
 * A worker's view of the pairing records of the queues it consumes: the group of their pair
 * record ids, checked against its own `group` and `twin` options. Records are cached once
 * read; a queue without one (jobs not added by a PairedQueue, or by a version before it
 * recorded pairings) is read again at its next job, since a PairedQueue writes it before its
 * first add.
 */
export class PairingCheck {
  private readonly known = new Map<string, PairingRecord>();
  private readonly reading = new Map<string, Promise<PairingRecord | undefined>>();
  private readonly reported = new Set<string>();

  constructor(
    private readonly twin: string,
    private readonly group: string | undefined,
    private readonly report: (err: Error) => void,
  ) {}

  /**
   * The group of the record ids of `source`'s jobs: the `group` option, else the recorded
   * group, else the queue name. Rejects with `PairingMismatchError` (reported once per queue)
   * when the `group` option differs from the recorded group; a `twin` option that differs from
   * the recorded twin is only reported.
   */
  async groupOf(source: PairingSource): Promise<string> {
    const key = source.toKey(PAIRING_KEY);
    let record = this.known.get(key);
    if (record === undefined) {
      try {
        record = await this.read(source, key);
      } catch (err) {
        // Unreadable now: a configured group is used unchecked; without one the job cannot
        // know its record id, and fails (BullMQ retries it per its attempts).
        if (this.group !== undefined) return this.group;
        throw err;
      }
    }
    if (record === undefined) return this.group ?? source.name;
    const found = { by: 'PairedProcessor' as const, queue: source.name, key };
    if (record.twin !== this.twin) {
      this.once(
        `${key} twin`,
        new PairingMismatchError({
          ...found,
          option: 'twin',
          recorded: record.twin,
          configured: this.twin,
          twins: twinsText(record),
        }),
      );
    }
    if (this.group === undefined || this.group === record.group) return record.group;
    const mismatch = new PairingMismatchError({
      ...found,
      option: 'group',
      recorded: record.group,
      configured: this.group,
      twins: twinsText(record),
    });
    this.once(`${key} group`, mismatch);
    throw mismatch;
  }

  /**
   * The twin `source`'s queue belongs to, as `PairedQueue` recorded it (read by `groupOf`);
   * undefined when not known. It decides which copies a chosen executor's twin runs: a
   * `twin` option that names another twin is reported, and this one is used.
   */
  recordedTwin(source: PairingSource): string | undefined {
    return this.known.get(source.toKey(PAIRING_KEY))?.twin;
  }

  /**
   * The queue name of `twin` in `source`'s pairing, as recorded (one Redis: the twins' queues
   * differ), else `source`'s own name (two Redis servers, one queue name). Read from the
   * record `groupOf` cached.
   */
  twinQueue(source: PairingSource, twin: string): string {
    return this.known.get(source.toKey(PAIRING_KEY))?.twins[twin]?.queue ?? source.name;
  }

  /** As `groupOf`, but undefined when the `group` option contradicts the record (reported). */
  async groupIfPaired(source: PairingSource): Promise<string | undefined> {
    try {
      return await this.groupOf(source);
    } catch (err) {
      if (err instanceof PairingMismatchError) return undefined;
      throw err;
    }
  }

  private once(what: string, err: Error): void {
    if (this.reported.has(what)) return;
    this.reported.add(what);
    this.report(err);
  }

  private read(source: PairingSource, key: string): Promise<PairingRecord | undefined> {
    let reading = this.reading.get(key);
    if (reading === undefined) {
      reading = pairingStoreOf(source)
        .read(key)
        .then((raw) => {
          const record = parseRecord(raw);
          if (record !== undefined) this.known.set(key, record);
          return record;
        })
        .finally(() => this.reading.delete(key));
      this.reading.set(key, reading);
    }
    return reading;
  }
}
