import calculateSlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';

/**
 * Where a process keeps its per-master keys on a Redis Cluster.
 *
 * The acquire script asks whether a record's owner lives by reading the owner's session key
 * and counting its liveness channel's subscribers, on the node that serves the record. Redis
 * lets a script read a key it did not declare only when that key is on the same node, and a
 * sharded channel's subscribers are counted on the node serving its slot. So each process
 * keeps one session key and one sharded liveness channel per master, named with a hash tag
 * that falls in that master's slots, and stamps each grant with the pair on the record's
 * master. Every process derives the same tag for the same master from the slot map alone:
 * the tag of the lowest slot the master serves (found by counting, `slotTag`). A failover
 * hands a master's slots to its replica whole, so the tag stays; a resharding may move a
 * record's slot away from its owner's keys (see includes/owner.lua for what happens then).
 */

const SLOTS = 16_384;
const tags = new Map<number, string>();

/** The shortest base-36 counter whose CRC16 lands in `slot`: `{tag}` puts a key there. */
export function slotTag(slot: number): string {
  let tag = tags.get(slot);
  if (tag === undefined) {
    if (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS) {
      throw new RangeError(`slotTag: ${slot} is not a Redis Cluster slot (0–${SLOTS - 1})`);
    }
    for (let n = 0; ; n++) {
      const text = n.toString(36);
      if (calculateSlot(text) === slot) {
        tag = text;
        break;
      }
    }
    tags.set(slot, tag);
  }
  return tag;
}

/** The Cluster's slot map as this process's client knows it, read as masters' tags. */
export class ShardMap {
  /** Lowest slot per master (ioredis node key "host:port"), rebuilt after each refresh. */
  private lowest: Map<string, number> | undefined;

  constructor(private readonly cluster: Cluster) {
    cluster.on('refresh', () => {
      this.lowest = undefined;
    });
  }

  private lowestSlots(): Map<string, number> {
    if (this.lowest === undefined) {
      const lowest = new Map<string, number>();
      const slots = this.cluster.slots;
      for (let slot = SLOTS - 1; slot >= 0; slot--) {
        const node = slots[slot]?.[0];
        if (node !== undefined) lowest.set(node, slot);
      }
      // Not known yet (the client is still connecting): ask again next time.
      if (lowest.size > 0) this.lowest = lowest;
      return lowest;
    }
    return this.lowest;
  }

  /** The tag of the master serving `key` now (the key's own slot while the map is unknown). */
  tagOf(key: string): string {
    const slot = calculateSlot(key);
    const node = this.cluster.slots[slot]?.[0];
    const lowest = node === undefined ? undefined : this.lowestSlots().get(node);
    return slotTag(lowest ?? slot);
  }

  /** The tag of every master the map knows. */
  masterTags(): string[] {
    return [...this.lowestSlots().values()].map(slotTag);
  }
}
