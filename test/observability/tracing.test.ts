import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { BullMQOtel } from 'bullmq-otel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PairedProcessor } from '../../src/index.js';
import { firstRunFence } from '../support/fences.js';
import { useRedis } from '../support/file-redis.js';
import { inProcessTwins } from './in-process-twins.js';

const redis = useRedis();
const exporter = new InMemorySpanExporter();
let contextManager: AsyncLocalStorageContextManager | undefined;

beforeAll(() => {
  contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
});
afterAll(() => {
  trace.disable();
  context.disable();
  contextManager?.disable();
});

const pairSpans = (id: string): ReadableSpan[] =>
  exporter
    .getFinishedSpans()
    .filter((s) => s.attributes['bullmq.job.id'] === id && s.name.startsWith('paired '));

describe('tracing through BullMQ telemetry (bullmq-otel)', () => {
  it("adds a paired span under the worker's process span, with twin, role and fence", async () => {
    const telemetry = new BullMQOtel({ tracerName: 'paired-test' });
    const inner: string[] = [];
    const twins = inProcessTwins(redis(), {
      // A span the user's processor opens must nest under the paired span.
      run: () => async () => {
        const span = trace.getTracer('user').startSpan('send-push');
        inner.push(span.spanContext().spanId);
        span.end();
        return 'sent';
      },
      // The processors are not told: they take the worker's telemetry.
      worker: { telemetry },
    });
    try {
      twins.start();
      const { id } = await twins.queue.add('push', {});
      await twins.settled(id);
      // A shadow that had to park adds a 'shadow' span for the parked pickup; under load only.
      const roles = () =>
        pairSpans(id)
          .map((s) => s.attributes['bullmq.paired.role'])
          .filter((role) => role !== 'shadow')
          .sort();
      await expect.poll(roles, { timeout: 10_000 }).toEqual(['executor', 'twin-completed']);
      for (const span of pairSpans(id)) {
        if (span.attributes['bullmq.paired.role'] === 'shadow') {
          // A parked pickup ends before it knows a grant: no fence rather than a false 0.
          expect(span.attributes['bullmq.paired.fence']).toBeUndefined();
          continue;
        }
        expect(span.attributes).toMatchObject({
          'bullmq.paired.fence': firstRunFence,
          'bullmq.paired.twin': expect.stringMatching(/^(eu|us)$/),
        });
        const parent = exporter
          .getFinishedSpans()
          .find((s) => s.spanContext().spanId === span.parentSpanContext?.spanId);
        expect(parent?.name).toMatch(/^process /);
      }
      const executor = pairSpans(id).find((s) => s.attributes['bullmq.paired.role'] === 'executor');
      const userSpan = exporter.getFinishedSpans().find((s) => s.name === 'send-push');
      expect(inner).toHaveLength(1);
      expect(userSpan?.parentSpanContext?.spanId).toBe(executor?.spanContext().spanId);
    } finally {
      await twins.close();
    }
  });

  it("marks a standby's parked pickup as a 'shadow' span of the chosen twin", async () => {
    const telemetry = new BullMQOtel({ tracerName: 'paired-test' });
    const twins = inProcessTwins(redis(), {
      run: () => async () => 'sent',
      // No wait in the slot: the standby's copy parks on its first pickup.
      options: () => ({ shadowHoldMs: 0 }),
      worker: { telemetry },
    });
    try {
      twins.start();
      const { id } = await twins.queue.add('push', {});
      await twins.settled(id);
      await expect.poll(() => pairSpans(id).length, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
      const standby = pairSpans(id).filter((s) => s.attributes['bullmq.paired.role'] === 'shadow');
      // Before: the role came with the watch's first look, after the span had ended.
      expect(pairSpans(id).map((s) => s.attributes['bullmq.paired.role'])).not.toContain(undefined);
      expect(standby).toHaveLength(1);
      expect(standby[0]?.attributes['bullmq.paired.owner']).toMatch(/^(eu|us)$/);
      // It parked before knowing a grant: no fence (before, a 0 that read as one).
      expect(standby[0]?.attributes).not.toHaveProperty(['bullmq.paired.fence']);
    } finally {
      await twins.close();
    }
  });

  it('rejects a telemetry option that is not BullMQ telemetry', () => {
    const lockConnection = redis().connect();
    expect(
      () =>
        new PairedProcessor(async () => 1, { twin: 'eu', lockConnection, telemetry: {} as never }),
    ).toThrow(/option "telemetry" must be BullMQ's Telemetry/);
  });
});
