import {
  type ConnectionOptions,
  type FlowJob,
  FlowProducer,
  type JobNode,
  type JobsOptions,
} from 'bullmq';
import { ClosedError, PairingMismatchError, PartialAddError } from '../errors.js';
import { pairableJobId } from './job-id.js';
import { PairedQueue } from './paired-queue.js';
import { sameServer } from './servers.js';
import { type TwinTarget, withTimeout } from './twins.js';

const OWNER = 'PairedFlowProducer';

/**
 * One job of a paired flow: BullMQ's `FlowJob`, with the `PairedQueue` it goes to instead of
 * a queue name. Its copies go to that queue's twins, each child under its twin's copy of the
 * parent; every job keeps one id on both twins (`opts.jobId`, else a generated UUID).
 */
export interface PairedFlowJob {
  name: string;
  // biome-ignore lint/suspicious/noExplicitAny: a flow mixes queues of any data and result types
  queue: PairedQueue<any, any, any>;
  data?: unknown;
  /** BullMQ's job options, without `parent` (the tree gives it) and `deduplication`. */
  opts?: Omit<JobsOptions, 'parent' | 'deduplication'>;
  children?: PairedFlowJob[];
}

/** A flow as added to both twins: the root's id, and the tree BullMQ returned on each twin. */
export interface PairedFlow {
  id: string;
  nodes: Record<string, JobNode>;
}

/**
 * BullMQ's `FlowProducer` for paired queues: adds the same tree of jobs to every twin (two or
 * more), each job under one id on all, so each job of the tree runs once (paired by its id,
 * like any job of a `PairedQueue`) and each twin's parent waits for that twin's copies of its
 * children. All trees are added in one MULTI when the twins share a Redis; else in parallel,
 * a twin that fails or does not answer within the root queue's `addTimeoutMs` making it a
 * `PartialAddError`.
 *
 * As in BullMQ, a parent and its children live on one Redis: on each twin, every queue of
 * the tree must be on the root queue's Redis of that twin.
 */
export class PairedFlowProducer {
  /** Per twin connection: one FlowProducer, opened at its first add. */
  private readonly producers = new Map<ConnectionOptions, FlowProducer>();
  private closed = false;

  async add(flow: PairedFlowJob): Promise<PairedFlow> {
    if (this.closed) throw new ClosedError(OWNER);
    if (!(flow?.queue instanceof PairedQueue)) {
      throw new TypeError(`${OWNER}: the root job's "queue" must be a PairedQueue`);
    }
    // Two twins or more (PairedQueue checks it): the tree goes to every one.
    const roots = flow.queue.twinTargets();
    const ids: string[] = [];
    const queues = new Set<PairedQueue>();
    const trees = roots.map((): FlowJob[] => []);
    // Every node is checked, and its id fixed, before anything is written.
    const build = (node: PairedFlowJob, path: string): FlowJob[] => {
      if (!(node?.queue instanceof PairedQueue)) {
        throw new TypeError(`${OWNER}: job "${path}" has no PairedQueue as its "queue"`);
      }
      const opts = node.opts ?? {};
      for (const refused of ['parent', 'deduplication'] as const) {
        if (refused in opts) {
          throw new TypeError(
            `${OWNER}: job "${path}" has opts.${refused}; ${
              refused === 'parent'
                ? "a paired flow gives each child its own twin's copy of the parent. Add the tree under its parent as one flow"
                : 'each twin could deduplicate a job of the tree into a different one, leaving the trees unpaired'
            }`,
          );
        }
      }
      const targets = node.queue.twinTargets();
      if (targets.map((t) => t.twin).join('\n') !== roots.map((t) => t.twin).join('\n')) {
        throw new TypeError(
          `${OWNER}: job "${path}" goes to queue "${node.queue.name}", whose twins (${targets.map((t) => t.twin).join(', ')}) are not the root queue's (${roots.map((t) => t.twin).join(', ')})`,
        );
      }
      targets.forEach((target, ti) => {
        const root = roots[ti] as TwinTarget;
        if (!sameServer(target, root)) {
          throw new TypeError(
            `${OWNER}: job "${path}" goes to queue "${target.queueName}" of twin ${target.twin}, which is not on the server of the root queue "${root.queueName}" there; BullMQ keeps a parent and its children on one Redis (or one PostgreSQL database)`,
          );
        }
      });
      const jobId = pairableJobId(opts.jobId);
      ids.push(jobId);
      queues.add(node.queue);
      const children = (node.children ?? []).map((child, i) =>
        build(child, `${path}/${child?.name ?? i}`),
      );
      return targets.map((target, ti) => ({
        name: node.name,
        queueName: target.queueName,
        prefix: target.prefix,
        data: node.data,
        // Each job of the tree has its executor chosen as an add would choose it.
        opts: { ...opts, jobId, ...node.queue.executorFor(jobId) },
        ...(children.length > 0 ? { children: children.map((perTwin) => perTwin[ti]) } : {}),
      })) as FlowJob[];
    };
    build(flow, flow.name).forEach((tree, ti) => {
      trees[ti]?.push(tree);
    });
    const timeoutMs = flow.queue.twinTimeoutMs;
    const rootId = ids[0] as string;
    // The pairing of every queue first, on every twin (workers read their group there); a
    // conflicting one stops the add before any tree lands.
    const recorded = await Promise.allSettled(
      roots.map((_, ti) =>
        withTimeout(
          Promise.all([...queues].map((q) => (q.twinTargets()[ti] as TwinTarget).record())),
          timeoutMs,
          'the pairing record',
        ),
      ),
    );
    for (const result of recorded) {
      if (result.status === 'rejected' && result.reason instanceof PairingMismatchError) {
        throw result.reason;
      }
    }
    const [first] = roots as [TwinTarget];
    if (roots.every((t) => sameServer(t, first))) {
      const failed = recorded.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      // One server: every twin's tree at once (one MULTI on Redis, one statement on PostgreSQL).
      const nodes = await this.producer(first).addBulk(trees.flat());
      return {
        id: rootId,
        nodes: Object.fromEntries(roots.map((t, ti) => [t.twin, nodes[ti] as JobNode])),
      };
    }
    const settled = await Promise.allSettled(
      roots.map((t, ti) => {
        const record = recorded[ti] as PromiseSettledResult<unknown>;
        if (record.status === 'rejected') return Promise.reject(record.reason);
        return withTimeout(this.producer(t).add(trees[ti]?.[0] as FlowJob), timeoutMs);
      }),
    );
    const failed: Record<string, Error> = {};
    const added: string[] = [];
    const nodes: Record<string, JobNode> = {};
    settled.forEach((result, ti) => {
      const twin = (roots[ti] as TwinTarget).twin;
      if (result.status === 'fulfilled') {
        added.push(twin);
        nodes[twin] = result.value;
      } else {
        failed[twin] =
          result.reason instanceof Error ? result.reason : new Error(String(result.reason));
      }
    });
    if (Object.keys(failed).length > 0) throw new PartialAddError(ids, added, failed);
    return { id: rootId, nodes };
  }

  private producer({ connection, backend }: TwinTarget): FlowProducer {
    let producer = this.producers.get(connection);
    if (producer === undefined) {
      // BullMQ's overloads: a backend factory second, or none for Redis.
      producer =
        backend === undefined
          ? new FlowProducer({ connection })
          : (new FlowProducer({ connection } as never, backend) as FlowProducer);
      producer.on('error', () => {}); // reported through the add that failed
      this.producers.set(connection, producer);
    }
    return producer;
  }

  async close(): Promise<void> {
    this.closed = true;
    const producers = [...this.producers.values()];
    this.producers.clear();
    await Promise.all(producers.map((p) => p.close()));
  }
}
