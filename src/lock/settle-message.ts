import { addressTag } from './keys.js';

/** A record that became done, as its settle message told it (the result fit in the message). */
export interface SettledDone {
  fence: number;
  owner: string;
  /** The stored result, JSON. */
  result: string;
  /** The executor's last progress, JSON; null when none. */
  progress: string | null;
}

/**
 * The ticket tag a settle message names, and the outcome it carries. The scripts encode
 * `[key, field]` (a grant announced to a standby) or `[key, field, state, fence, owner,
 * result, progress]` (a settle; result and progress '' when too large to ride along) with
 * Redis' cjson, which escapes '/' as '\/' where `JSON.stringify` does not: decoded and
 * encoded again, a key with a '/' (a job id, a queue name) still wakes its waiters.
 */
export function parseSettled(message: string): { tag: string; done?: SettledDone } {
  try {
    const parsed: unknown = JSON.parse(message);
    if (Array.isArray(parsed) && parsed.length >= 2) {
      const tag = addressTag(String(parsed[0]), String(parsed[1]));
      const [, , state, fence, owner, result, progress] = parsed as unknown[];
      if (state !== 'done' || typeof result !== 'string' || result === '') return { tag };
      return {
        tag,
        done: {
          fence: Number(fence),
          owner: String(owner),
          result,
          progress: typeof progress === 'string' && progress !== '' ? progress : null,
        },
      };
    }
  } catch {
    // not one of ours: matches no ticket
  }
  return { tag: message };
}
