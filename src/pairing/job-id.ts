import { randomUUID } from 'node:crypto';
import { InvalidJobIdError } from '../errors.js';

/**
 * The same id names a job in both twins and its pair record, so it must be one that BullMQ
 * accepts as a custom id (not digits only: those clash with its own counters) and that
 * keeps our key names unambiguous (no ':').
 */
export function pairableJobId(jobId: unknown): string {
  if (jobId === undefined) return randomUUID();
  if (typeof jobId !== 'string') throw new InvalidJobIdError(jobId, 'is not a string');
  if (jobId.length === 0) throw new InvalidJobIdError(jobId, 'is empty');
  if (/^\d+$/.test(jobId))
    throw new InvalidJobIdError(jobId, 'has only digits, which BullMQ refuses as a custom id');
  if (jobId.includes(':')) throw new InvalidJobIdError(jobId, 'contains ":"');
  return jobId;
}
