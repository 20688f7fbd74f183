/**
 * A managed Redis fails over the way ElastiCache or Memorystore do: the endpoint moves to a
 * replica that is behind, and every connection drops. Here the replica stops replicating 1 s
 * before the flip, so the second of grants and settles the primary acknowledged last is lost.
 * Two PairedLocks ('eu', 'us') without `durability` run every job of a set through the
 * endpoint (test/support/failover-jobs.ts). A lost grant lets the twin run the job again; its
 * fence must be higher than the lost run's (before fences came from the store's clock, both
 * runs had the same fence: 15 of 250 jobs, measured from outside).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { JOBS, jobSet, until } from '../support/failover-jobs.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { useRedis } from '../support/file-redis.js';

const primary = useRedis({ killable: true });
const replica = useRedis({ killable: true });

/** Waits until `client`'s server has caught up with its primary. */
async function replicating(client: Redis): Promise<void> {
  for (;;) {
    const info = await client.info('replication');
    if (/master_link_status:up/.test(info)) return;
    await sleep(50);
  }
}

describe('a lock store endpoint flipped to a replica 1 s behind (managed Redis failover)', () => {
  it('loses nothing and never runs a job twice with the same fence, without durability', async () => {
    const replicaClient = replica().connect();
    await replicaClient.replicaof(primary().host, String(primary().port));
    await replicating(replicaClient);
    const endpoint = await startFaultProxy(primary());
    const set = jobSet(() => primary().connect({ port: endpoint.port }), 'flip');
    try {
      const running = set.run();
      await until(() => set.ledger.length >= JOBS / 3);
      await replicaClient.replicaof('NO', 'ONE'); // from now on the replica falls behind
      await sleep(1_000);
      endpoint.retarget(replica());
      endpoint.cut(); // the flip drops every connection; clients reconnect to the replica
      endpoint.heal();
      await running;
      const figures = set.figures();
      console.log(`endpoint flip to a replica 1 s behind: ${JSON.stringify(figures)}`);
      expect(figures).toMatchObject({ lost: 0, sameFence: 0 });
    } finally {
      await set.close();
      await endpoint.close();
    }
  }, 120_000);
});
