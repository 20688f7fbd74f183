import type { Job } from 'bullmq';
import { AddRefusedError, DeduplicationMismatchError } from '../errors.js';
import type { Copy, Prepared } from './twin-writer.js';

/** One job as added to both twins: one id, one BullMQ job per twin. */
export interface PairedJob<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> {
  /**
   * The id BullMQ returned on both twins: the one asked for, or, for an add that BullMQ
   * deduplicated (`opts.deduplication`), the id of the existing job it was folded into.
   */
  id: string;
  jobs: Record<string, Job<DataType, ResultType, NameType>>;
}

/** Jobs some twin refused: their ids, the first error per twin, and the twins that took them. */
interface Refused {
  ids: string[];
  errors: Record<string, Error>;
  added: Set<string>;
}

type Write<DataType, ResultType, NameType extends string> = (
  jobs: Prepared<DataType, NameType>[][],
  ids: string[],
) => Promise<Copy<DataType, ResultType, NameType>[][]>;

/**
 * Turns what each twin answered for each job (`copies[ti][i]`) into paired jobs: one id on
 * every twin. A twin that deduplicated a job the other added anew gets its copy added again
 * without the deduplication option (through `write`), so it runs once, paired. Throws
 * `AddRefusedError` for jobs a twin refused and `DeduplicationMismatchError` for jobs the
 * twins folded into different jobs, after everything else was added.
 */
export async function pairAdded<DataType, ResultType, NameType extends string>(
  twins: readonly string[],
  prepared: Prepared<DataType, NameType>[],
  copies: Copy<DataType, ResultType, NameType>[][],
  write: Write<DataType, ResultType, NameType>,
): Promise<PairedJob<DataType, ResultType, NameType>[]> {
  const results: PairedJob<DataType, ResultType, NameType>[] = [];
  const refused: Refused = { ids: [], errors: {}, added: new Set() };
  const mismatches: DeduplicationMismatchError[] = [];
  // Copies some twin deduplicated while the other added the job anew: completed below.
  const incomplete: { ti: number; i: number }[] = [];
  const paired = (id: string, row: Copy<DataType, ResultType, NameType>[]) => ({
    id,
    jobs: Object.fromEntries(row.map((c, ti) => [twins[ti] as string, c.job])),
  });
  prepared.forEach((job, i) => {
    const row = copies.map((perTwin) => perTwin[i] as Copy<DataType, ResultType, NameType>);
    const id = job.opts.jobId;
    if (row.some((c) => c.answer instanceof Error)) {
      refused.ids.push(id);
      row.forEach((c, ti) => {
        const twin = twins[ti] as string;
        if (c.answer instanceof Error) refused.errors[twin] ??= c.answer;
        else if (c.answer === id) refused.added.add(twin);
      });
      return;
    }
    const answers = row.map((c) => c.answer as string);
    if (answers.every((a) => a === answers[0])) {
      results[i] = paired(answers[0] as string, row);
    } else if (answers.includes(id)) {
      // One twin's deduplication key had expired or been removed (its job finished there
      // first): that twin added the job. Add it to the other one too, so it runs once, paired.
      answers.forEach((a, ti) => {
        if (a !== id) incomplete.push({ ti, i });
      });
      results[i] = paired(id, row);
    } else {
      mismatches.push(
        new DeduplicationMismatchError(
          id,
          job.opts.deduplication?.id,
          Object.fromEntries(answers.map((a, ti) => [twins[ti] as string, a])),
        ),
      );
    }
  });
  if (incomplete.length > 0) {
    await completePairs(twins, prepared, incomplete, results, refused, write);
  }
  if (refused.ids.length > 0) {
    throw new AddRefusedError(refused.ids, refused.errors, [...refused.added]);
  }
  if (mismatches.length > 0) throw mismatches[0];
  return results;
}

/** Adds, without its deduplication option, each copy a twin deduplicated into another job. */
async function completePairs<DataType, ResultType, NameType extends string>(
  twins: readonly string[],
  prepared: Prepared<DataType, NameType>[],
  incomplete: { ti: number; i: number }[],
  results: PairedJob<DataType, ResultType, NameType>[],
  refused: Refused,
  write: Write<DataType, ResultType, NameType>,
): Promise<void> {
  const indexes = twins.map((_, ti) => incomplete.filter((c) => c.ti === ti).map(({ i }) => i));
  const perTwin = indexes.map((list) =>
    list.map((i) => {
      const job = prepared[i] as Prepared<DataType, NameType>;
      const { deduplication: _deduplication, ...opts } = job.opts;
      return { ...job, opts };
    }),
  );
  const ids = incomplete.map(({ i }) => (prepared[i] as Prepared<DataType, NameType>).opts.jobId);
  const copies = await write(perTwin, ids);
  copies.forEach((list, ti) => {
    const twin = twins[ti] as string;
    list.forEach((copy, n) => {
      const i = indexes[ti]?.[n] as number;
      const id = (prepared[i] as Prepared<DataType, NameType>).opts.jobId;
      const paired = results[i];
      if (copy.answer === id && paired !== undefined) {
        paired.jobs[twin] = copy.job;
        return;
      }
      // Refused, or deduplicated again: the job stays only where it was added.
      refused.ids.push(id);
      refused.errors[twin] ??=
        copy.answer instanceof Error
          ? copy.answer
          : new Error(`deduplicated into job "${copy.answer}" even without its deduplication`);
      for (const t of twins) if (t !== twin) refused.added.add(t);
    });
  });
}
