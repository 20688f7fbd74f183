/**
 * The lock-store names pairing gives its own things: a job's record id and a twin's list of
 * live processes. The lock knows neither (it is given ids and keys); the layout of the keys
 * it keeps itself is in src/lock/keys.ts.
 */

/** The record id `PairedProcessor` gives a job: its group (by default its queue's name), then its id. */
export function recordId(group: string, jobId: string): string {
  return `${group}:${jobId}`;
}

/** What every record id of `group` starts with; undefined (every id) when no group is given. */
export function groupIdPrefix(group: string | undefined): string | undefined {
  return group === undefined ? undefined : recordId(group, '');
}

/** The processes working one twin's queue: each one's liveness channel, scored by last sign of life. */
export function siblingsKey(prefix: string, twin: string, queue: string): string {
  return `${prefix}:siblings:${twin}:${queue}`;
}
