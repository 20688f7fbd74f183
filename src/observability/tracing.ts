import { type Attributes, type Job, type Span, SpanKind, type Telemetry } from 'bullmq';
import { optionError } from '../validate.js';

/** Attribute names on the `paired` span, next to BullMQ's own `bullmq.*` ones. */
export const PairAttributes = {
  twin: 'bullmq.paired.twin',
  role: 'bullmq.paired.role',
  fence: 'bullmq.paired.fence',
  owner: 'bullmq.paired.owner',
  takeover: 'bullmq.paired.takeover',
  jobId: 'bullmq.job.id',
} as const;

/** What this copy did: ran it, waited for the twin, completed with the twin's result, … */
export type PairRole = 'executor' | 'shadow' | 'twin-completed' | 'peer-failed' | 'uncoordinated';

/** One copy's span, or nothing when tracing is off: callers never branch on it. */
export interface PairTrace {
  set(attributes: Attributes): void;
  event(name: string, attributes?: Attributes): void;
}

const untraced: PairTrace = { set: () => {}, event: () => {} };

export function telemetryOption(owner: string, value: unknown): Telemetry | undefined {
  if (value === undefined) return undefined;
  const t = value as Partial<Telemetry> | null;
  if (
    typeof t !== 'object' ||
    t === null ||
    typeof t.tracer?.startSpan !== 'function' ||
    typeof t.contextManager?.with !== 'function'
  ) {
    throw optionError(
      owner,
      'telemetry',
      value,
      "BullMQ's Telemetry ({ tracer, contextManager }, e.g. new BullMQOtel('app') from bullmq-otel)",
    );
  }
  return value as Telemetry;
}

/**
 * The worker's own telemetry: BullMQ builds a worker's jobs with the worker as their
 * (protected) `queue`, so a processor traces like its worker without being told twice.
 */
export function workerTelemetry(job: Job): Telemetry | undefined {
  const worker = (job as unknown as { queue?: { opts?: { telemetry?: Telemetry } } }).queue;
  return worker?.opts?.telemetry;
}

/**
 * Runs `fn` inside a `paired <queue>` span, a child of the worker's `process` span, and
 * makes it the active context so the wrapped processor's own spans nest under it.
 */
export async function traced<T>(
  telemetry: Telemetry | undefined,
  job: Job,
  twin: string,
  fn: (trace: PairTrace) => Promise<T>,
): Promise<T> {
  if (!telemetry) return fn(untraced);
  const { tracer, contextManager } = telemetry;
  const active = contextManager.active();
  const span: Span = tracer.startSpan(
    `paired ${job.queueName}`,
    { kind: SpanKind.INTERNAL },
    active,
  );
  span.setAttributes({ [PairAttributes.twin]: twin, [PairAttributes.jobId]: job.id });
  const trace: PairTrace = {
    set: (attributes) => span.setAttributes(attributes),
    event: (name, attributes) => span.addEvent(name, attributes),
  };
  try {
    return await contextManager.with(span.setSpanOnContext(active), () => fn(trace));
  } catch (err) {
    // BullMQ's DelayedError is how a parked copy leaves its slot: not a failure.
    if ((err as Error | undefined)?.name !== 'DelayedError') span.recordException(err as Error);
    throw err;
  } finally {
    span.end();
  }
}
