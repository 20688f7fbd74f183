/**
 * A two-region WAN on one machine, for tests, benchmarks and the demo (free of vitest).
 *
 *   region eu: its queue Redis (private redis-server), reached directly by eu's processes
 *   region us: the same for us
 *   lock store: a private redis-server placed
 *     'third-site': 20 ms one way from each region (a third data centre),
 *     'eu':         0 ms from eu (through a proxy, so faults can still be injected), 40 ms from us,
 *     'local':      loopback for both, no proxy (the setup of every test before the WAN lab).
 *   cross-region: each region reaches the other region's queue Redis through a 40 ms one-way
 *     link (for PairedQueue producers that add to both twins, or one BullMQ stretched across).
 *
 * Every delayed hop is a FaultProxy (test/support/fault-proxy.ts), so a scenario can also
 * partition, cut, slow down or flake one region's link at run time. The observer (the test or
 * bench itself) uses `queueRedis` / `lockRedis` directly, with no delay. One `stop()` ends all.
 */
import { type FaultProxy, type LinkConfig, startFaultProxy } from './fault-proxy.js';
import { type StartRedisOptions, startRedis, type TestRedis } from './redis.js';

export type Region = 'eu' | 'us';
export const REGIONS: readonly Region[] = ['eu', 'us'];
export type LockPlacement = 'third-site' | 'eu' | 'local';

export interface WanTopologyOptions {
  /** Where the lock store is. Default 'third-site'. */
  lockStore?: LockPlacement;
  /** One-way delay between the regions, ms. Default 40. */
  crossRegionMs?: number;
  /** One-way delay from each region to a third-site lock store, ms. Default 20. */
  thirdSiteMs?: number;
  /** Jitter added on every delayed link (see LinkConfig.jitterMs), ms. Default 0. */
  jitterMs?: number;
  /** Options of the lock store's redis-server (e.g. persistence, args). */
  lockRedis?: Omit<StartRedisOptions, 'killable' | 'purpose'>;
  /** Options of each region's queue redis-server. */
  queueRedis?: Omit<StartRedisOptions, 'killable' | 'purpose'>;
  /** Who needs it, named if no Redis can be started. */
  purpose?: string;
}

/** What a process running in one region connects to. */
export interface RegionView {
  /** This region's queue Redis, direct. */
  queueUrl: string;
  /** The lock store, through this region's link to it (direct when 'local'). */
  lockUrl: string;
  /** The other region's queue Redis, through the cross-region link. */
  remoteQueueUrl: string;
  /** Each region's queue Redis as seen from here (own direct, other through the link). */
  queueUrlOf: Record<Region, string>;
  /** QUEUE_URL and LOCK_URL for a worker fixture of this region (test/fixtures/twin-worker.ts). */
  workerEnv: { QUEUE_URL: string; LOCK_URL: string };
}

export interface WanTopology {
  readonly lockStore: LockPlacement;
  readonly regions: Record<Region, RegionView>;
  /** The servers themselves, for the observer (no delay) and for kill/restart. */
  readonly queueRedis: Record<Region, TestRedis>;
  readonly lockRedis: TestRedis;
  /** Each region's link to the lock store (absent when 'local'). */
  readonly lockLinks: Partial<Record<Region, FaultProxy>>;
  /** `crossLinks[r]`: region r's link to the other region's queue Redis. */
  readonly crossLinks: Record<Region, FaultProxy>;
  /** Every proxy, e.g. to add jitter or resets to all of them at once. */
  allLinks(): FaultProxy[];
  /** Closes every proxy and stops every Redis (safe to call twice). */
  stop(): Promise<void>;
}

export const other = (region: Region): Region => (region === 'eu' ? 'us' : 'eu');

/** One-way delay from `region` to a lock store at `placement`. */
export function lockDelayMs(
  placement: LockPlacement,
  region: Region,
  thirdSiteMs = 20,
  crossRegionMs = 40,
): number {
  if (placement === 'local') return 0;
  if (placement === 'third-site') return thirdSiteMs;
  return region === placement ? 0 : crossRegionMs;
}

export async function startWanTopology(options: WanTopologyOptions = {}): Promise<WanTopology> {
  const placement = options.lockStore ?? 'third-site';
  const crossMs = options.crossRegionMs ?? 40;
  const thirdMs = options.thirdSiteMs ?? 20;
  const jitterMs = options.jitterMs ?? 0;
  const purpose = options.purpose ?? 'the WAN lab';
  const stoppers: (() => Promise<void>)[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Proxies first (they carry connections to the servers), then the servers.
    const steps = stoppers.splice(0).reverse();
    for (const step of steps) await step().catch(() => {});
  };

  try {
    const redis = async (extra: WanTopologyOptions['queueRedis']): Promise<TestRedis> => {
      const server = await startRedis({ ...extra, killable: true, purpose });
      stoppers.push(() => server.stop());
      return server;
    };
    const [euQueue, usQueue, lockRedis] = await Promise.all([
      redis(options.queueRedis),
      redis(options.queueRedis),
      redis(options.lockRedis),
    ]);
    const queueRedis: Record<Region, TestRedis> = { eu: euQueue, us: usQueue };
    const proxy = async (target: TestRedis, delayMs: number): Promise<FaultProxy> => {
      const link: LinkConfig = { delayMs, jitterMs: delayMs > 0 ? jitterMs : 0 };
      const started = await startFaultProxy(target, link);
      stoppers.push(() => started.close());
      return started;
    };

    const lockLinks: Partial<Record<Region, FaultProxy>> = {};
    if (placement !== 'local') {
      for (const region of REGIONS) {
        lockLinks[region] = await proxy(
          lockRedis,
          lockDelayMs(placement, region, thirdMs, crossMs),
        );
      }
    }
    const crossLinks = {
      eu: await proxy(queueRedis.us, crossMs),
      us: await proxy(queueRedis.eu, crossMs),
    };

    const view = (region: Region): RegionView => {
      const queueUrl = queueRedis[region].url;
      const remoteQueueUrl = crossLinks[region].url;
      const lockUrl = lockLinks[region]?.url ?? lockRedis.url;
      return {
        queueUrl,
        lockUrl,
        remoteQueueUrl,
        queueUrlOf: { [region]: queueUrl, [other(region)]: remoteQueueUrl } as Record<
          Region,
          string
        >,
        workerEnv: { QUEUE_URL: queueUrl, LOCK_URL: lockUrl },
      };
    };

    return {
      lockStore: placement,
      regions: { eu: view('eu'), us: view('us') },
      queueRedis,
      lockRedis,
      lockLinks,
      crossLinks,
      allLinks: () => [...Object.values(lockLinks), crossLinks.eu, crossLinks.us],
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
