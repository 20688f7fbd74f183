import type { InspectReport, RecordReport } from './inspect.js';
import type { CopyReport } from './queues.js';
import type { StatsReport } from './stats.js';

/** Columns padded to their widest cell, two spaces apart; no trailing spaces. */
export function table(rows: readonly (readonly string[])[], indent = '  '): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map(
      (row) =>
        indent +
        row
          .map((cell, i) => cell.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd(),
    )
    .join('\n');
}

/** 850 ms, 12.3 s, 4 min 5 s, 23 h 59 min; negative values say how long ago. */
export function duration(ms: number): string {
  const abs = Math.abs(ms);
  const text =
    abs < 1_000
      ? `${Math.round(abs)} ms`
      : abs < 60_000
        ? `${(abs / 1_000).toFixed(1)} s`
        : abs < 3_600_000
          ? `${Math.floor(abs / 60_000)} min ${Math.floor((abs % 60_000) / 1_000)} s`
          : `${Math.floor(abs / 3_600_000)} h ${Math.floor((abs % 3_600_000) / 60_000)} min`;
  return ms < 0 ? `over ${text} ago` : text;
}

const DASH = '-';

function when(ms: number | null): string {
  return ms === null || ms <= 0 ? DASH : new Date(ms).toISOString();
}

/** One line of JSON, cut at `max` characters: a table cell, not a dump. */
function brief(value: unknown, max = 60): string {
  if (value === null || value === undefined) return DASH;
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function recordRows(r: RecordReport): string[][] {
  const lease =
    r.leaseLeftMs === null ? DASH : r.leaseLeftMs < 0 ? 'ran out' : duration(r.leaseLeftMs);
  return [
    ['key', r.field === null ? r.key : `${r.key} field ${r.field}`],
    ['state', r.state],
    ['owner', r.owner],
    ['fence', String(r.fence)],
    ['attempts', String(r.attempts)],
    ['lease left', lease],
    ...(r.ownerConnected === null
      ? []
      : [['owner process', r.ownerConnected ? 'connected' : 'gone (no liveness subscriber)']]),
    ['takeover', r.takeover ?? DASH],
    ['result', r.state === 'done' ? brief(r.result) : DASH],
    ['error', r.error === null ? DASH : brief(`${r.error.name}: ${r.error.message}`)],
    ['created', when(r.createdAt)],
    ['updated', when(r.updatedAt)],
    ['retention', r.retentionLeftMs < 0 ? 'no expiry' : `${duration(r.retentionLeftMs)} left`],
  ];
}

function copyRow(c: CopyReport): string[] {
  if (!c.found) return [c.queue, c.redis, 'absent', DASH, DASH, DASH, DASH];
  const left = c.delayedUntil === null ? null : c.delayedUntil - Date.now();
  const delayed =
    left === null
      ? DASH
      : `${c.parked ? 'parked, ' : ''}${left > 0 ? `back in ${duration(left)}` : 'due now'}`;
  return [
    c.queue,
    c.redis,
    c.state ?? DASH,
    `${c.attemptsMade ?? 0}/${c.attemptsStarted ?? 0}`,
    when(c.finishedOn),
    delayed,
    brief(c.failedReason),
  ];
}

export function formatInspect(report: InspectReport): string {
  const lines = [
    `pair record ${report.recordId} on ${report.lockStore}`,
    report.record === null
      ? '  none (never run, or past retention)'
      : table(recordRows(report.record)),
  ];
  if (report.copies.length > 0) {
    lines.push(
      'twin copies',
      table([
        ['queue', 'redis', 'state', 'made/started', 'finished', 'delay', 'failed reason'],
        ...report.copies.map(copyRow),
      ]),
    );
  }
  return lines.join('\n');
}

export function formatStats(report: StatsReport): string {
  const r = report.records;
  const scope =
    report.hash !== null
      ? `hash ${report.hash}`
      : report.group !== null
        ? `group ${report.group}`
        : 'all records';
  const lines = [
    `pair records on ${report.lockStore} (prefix ${report.lockPrefix}, ${scope})`,
    table([
      ['waiting', 'running', 'done', 'failed', 'released', 'corrupt', 'total'],
      [r.waiting, r.running, r.done, r.failed, r.released, r.corrupt, r.total].map(String),
    ]),
  ];
  if (report.queues.length > 0) {
    const states = [...new Set(report.queues.flatMap((q) => Object.keys(q.counts)))];
    lines.push(
      'twin queues',
      table([
        ['queue', 'redis', ...states],
        ...report.queues.map((q) => [
          q.queue,
          q.redis,
          ...states.map((s) => String(q.counts[s] ?? 0)),
        ]),
      ]),
    );
  }
  return lines.join('\n');
}
