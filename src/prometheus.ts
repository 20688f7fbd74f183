/**
 * Prometheus metrics for paired processors, as a separate entry point
 * (`bullmq-paired/prometheus`) so that prom-client, an optional peer dependency, is only
 * loaded by those who import it.
 */
import { Counter, register as globalRegistry, Histogram, type Registry } from 'prom-client';
import type { PairedProcessor } from './pairing/paired-processor.js';
import { optionError } from './validate.js';

export interface PairedMetricsOptions {
  /** Registry to register the metrics in. Default: prom-client's global `register`. */
  registry?: Registry;
  /** Prefix of every metric name. Default `'bullmq_paired_'`. */
  prefix?: string;
  /** Buckets of the takeover latency histogram, in seconds. */
  takeoverBuckets?: number[];
}

/** Default takeover buckets: from a failure taken over in ms to a lease of a minute. */
const TAKEOVER_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const OWNER = 'PairedMetrics';

/**
 * Counts what paired processors decide. Create one per registry and `observe` every
 * processor of the process:
 *
 * ```ts
 * const metrics = new PairedMetrics();
 * metrics.observe(paired);
 * app.get('/metrics', async (_req, res) => res.type(register.contentType).send(await register.metrics()));
 * ```
 *
 * Labels are the queue, the twin and, where there is one, the reason: never job ids (they
 * would make a series per job).
 */
export class PairedMetrics {
  readonly executions: Counter<'queue' | 'twin'>;
  readonly shadows: Counter<'queue' | 'twin'>;
  readonly takeovers: Counter<'queue' | 'twin' | 'reason'>;
  readonly twinCompletions: Counter<'queue' | 'twin'>;
  readonly leaseLosses: Counter<'queue' | 'twin' | 'reason'>;
  readonly errors: Counter<'twin' | 'code'>;
  readonly takeoverLatency: Histogram<'queue' | 'twin' | 'reason'>;

  constructor(options: PairedMetricsOptions = {}) {
    const registers = [options.registry ?? globalRegistry];
    const prefix = options.prefix ?? 'bullmq_paired_';
    if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) {
      throw optionError(
        OWNER,
        'prefix',
        prefix,
        'a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)',
      );
    }
    const buckets = options.takeoverBuckets ?? TAKEOVER_BUCKETS;
    if (!Array.isArray(buckets) || buckets.some((b) => typeof b !== 'number' || !(b > 0))) {
      throw optionError(
        OWNER,
        'takeoverBuckets',
        buckets,
        'an array of positive numbers (seconds)',
      );
    }
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new Counter<L>({ name: `${prefix}${name}`, help, labelNames, registers });
    this.executions = counter(
      'executions_total',
      'Jobs this twin executed (first runs and takeovers).',
      ['queue', 'twin'],
    );
    this.shadows = counter(
      'shadows_total',
      'Copies parked without a worker slot while the other twin executed them.',
      ['queue', 'twin'],
    );
    this.takeovers = counter(
      'takeovers_total',
      'Jobs this twin took over from the other: failed, released, disconnected (process gone) or expired (lease ran out).',
      ['queue', 'twin', 'reason'],
    );
    this.twinCompletions = counter(
      'twin_completions_total',
      "Copies completed with the other twin's result, without running.",
      ['queue', 'twin'],
    );
    this.leaseLosses = counter(
      'lease_losses_total',
      'Executions whose lease ended under them (their signal aborted; the result is not stored).',
      ['queue', 'twin', 'reason'],
    );
    this.errors = counter(
      'errors_total',
      'Errors a paired processor reported (e.g. lock store unreachable).',
      ['twin', 'code'],
    );
    this.takeoverLatency = new Histogram({
      name: `${prefix}takeover_latency_seconds`,
      help: 'How long a job had no executor before a takeover, as the lock store saw it (from the failure, release, first sight of a dead process or lease end to the new grant).',
      labelNames: ['queue', 'twin', 'reason'],
      buckets,
      registers,
    });
  }

  /** Counts this processor's decisions from now on. Returns a function that stops counting. */
  // biome-ignore lint/suspicious/noExplicitAny: processors of any job data and result type
  observe(processor: PairedProcessor<any, any, any>): () => void {
    const twin = processor.options.twin;
    const listeners = {
      executed: (e: { queue: string }) => this.executions.inc({ queue: e.queue, twin }),
      shadowed: (e: { queue: string }) => this.shadows.inc({ queue: e.queue, twin }),
      twinCompleted: (e: { queue: string }) => this.twinCompletions.inc({ queue: e.queue, twin }),
      takeover: (e: { queue: string; reason: string; idleMs: number | undefined }) => {
        const labels = { queue: e.queue, twin, reason: e.reason };
        this.takeovers.inc(labels);
        if (e.idleMs !== undefined) this.takeoverLatency.observe(labels, e.idleMs / 1000);
      },
      leaseLost: (e: { queue: string; reason: string }) =>
        this.leaseLosses.inc({ queue: e.queue, twin, reason: e.reason }),
      error: (err: Error) =>
        this.errors.inc({ twin, code: (err as { code?: string }).code ?? err.name }),
    };
    for (const [name, listener] of Object.entries(listeners))
      processor.on(name as 'error', listener as never);
    return () => {
      for (const [name, listener] of Object.entries(listeners))
        processor.off(name as 'error', listener as never);
    };
  }
}
