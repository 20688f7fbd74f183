import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** What a worker sends for one notification: the pair's fence travels with it. */
export interface PushRequest {
  id: string;
  device: string;
  fence: number;
  region: string;
}

export type PushStatus = 'delivered' | 'duplicate-suppressed' | 'stale-fence';

export interface GatewayStats {
  /** Distinct notifications delivered to a device. */
  delivered: number;
  /** Repeats of a delivered notification with a higher fence (a takeover re-ran it): not re-sent. */
  duplicatesSuppressed: number;
  /** Requests with a fence lower than one already seen (a stale executor): refused. */
  staleRejected: number;
}

/**
 * A local stand-in for APNs/FCM. It sends each notification once: the first request for an
 * id delivers it; a later one with a higher fence is the twin re-running a job whose first
 * executor died after the send, and is acknowledged without sending again; one with a lower
 * fence comes from an executor that lost its pair, and is refused (409).
 *
 * A run *claims* its fence (`POST /claim`) when it starts, and the send is checked against
 * the highest claim. Checking only at write time is not enough: a frozen executor can wake
 * and write with its fence after the twin's takeover (a higher fence) started but before that
 * run wrote anything, and a sink that saw no higher fence yet would accept both.
 */
export class PushGateway {
  private readonly fences = new Map<string, number>();
  /** The highest fence each notification's runs have claimed. */
  private readonly claims = new Map<string, number>();
  /** When each notification reached its device (performance.now() of this process). */
  private readonly deliveredAt = new Map<string, number>();
  private readonly counts: GatewayStats = {
    delivered: 0,
    duplicatesSuppressed: 0,
    staleRejected: 0,
  };
  private server: Server | undefined;

  /** @param latencyMs simulated provider latency per request: [min, max] */
  constructor(private readonly latencyMs: [number, number] = [20, 120]) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req)
        .then(([code, body]) =>
          res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body)),
        )
        .catch((err: unknown) => res.writeHead(400).end(String(err)));
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stats(): GatewayStats {
    return { ...this.counts };
  }

  /** Ids delivered so far. */
  deliveredIds(): ReadonlySet<string> {
    return new Set(this.fences.keys());
  }

  /** When each delivered notification reached its device, as `performance.now()` here. */
  deliveryTimes(): ReadonlyMap<string, number> {
    return new Map(this.deliveredAt);
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }

  private async handle(req: IncomingMessage): Promise<[number, object]> {
    if (req.method !== 'POST' || (req.url !== '/push' && req.url !== '/claim')) {
      return [404, { error: 'POST /claim or /push' }];
    }
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const push = JSON.parse(raw) as PushRequest;
    const claimed = this.claims.get(push.id) ?? 0;
    if (push.fence < claimed) {
      this.counts.staleRejected++;
      return [409, { status: 'stale-fence', fence: push.fence, current: claimed }];
    }
    if (req.url === '/claim') {
      this.claims.set(push.id, push.fence);
      return [200, { status: 'claimed', fence: push.fence }];
    }
    const [min, max] = this.latencyMs;
    // The provider's latency comes first: a worker killed meanwhile has still sent it.
    await sleep(min + Math.random() * (max - min));
    const seen = this.fences.get(push.id);
    let status: PushStatus;
    if (seen === undefined) {
      status = 'delivered';
      this.counts.delivered++;
      this.fences.set(push.id, push.fence);
      this.deliveredAt.set(push.id, performance.now());
    } else if (push.fence > seen) {
      status = 'duplicate-suppressed';
      this.counts.duplicatesSuppressed++;
      this.fences.set(push.id, push.fence);
    } else {
      this.counts.staleRejected++;
      return [409, { status: 'stale-fence', fence: push.fence, current: seen }];
    }
    return [200, { status, fence: push.fence }];
  }
}
