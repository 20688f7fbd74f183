/**
 * The WAN lab itself: the fault proxy's link model (delay per direction, jitter without
 * reordering, bandwidth cap, random resets, partition/cut/heal) and the two-region topology.
 * Tolerances are generous upwards (a loaded 2-core machine delays timers), never downwards:
 * a link never delivers earlier than its model says.
 */
import { once } from 'node:events';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { type FaultProxy, type LinkConfig, startFaultProxy } from './fault-proxy.js';
import { useRedis } from './file-redis.js';
import { uniquePrefix } from './redis.js';
import { lockDelayMs, startWanTopology } from './wan-topology.js';

const redis = useRedis({ killable: true, purpose: 'the WAN lab tests' });
/** Upper margin over the modelled time: a loaded 2-core machine fires timers late. */
const MARGIN_MS = 60;

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};

/** Round trips of `count` sequential PINGs, ms. */
async function pingTimes(client: Redis, count = 20): Promise<number[]> {
  await client.ping(); // connected and warm
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await client.ping();
    times.push(performance.now() - start);
  }
  return times;
}

/** A proxy to this file's Redis and a client through it; `close()` ends both. */
async function throughProxy(link: LinkConfig = {}) {
  const proxy = await startFaultProxy(redis(), link);
  const client = redis().connect({ host: proxy.host, port: proxy.port });
  return {
    proxy,
    client,
    async close() {
      client.disconnect();
      await proxy.close();
    },
  };
}

/** A raw TCP echo server in this process; `onData` sees each chunk as it arrives. */
async function echoServer(onData: (chunk: Buffer) => void = () => {}) {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      onData(chunk);
      socket.write(chunk);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    host: '127.0.0.1',
    port,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function rawClient(proxy: FaultProxy): Promise<Socket> {
  const socket = tcpConnect(proxy.port, proxy.host);
  socket.setNoDelay(true);
  await once(socket, 'connect');
  return socket;
}

describe('the link model', () => {
  it('delays each way: PING through 20 ms / 20 ms takes 40 ms or more (median of 20)', async () => {
    const lab = await throughProxy({ delayMs: { up: 20, down: 20 } });
    try {
      const times = await pingTimes(lab.client);
      expect(Math.min(...times)).toBeGreaterThanOrEqual(40);
      expect(median(times)).toBeLessThan(40 + MARGIN_MS);

      // Changed at run time, per direction: measured one way each, against an echo server.
      lab.proxy.configure({ delayMs: 0 });
      const direct = median(await pingTimes(lab.client));
      expect(direct).toBeLessThan(20);
    } finally {
      await lab.close();
    }
  });

  it('keeps up and down apart: 30 ms client→server, 5 ms server→client', async () => {
    let arrived = 0;
    const echo = await echoServer(() => {
      arrived = performance.now();
    });
    const proxy = await startFaultProxy(echo, { delayMs: { up: 30, down: 5 } });
    const socket = await rawClient(proxy);
    try {
      const up: number[] = [];
      const down: number[] = [];
      for (let i = 0; i < 10; i++) {
        const sent = performance.now();
        socket.write(`${i}\n`);
        await once(socket, 'data');
        const back = performance.now();
        up.push(arrived - sent);
        down.push(back - arrived);
      }
      expect(Math.min(...up)).toBeGreaterThanOrEqual(30);
      expect(median(up)).toBeLessThan(30 + MARGIN_MS);
      expect(Math.min(...down)).toBeGreaterThanOrEqual(5);
      expect(median(down)).toBeLessThan(5 + MARGIN_MS);
    } finally {
      socket.destroy();
      await proxy.close();
      await echo.close();
    }
  });

  it('jitter varies the delay but never reorders bytes (500 numbered writes, raw and RPUSH)', async () => {
    const echo = await echoServer();
    const proxy = await startFaultProxy(echo, { delayMs: 2, jitterMs: 15 });
    const socket = await rawClient(proxy);
    const lab = await throughProxy({ delayMs: 2, jitterMs: 15 });
    try {
      // Raw: one write per tick, so each number is a chunk of its own with its own jitter.
      let received = '';
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString();
      });
      let sent = '';
      for (let i = 0; i < 500; i++) {
        sent += `${i}\n`;
        socket.write(`${i}\n`);
        if (i % 5 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      const deadline = Date.now() + 5_000;
      while (received.length < sent.length && Date.now() < deadline) await sleep(10);
      expect(received).toBe(sent);

      // Redis: 500 RPUSH in flight at once, then the list.
      const key = uniquePrefix('order');
      await Promise.all(Array.from({ length: 500 }, (_, i) => lab.client.rpush(key, String(i))));
      const list = await lab.client.lrange(key, 0, -1);
      expect(list).toEqual(Array.from({ length: 500 }, (_, i) => String(i)));
      await lab.client.del(key);

      // And the jitter is there: sequential round trips spread over several ms.
      const times = await pingTimes(lab.client);
      expect(Math.min(...times)).toBeGreaterThanOrEqual(4);
      expect(Math.max(...times) - Math.min(...times)).toBeGreaterThan(5);
    } finally {
      socket.destroy();
      await proxy.close();
      await echo.close();
      await lab.close();
    }
  });

  it('caps bandwidth: a 200 KB value through 1 MB/s takes 200 ms or more each way', async () => {
    const lab = await throughProxy({ bytesPerSecond: 1_000_000 });
    const key = uniquePrefix('big');
    const value = 'x'.repeat(200_000);
    try {
      await lab.client.ping();
      let start = performance.now();
      await lab.client.set(key, value);
      const upMs = performance.now() - start;
      start = performance.now();
      const got = await lab.client.get(key);
      const downMs = performance.now() - start;
      expect(got).toBe(value);
      expect(upMs).toBeGreaterThanOrEqual(195);
      expect(downMs).toBeGreaterThanOrEqual(195);
      expect(upMs).toBeLessThan(200 + 5 * MARGIN_MS);
      expect(downMs).toBeLessThan(200 + 5 * MARGIN_MS);
      // Small commands are not held back by the cap: a PING is 14 bytes each way.
      expect(median(await pingTimes(lab.client, 5))).toBeLessThan(20);
    } finally {
      await lab.client.del(key);
      await lab.close();
    }
  });

  it('resets connections at a rate, and ioredis reconnects and resends', async () => {
    const lab = await throughProxy({ delayMs: 1, resetsPerSecond: 5 });
    let reconnects = 0;
    lab.client.on('reconnecting', () => reconnects++);
    try {
      let pings = 0;
      const deadline = Date.now() + 8_000;
      // Wait for both counts: ioredis emits 'reconnecting' only after its retry delay, so the
      // proxy can have counted its third reset while the client has not yet seen it.
      while ((lab.proxy.randomResets < 3 || reconnects < 3) && Date.now() < deadline) {
        expect(await lab.client.ping()).toBe('PONG'); // every command answered in the end
        pings++;
        await sleep(20);
      }
      expect(lab.proxy.randomResets).toBeGreaterThanOrEqual(3);
      expect(reconnects).toBeGreaterThanOrEqual(3);
      expect(pings).toBeGreaterThan(3);
      lab.proxy.configure({ resetsPerSecond: 0 });
      const resets = lab.proxy.randomResets;
      await sleep(300);
      expect(lab.proxy.randomResets).toBe(resets);
      expect(await lab.client.ping()).toBe('PONG');
    } finally {
      await lab.close();
    }
  });

  it('partition holds bytes with connections open; heal delivers them; cut resets', async () => {
    const lab = await throughProxy({ delayMs: 10 });
    let reconnects = 0;
    lab.client.on('reconnecting', () => reconnects++);
    try {
      await lab.client.ping();
      lab.proxy.partition();
      const answered = lab.client.ping();
      const first = await Promise.race([answered, sleep(300).then(() => 'silent')]);
      expect(first).toBe('silent');
      expect(lab.proxy.connections).toBe(1);
      lab.proxy.heal();
      expect(await answered).toBe('PONG');
      expect(reconnects).toBe(0);

      lab.proxy.cut();
      await vi.waitFor(() => expect(reconnects).toBeGreaterThanOrEqual(1));
      expect(lab.proxy.state).toBe('cut');
      lab.proxy.heal();
      expect(await lab.client.ping()).toBe('PONG');
      expect(lab.proxy.connections).toBe(1);
    } finally {
      await lab.close();
    }
  });
});

describe('the two-region topology', () => {
  it('third-site: each region reaches the lock store in 2 × 20 ms, its own queue directly, the other queue in 2 × 40 ms', async () => {
    const wan = await startWanTopology({ lockStore: 'third-site' });
    const clients: Redis[] = [];
    const client = (url: string): Redis => {
      const made = redis().connect({
        host: new URL(url).hostname,
        port: Number(new URL(url).port),
      });
      clients.push(made);
      return made;
    };
    try {
      for (const region of ['eu', 'us'] as const) {
        const view = wan.regions[region];
        expect(view.workerEnv).toEqual({ QUEUE_URL: view.queueUrl, LOCK_URL: view.lockUrl });
        expect(view.queueUrl).toBe(wan.queueRedis[region].url);
        const lock = median(await pingTimes(client(view.lockUrl), 5));
        const own = median(await pingTimes(client(view.queueUrl), 5));
        const remote = median(await pingTimes(client(view.remoteQueueUrl), 5));
        expect(lock).toBeGreaterThanOrEqual(40);
        expect(lock).toBeLessThan(40 + MARGIN_MS);
        expect(own).toBeLessThan(20);
        expect(remote).toBeGreaterThanOrEqual(80);
        expect(remote).toBeLessThan(80 + MARGIN_MS);
      }
      // The remote URL really is the other region's Redis.
      const key = uniquePrefix('where');
      await wan.queueRedis.us.connect().set(key, 'us');
      expect(await client(wan.regions.eu.queueUrlOf.us).get(key)).toBe('us');
      expect(wan.allLinks()).toHaveLength(4);
    } finally {
      for (const made of clients) made.disconnect();
      await wan.queueRedis.us.closeClients();
      await wan.stop();
    }
  });

  it('lock store in eu: 0 ms from eu, 40 ms from us; local: no proxy at all', async () => {
    expect(lockDelayMs('eu', 'eu')).toBe(0);
    expect(lockDelayMs('eu', 'us')).toBe(40);
    expect(lockDelayMs('third-site', 'us')).toBe(20);
    expect(lockDelayMs('local', 'us')).toBe(0);
    const inEu = await startWanTopology({ lockStore: 'eu' });
    try {
      expect(inEu.lockLinks.eu?.link.delayMs).toBe(0);
      expect(inEu.lockLinks.us?.link.delayMs).toBe(40);
      expect(inEu.crossLinks.us.link.delayMs).toBe(40);
    } finally {
      await inEu.stop();
    }
    const wan = await startWanTopology({ lockStore: 'local' });
    try {
      expect(wan.lockLinks).toEqual({});
      expect(wan.regions.eu.lockUrl).toBe(wan.lockRedis.url);
      expect(wan.regions.us.lockUrl).toBe(wan.lockRedis.url);
      expect(wan.allLinks()).toHaveLength(2);
    } finally {
      await wan.stop();
    }
  });
});
