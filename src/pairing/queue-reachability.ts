import type { Worker } from 'bullmq';

/** A probe with no answer within this long (ms) counts the queue server as unreachable. */
const PROBE_TIMEOUT_MS = 1_000;
/** Between probes that failed at once (a refused connection), ms. */
const PROBE_INTERVAL_MS = 500;

/**
 * Follows whether `worker`'s queue server answers, from its first `error` event on: probes
 * it (`probe`, one read) until an answer, and tells `onChange(false)` when a probe fails or
 * hangs past `PROBE_TIMEOUT_MS`, `onChange(true)` when one answers again. Nothing runs while
 * the worker reports no error, so a healthy queue costs nothing. A driver that waits for its
 * server (ioredis) keeps one probe pending: its answer is the server's return. Returns a stop
 * function.
 */
export function watchReachability(
  worker: Pick<Worker, 'on' | 'off' | 'listenerCount'>,
  probe: () => Promise<unknown>,
  onChange: (reachable: boolean) => void,
): () => void {
  let stopped = false;
  let probing = false;
  let reachable = true;
  const tell = (now: boolean): void => {
    if (now === reachable || stopped) return;
    reachable = now;
    onChange(now);
  };
  const probeUntilAnswered = async (): Promise<void> => {
    while (!stopped) {
      const answer = probe().then(
        () => true,
        () => false,
      );
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<'hung'>((resolve) => {
        timer = setTimeout(() => resolve('hung'), PROBE_TIMEOUT_MS);
        timer.unref();
      });
      const first = await Promise.race([answer, hung]);
      clearTimeout(timer);
      if (first === 'hung') tell(false);
      if (await answer) {
        tell(true);
        return;
      }
      tell(false);
      await new Promise((resolve) => setTimeout(resolve, PROBE_INTERVAL_MS).unref());
    }
  };
  const onError = (err: Error): void => {
    // BullMQ prints a worker's error when nobody listens to them (QueueBase.emit): ours is no
    // reason for the application to stop seeing them.
    if (worker.listenerCount('error') === 1) console.error(err);
    if (probing || stopped) return;
    probing = true;
    void probeUntilAnswered().finally(() => {
      probing = false;
    });
  };
  worker.on('error', onError);
  return () => {
    stopped = true;
    worker.off('error', onError);
  };
}
