import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { watchReachability } from '../../src/pairing/queue-reachability.js';
import { deferred } from '../support/deferred.js';

/** Stands in for a BullMQ Worker: only its error events matter here. */
function fakeWorker() {
  return new EventEmitter() as unknown as Parameters<typeof watchReachability>[0] & EventEmitter;
}

const stops: (() => void)[] = [];
afterEach(() => {
  for (const stop of stops.splice(0)) stop();
  vi.restoreAllMocks();
});

describe('a worker’s queue server reachability', () => {
  it('probes only after an error, says unreachable when a probe hangs, reachable once it answers', async () => {
    const worker = fakeWorker();
    worker.on('error', () => {}); // the application's own listener
    const answer = deferred<void>();
    let probes = 0;
    const changes: boolean[] = [];
    stops.push(
      watchReachability(
        worker,
        () => {
          probes++;
          return answer.promise;
        },
        (reachable) => changes.push(reachable),
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(probes).toBe(0); // healthy: nothing runs
    worker.emit('error', new Error('connect ECONNREFUSED'));
    await vi.waitFor(() => expect(changes).toEqual([false]), { timeout: 5_000 });
    answer.resolve();
    await vi.waitFor(() => expect(changes).toEqual([false, true]), { timeout: 5_000 });
    expect(probes).toBe(1); // one pending probe, answered when the server was back
  });

  it('keeps printing worker errors when nobody else listens, as BullMQ does', () => {
    const printed = vi.spyOn(console, 'error').mockImplementation(() => {});
    const worker = fakeWorker();
    stops.push(
      watchReachability(
        worker,
        async () => {},
        () => {},
      ),
    );
    const err = new Error('connect ECONNREFUSED');
    worker.emit('error', err);
    expect(printed).toHaveBeenCalledWith(err);
    printed.mockClear();
    worker.on('error', () => {});
    worker.emit('error', err);
    expect(printed).not.toHaveBeenCalled();
  });
});
