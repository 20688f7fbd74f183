import { PAIRING_KEY, type PairingRecord } from './pairing-record.js';
import { pairingStoreOf } from './pairing-store.js';
import type { Prepared } from './twin-writer.js';
import { type Twin, withTimeout } from './twins.js';

/**
 * Refuses (TypeError, before anything is written) a job whose `opts.parent` is a copy that
 * belongs to another twin than the copy being added there: with two queue names on one
 * Redis, both copies would become children of the one twin's parent copy, and the other
 * twin's parent copy, waiting for no child, could run first (it is the same pair). Each
 * twin reads the pairing recorded for the parent's queue on its own Redis: on two Redis
 * servers with one queue name, each copy's parent is its own twin's copy, as it should be.
 */
export async function checkParents<DataType, NameType extends string>(
  owner: string,
  prepared: Prepared<DataType, NameType>[],
  twins: readonly Twin[],
  timeoutMs: number,
): Promise<void> {
  const parents = [
    ...new Set(prepared.flatMap((job) => (job.opts.parent ? [job.opts.parent.queue] : []))),
  ];
  if (parents.length === 0) return;
  const reads = await Promise.allSettled(
    twins.map(async (t) => {
      const store = pairingStoreOf(t.queue);
      const raw = await withTimeout(
        Promise.all(parents.map((queueKey) => store.read(`${queueKey}:${PAIRING_KEY}`))),
        timeoutMs,
        'the read',
      );
      return raw.map((r) => {
        try {
          return (JSON.parse(r ?? 'null') as Partial<PairingRecord> | null) ?? undefined;
        } catch {
          return undefined;
        }
      });
    }),
  );
  reads.forEach((read, ti) => {
    // Unreadable: the add itself reports that twin.
    if (read.status === 'rejected') return;
    const twin = twins[ti] as Twin;
    read.value.forEach((pairing, pi) => {
      if (typeof pairing?.twin !== 'string' || pairing.twin === twin.name) return;
      const job = prepared.find((j) => j.opts.parent?.queue === parents[pi]);
      throw new TypeError(
        `${owner}: option "opts.parent" of job "${job?.opts.jobId}" names ${parents[pi]}:${job?.opts.parent?.id}, twin ${pairing.twin}'s copy of a job of PairedQueue "${pairing.pairedQueue}"; twin ${twin.name}'s copy would become its child too, and twin ${twin.name}'s own parent copy would not wait for it. Add the parent and its children together with PairedFlowProducer, which gives each twin's children that twin's parent`,
      );
    });
  });
}
