import calculateSlot from 'cluster-key-slot';
import { REPLY } from './lua/scripts.generated.js';
import { evalScript, type RedisConnection } from './scripts.js';
import type { Owner } from './ticket.js';

/** What the lock store says about one owner's liveness (see the owners script). */
export interface OwnerSigns {
  /** Subscribers of its liveness channel; undefined when it has none. */
  subscribers: number | undefined;
  /** Lease left on its session key (ms, -2: gone); undefined when it has none or it is elsewhere. */
  sessionLeftMs: number | undefined;
}

/**
 * Asks the lock store, for each owner, whether its liveness channel has a subscriber and how
 * much lease its session key has left: one script call per node (on one Redis, one call).
 * On a Cluster an owner's channel and session key share a hash tag on one master
 * (src/lock/shards.ts): the owners are grouped by that slot and each group is sent to the
 * node serving it, its channels counted as sharded ones.
 */
export async function ownersAlive(
  client: RedisConnection,
  sharded: boolean,
  owners: readonly Owner[],
): Promise<OwnerSigns[]> {
  const groups = new Map<number, number[]>();
  owners.forEach((owner, i) => {
    const key = owner.sessionKey || owner.channel;
    if (key === '') return;
    const slot = sharded ? calculateSlot(key) : 0;
    const group = groups.get(slot) ?? [];
    group.push(i);
    groups.set(slot, group);
  });
  const signs: OwnerSigns[] = owners.map(() => ({
    subscribers: undefined,
    sessionLeftMs: undefined,
  }));
  await Promise.all(
    [...groups.values()].map(async (indexes) => {
      const group = indexes.map((i) => owners[i] as Owner);
      const route = group[0]?.sessionKey || group[0]?.channel || '';
      const reply = (await evalScript(
        client,
        'owners',
        [route],
        [
          sharded ? '1' : '0',
          group.length,
          ...group.map((o) => o.channel),
          ...group.map((o) => o.sessionKey),
        ],
      )) as number[];
      indexes.forEach((ownerIndex, j) => {
        const subscribers = Number(reply[j]);
        const left = Number(reply[group.length + j]);
        signs[ownerIndex] = {
          subscribers: subscribers < 0 ? undefined : subscribers,
          sessionLeftMs: left === REPLY.NOT_UNDER_SESSION ? undefined : left,
        };
      });
    }),
  );
  return signs;
}
