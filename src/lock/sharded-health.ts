import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis } from 'ioredis';
import { asError } from '../errors.js';
import { TIMED_OUT, within } from './bounded.js';
import { ownersAlive } from './owners.js';

/**
 * The health check of a Cluster subscriber's sharded liveness connections, one per master
 * (ioredis `shardedSubscribers`), as one Redis's subscriber has it (`Notifier.checkHealth`).
 * A connection can be gone while its socket looks open to us (a NAT or a load balancer
 * dropped it silently), or Redis can have dropped its subscription: either way the twin takes
 * this process's runs on that master for a dead owner's, or will once the server notices.
 * Two looks per channel: the master's count of its subscribers (one script call per master,
 * as the owner watch does it) and a PING on the connection that holds it.
 *
 * Unlike one Redis's subscriber, a stalled sharded connection is not dropped to be made anew:
 * ioredis makes a sharded subscriber only after a slot refresh, and meanwhile the channel is
 * empty, so a twin takes this process's live runs on that master over (seen in
 * test/lock/cluster-subscriber-health.test.ts: a run taken over). A subscription the
 * master dropped is subscribed again on the same connection.
 */
export interface ShardedHealth {
  /** False when the lock store did not answer the counts: nothing is known. */
  answered: boolean;
  /** What is wrong, naming the channel; undefined when every connection is well. */
  problem?: string;
  /** 'count': the master lists no subscriber; 'ping': the connection does not answer. */
  kind?: 'count' | 'ping';
  /** Subscribes the channel again (a 'count' problem), on the connection that holds it. */
  heal?: () => Promise<unknown>;
}

/** The part of ioredis' private sharded subscriber group this check reads. */
interface SubscriberGroup {
  getResponsibleSubscriber(slot: number): { getInstance(): Redis | null } | undefined;
}

/**
 * The connection that holds sharded `channel`, or undefined when ioredis does not say (its
 * group is private API: a version without it leaves only the server-side count).
 */
function connectionOf(subscriber: Cluster, channel: string): Redis | undefined {
  const group = (subscriber as unknown as { shardedSubscribers?: SubscriberGroup })
    .shardedSubscribers;
  if (typeof group?.getResponsibleSubscriber !== 'function') return undefined;
  try {
    return group.getResponsibleSubscriber(calculateSlot(channel))?.getInstance() ?? undefined;
  } catch {
    return undefined; // the slot map is being rebuilt
  }
}

export async function shardedHealth(
  client: Cluster,
  subscriber: Cluster,
  channels: readonly string[],
  timeoutMs: number,
): Promise<ShardedHealth> {
  const counted = await within(
    ownersAlive(
      client,
      true,
      channels.map((channel) => ({ channel, sessionKey: '' })),
    ).catch(() => undefined),
    timeoutMs,
  );
  if (counted === TIMED_OUT || counted === undefined) return { answered: false };
  const looks = await Promise.all(
    channels.map(async (channel, i) => {
      if (counted[i]?.subscribers === 0) {
        return {
          problem: `the lock store lists no subscriber on this process's sharded liveness channel ${channel}`,
          kind: 'count' as const,
          heal: () => subscriber.ssubscribe(channel),
        };
      }
      const connection = connectionOf(subscriber, channel);
      if (connection === undefined) return {};
      try {
        const reply = await within(connection.ping(), timeoutMs);
        if (reply !== TIMED_OUT) return {};
        return {
          problem: `the PING of its sharded subscriber for ${channel} got no answer within ${timeoutMs} ms`,
          kind: 'ping' as const,
        };
      } catch (err) {
        return {
          problem: `the PING of its sharded subscriber for ${channel} failed (${asError(err).message})`,
          kind: 'ping' as const,
        };
      }
    }),
  );
  const bad = looks.find((look) => look.problem !== undefined);
  return bad === undefined ? { answered: true } : { answered: true, ...bad };
}
