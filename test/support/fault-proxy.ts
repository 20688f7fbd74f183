/**
 * A TCP proxy between one process and a Redis: network faults that a process cannot fake on
 * itself, and (with a link model) the latency, jitter, bandwidth and flakiness of a WAN link,
 * made in user space (no netem needed). Point only the victim's connection at it; everyone
 * else talks to Redis directly.
 *   partition(): no byte moves either way, but every connection stays open (what a switch
 *                failure or a dropped route looks like: TCP keeps retransmitting, nobody sees
 *                a close). Bytes sent meanwhile are delivered after heal(), as TCP would.
 *   cut():       every connection is reset on both sides and new ones are reset at once
 *                (what a firewall rule with REJECT or a crashed middlebox looks like).
 *   heal():      bytes flow and connections are accepted again.
 *   refuseCommands(/subscribe/i): reset any connection that sends a matching command, until
 *                called with undefined (a subscriber that cannot get back while the
 *                process's other connection can, as after a restart of the server).
 *   configure({ delayMs, jitterMs, bytesPerSecond, resetsPerSecond }): the link model (see
 *                LinkConfig), changeable at run time; it applies to bytes that arrive after
 *                the change (bytes already in flight keep their release time).
 *
 * Link model, per direction (`up`: client→server, `down`: server→client), per connection:
 * a chunk that arrives at time t is serialised at `bytesPerSecond` after the chunks before it
 * (sliced, so a large write is paced), then released at
 *   max(release time of the previous chunk, end of serialisation + delayMs + U[0, jitterMs])
 * so jitter never reorders bytes (as on one TCP stream). With no delay, jitter or cap and an
 * empty queue, a chunk is written at once, exactly as before the link model existed.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { performance } from 'node:perf_hooks';

export type ProxyState = 'open' | 'partitioned' | 'cut';

/** One value for both directions, or `up` (client→server) and `down` (server→client). */
export type PerDirection = number | { up: number; down: number };
export type Direction = 'up' | 'down';

export interface LinkConfig {
  /** One-way delay in ms (minimum: jitter only adds). Default 0. */
  delayMs?: PerDirection;
  /** Extra delay, uniform in [0, jitterMs] per chunk, never reordering bytes. Default 0. */
  jitterMs?: PerDirection;
  /** Bandwidth cap in bytes per second; 0 means none. Default 0. */
  bytesPerSecond?: PerDirection;
  /**
   * Random resets (RST both sides), as a rate per connection per second (Poisson: each
   * connection is reset with probability 1 − e^(−rate·0.1) every 100 ms). Default 0.
   */
  resetsPerSecond?: number;
}

export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /** redis://host:port of the proxy. */
  readonly url: string;
  readonly state: ProxyState;
  /** Connections the proxy carries now. */
  readonly connections: number;
  /** The link model now in force. */
  readonly link: Readonly<Required<LinkConfig>>;
  /** Connections reset by `resetsPerSecond` so far. */
  readonly randomResets: number;
  /** How Redis sees each carried connection (`host:port`, as `CLIENT KILL ADDR` takes it). */
  clientAddresses(): string[];
  partition(): void;
  cut(): void;
  heal(): void;
  refuseCommands(pattern: RegExp | undefined): void;
  /** New connections go to `to` from now on (a managed Redis endpoint moved to another server). */
  retarget(to: { host: string; port: number }): void;
  /** Changes the given parts of the link model (others are kept). */
  configure(link: LinkConfig): void;
  close(): Promise<void>;
}

/** Beyond this many bytes queued in one direction, the sender is paused (back-pressure). */
const HIGH_WATER_BYTES = 1 << 20;
const RESET_TICK_MS = 100;

export function perDirection(value: PerDirection, direction: Direction): number {
  return typeof value === 'number' ? value : value[direction];
}

/** One direction of one connection: delays, paces and forwards chunks in order. */
class Pipe {
  private readonly queue: { chunk: Buffer; at: number }[] = [];
  private queuedBytes = 0;
  private lastRelease = 0;
  private wireFreeAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private held = false;
  private ended = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly direction: Direction,
    private readonly config: () => Required<LinkConfig>,
  ) {
    from.on('data', (chunk: Buffer) => this.push(chunk));
    from.on('end', () => {
      this.ended = true;
      this.flush();
    });
    to.on('drain', () => this.updateFlow());
  }

  private push(chunk: Buffer): void {
    if (this.closed()) return;
    const link = this.config();
    const delay = perDirection(link.delayMs, this.direction);
    const jitter = perDirection(link.jitterMs, this.direction);
    const rate = perDirection(link.bytesPerSecond, this.direction);
    if (!this.held && this.queue.length === 0 && delay <= 0 && jitter <= 0 && rate <= 0) {
      if (!this.to.write(chunk)) this.from.pause();
      return;
    }
    const now = performance.now();
    // About 100 slices a second at the cap, so a large write is paced rather than released whole.
    const slice = rate > 0 ? Math.max(512, Math.min(16_384, Math.floor(rate / 100))) : chunk.length;
    for (let offset = 0; offset < chunk.length; offset += slice) {
      const part = chunk.subarray(offset, offset + slice);
      let sent = now;
      if (rate > 0) {
        sent = Math.max(now, this.wireFreeAt) + (part.length / rate) * 1_000;
        this.wireFreeAt = sent;
      }
      const at = Math.max(this.lastRelease, sent + delay + Math.random() * jitter);
      this.lastRelease = at;
      this.queue.push({ chunk: part, at });
      this.queuedBytes += part.length;
    }
    this.updateFlow();
    this.flush();
  }

  /** Writes every chunk whose time has come, then waits for the next one. */
  private flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.held || this.closed()) {
      this.updateFlow();
      return;
    }
    const now = performance.now();
    while (this.queue.length > 0 && (this.queue[0] as { at: number }).at <= now) {
      const { chunk } = this.queue.shift() as { chunk: Buffer };
      this.queuedBytes -= chunk.length;
      this.to.write(chunk);
    }
    const next = this.queue[0];
    if (next !== undefined) {
      this.timer = setTimeout(() => this.flush(), Math.max(1, Math.ceil(next.at - now)));
    } else if (this.ended && this.to.writable) {
      this.to.end(); // the FIN follows the last byte, delayed like it
    }
    this.updateFlow();
  }

  /** Reads from the sender only while the link is open and the receiver keeps up. */
  private updateFlow(): void {
    if (this.from.destroyed) return;
    const stop = this.held || this.to.writableNeedDrain || this.queuedBytes > HIGH_WATER_BYTES;
    if (stop) this.from.pause();
    else this.from.resume();
  }

  private closed(): boolean {
    return this.to.destroyed || !this.to.writable;
  }

  hold(): void {
    this.held = true;
    this.flush();
  }

  release(): void {
    this.held = false;
    this.flush();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }
}

/** One client connection and its own connection to Redis. */
class Link {
  private readonly pipes: Pipe[];
  private ended = false;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    onEnd: (link: Link) => void,
    refused: () => RegExp | undefined,
    config: () => Required<LinkConfig>,
  ) {
    client.on('data', (chunk: Buffer) => {
      if (refused()?.test(chunk.toString('latin1'))) this.reset();
    });
    // Forwarded by hand (not pipe()), so a 'drain' can never resume a partitioned link.
    this.pipes = [
      new Pipe(client, upstream, 'up', config),
      new Pipe(upstream, client, 'down', config),
    ];
    const end = (): void => {
      if (this.ended) return;
      this.ended = true;
      this.destroy();
      onEnd(this);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      // Half-open sockets: a FIN is carried through its pipe (after the bytes before it);
      // the link is over once both sides are closed.
      socket.on('close', () => {
        if (client.destroyed && upstream.destroyed) end();
      });
    }
  }

  block(): void {
    for (const pipe of this.pipes) pipe.hold();
  }

  unblock(): void {
    for (const pipe of this.pipes) pipe.release();
  }

  /** Resets both sides (RST), as a REJECT rule would: neither end waits for a FIN. */
  reset(): void {
    for (const pipe of this.pipes) pipe.stop();
    if (!this.client.destroyed) this.client.resetAndDestroy();
    if (!this.upstream.destroyed) this.upstream.resetAndDestroy();
  }

  destroy(): void {
    for (const pipe of this.pipes) pipe.stop();
    this.client.destroy();
    this.upstream.destroy();
  }
}

function normalize(link: LinkConfig): Required<LinkConfig> {
  return {
    delayMs: link.delayMs ?? 0,
    jitterMs: link.jitterMs ?? 0,
    bytesPerSecond: link.bytesPerSecond ?? 0,
    resetsPerSecond: link.resetsPerSecond ?? 0,
  };
}

export async function startFaultProxy(
  target: { host: string; port: number },
  initial: LinkConfig = {},
): Promise<FaultProxy> {
  const links = new Set<Link>();
  let upstreamTarget = target;
  let state: ProxyState = 'open';
  let refused: RegExp | undefined;
  let config = normalize(initial);
  let randomResets = 0;
  let resetTicker: NodeJS.Timeout | undefined;
  const current = (): Required<LinkConfig> => config;

  const updateResetTicker = (): void => {
    const rate = config.resetsPerSecond;
    if (rate > 0 && resetTicker === undefined) {
      resetTicker = setInterval(() => {
        const p = 1 - Math.exp(-config.resetsPerSecond * (RESET_TICK_MS / 1_000));
        for (const link of [...links]) {
          if (Math.random() < p) {
            randomResets++;
            link.reset();
          }
        }
      }, RESET_TICK_MS);
    } else if (rate <= 0 && resetTicker !== undefined) {
      clearInterval(resetTicker);
      resetTicker = undefined;
    }
  };

  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    if (state === 'cut') {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = tcpConnect({
      port: upstreamTarget.port,
      host: upstreamTarget.host,
      allowHalfOpen: true,
    });
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    const link = new Link(
      client,
      upstream,
      (ended) => links.delete(ended),
      () => refused,
      current,
    );
    links.add(link);
    if (state === 'partitioned') link.block();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  updateResetTicker();
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
    get link() {
      return config;
    },
    get randomResets() {
      return randomResets;
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
    retarget(to) {
      upstreamTarget = to;
    },
    configure(link) {
      config = normalize({ ...config, ...link });
      updateResetTicker();
    },
    async close() {
      if (resetTicker !== undefined) clearInterval(resetTicker);
      resetTicker = undefined;
      for (const link of links) link.destroy();
      links.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
