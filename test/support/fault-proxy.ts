/**
 * A TCP proxy between one process and a Redis, for network faults that a process cannot
 * fake on itself. Point only the victim's connection at it; everyone else talks to Redis
 * directly.
 *   partition(): no byte moves either way, but every connection stays open (what a switch
 *                failure or a dropped route looks like: TCP keeps retransmitting, nobody sees
 *                a close). Bytes sent meanwhile are delivered after heal(), as TCP would.
 *   cut():       every connection is reset on both sides and new ones are reset at once
 *                (what a firewall rule with REJECT or a crashed middlebox looks like).
 *   heal():      bytes flow and connections are accepted again.
 *   refuseCommands(/subscribe/i): reset any connection that sends a matching command, until
 *                called with undefined (a subscriber that cannot get back while the
 *                process's other connection can, as after a restart of the server).
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

export type ProxyState = 'open' | 'partitioned' | 'cut';

export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /** redis://host:port of the proxy. */
  readonly url: string;
  readonly state: ProxyState;
  /** Connections the proxy carries now. */
  readonly connections: number;
  /** How Redis sees each carried connection (`host:port`, as `CLIENT KILL ADDR` takes it). */
  clientAddresses(): string[];
  partition(): void;
  cut(): void;
  heal(): void;
  refuseCommands(pattern: RegExp | undefined): void;
  close(): Promise<void>;
}

/** One client connection and its own connection to Redis. */
class Link {
  private blocked = false;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    onEnd: (link: Link) => void,
    refused: () => RegExp | undefined,
  ) {
    client.on('data', (chunk: Buffer) => {
      if (refused()?.test(chunk.toString('latin1'))) this.reset();
    });
    this.forward(client, upstream);
    this.forward(upstream, client);
    const end = (): void => {
      this.destroy();
      onEnd(this);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  }

  /** Forwards by hand (not pipe()), so a 'drain' can never resume a partitioned link. */
  private forward(from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (!from.destroyed && !to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      if (!this.blocked) from.resume();
    });
  }

  block(): void {
    this.blocked = true;
    this.client.pause();
    this.upstream.pause();
  }

  unblock(): void {
    this.blocked = false;
    this.client.resume();
    this.upstream.resume();
  }

  /** Resets both sides (RST), as a REJECT rule would: neither end waits for a FIN. */
  reset(): void {
    if (!this.client.destroyed) this.client.resetAndDestroy();
    if (!this.upstream.destroyed) this.upstream.resetAndDestroy();
  }

  destroy(): void {
    this.client.destroy();
    this.upstream.destroy();
  }
}

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const links = new Set<Link>();
  let state: ProxyState = 'open';
  let refused: RegExp | undefined;
  const server: Server = createServer((client) => {
    if (state === 'cut') {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = tcpConnect(target.port, target.host);
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    const link = new Link(
      client,
      upstream,
      (ended) => links.delete(ended),
      () => refused,
    );
    links.add(link);
    if (state === 'partitioned') link.block();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const host = '127.0.0.1';
  return {
    host,
    port,
    url: `redis://${host}:${port}`,
    get state() {
      return state;
    },
    get connections() {
      return links.size;
    },
    clientAddresses() {
      return [...links].map((l) => `${l.upstream.localAddress}:${l.upstream.localPort}`);
    },
    partition() {
      state = 'partitioned';
      for (const link of links) link.block();
    },
    cut() {
      state = 'cut';
      for (const link of [...links]) link.reset();
      links.clear();
    },
    heal() {
      state = 'open';
      for (const link of links) link.unblock();
    },
    refuseCommands(pattern) {
      refused = pattern;
    },
    async close() {
      for (const link of links) link.destroy();
      links.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
