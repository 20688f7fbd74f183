/**
 * The body of the session keeper thread (see `ThreadSession`, src/lock/thread-session.ts).
 *
 * It runs in a worker thread made from this function's source text (`eval`), so it must not
 * close over anything of this module: it takes Node's own modules with `require` and every
 * value from `workerData`. That is also why it speaks RESP itself over one socket rather than
 * loading ioredis: a thread made from source text cannot resolve a package from this one's
 * location the same way under ESM, CommonJS, bundlers and test runners, and it needs exactly
 * one command (SET … PX … XX), plus AUTH and SELECT. The main thread hands it the address
 * its own connection reached (after a Sentinel failover, the new master's).
 */

/** Where the keeper's connection goes: what the main thread's lock connection reached. */
export interface KeeperTarget {
  host?: string;
  port?: number;
  /** A Unix socket instead of host and port. */
  path?: string;
  /** `tls.connect` options (functions left out: they cannot cross into a thread). */
  tls?: Record<string, unknown>;
  username?: string;
  password?: string;
  db: number;
}

/** Indexes in the shared BigInt64Array (nanoseconds on `process.hrtime`'s clock). */
export const SLOTS = {
  /** The main thread's last sign of life. */
  beat: 0,
  /** When runs under the session must have stopped; 0 once the key is known gone. */
  deadline: 1,
  /** The grace to publish in the key's value (ms; 0: none beyond the usual). */
  grace: 2,
} as const;

export interface KeeperData {
  shared: SharedArrayBuffer;
  slots: typeof SLOTS;
  key: string;
  ttlMs: number;
  everyMs: number;
  /** A refresh sent at t lets runs go on until t + ttlMs − marginMs. */
  marginMs: number;
  /** Longest the main thread may go without a beat before the key is left to run out. */
  staleMs: number;
  /** After a failed refresh, how soon to try again. */
  retryMs: number;
  target: KeeperTarget;
}

/** Keeper → main thread. */
export type FromKeeper =
  | { type: 'expired' }
  | { type: 'missing'; sentAtNs: bigint }
  | { type: 'error'; message: string };

/** Main thread → keeper. */
export type ToKeeper =
  | { type: 'armed'; sentAtNs: bigint }
  | { type: 'renew' }
  | { type: 'target'; target: KeeperTarget }
  | { type: 'stop' };

export function sessionKeeperThread(): void {
  const threads = require('node:worker_threads') as typeof import('node:worker_threads');
  const net = require('node:net') as typeof import('node:net');
  const tls = require('node:tls') as typeof import('node:tls');
  const port = threads.parentPort;
  if (port === null) return;
  const data = threads.workerData as KeeperData;
  const slots = new BigInt64Array(data.shared);
  const NS_PER_MS = 1_000_000n;
  const now = (): bigint => process.hrtime.bigint();
  const tell = (message: FromKeeper): void => port.postMessage(message);
  let target = data.target;

  // One RESP2 connection. Replies here are short ASCII (+OK, $-1, -ERR …), so string length
  // stands for byte length when reading a bulk reply.
  type Waiter = { resolve: (reply: string | null) => void; reject: (err: Error) => void };
  let socket: import('node:net').Socket | undefined;
  let input = '';
  let waiting: Waiter[] = [];

  const drop = (why: Error): void => {
    const was = socket;
    const waiters = waiting;
    socket = undefined;
    input = '';
    waiting = [];
    was?.destroy();
    for (const waiter of waiters) waiter.reject(why);
  };

  const parse = (): void => {
    for (;;) {
      const end = input.indexOf('\r\n');
      if (end < 0) return;
      const line = input.slice(0, end);
      const body = line.slice(1);
      let used = end + 2;
      let reply: string | null | Error;
      if (line[0] === '$') {
        const length = Number(body);
        if (length < 0) reply = null;
        else {
          if (input.length < used + length + 2) return;
          reply = input.slice(used, used + length);
          used += length + 2;
        }
      } else if (line[0] === '-') reply = new Error(body);
      else if (line[0] === '+' || line[0] === ':') reply = body;
      else {
        drop(new Error(`unexpected reply from the lock store: ${line.slice(0, 40)}`));
        return;
      }
      input = input.slice(used);
      const waiter = waiting.shift();
      if (reply instanceof Error) waiter?.reject(reply);
      else waiter?.resolve(reply);
    }
  };

  const write = (s: import('node:net').Socket, args: string[]): Promise<string | null> =>
    new Promise((resolve, reject) => {
      waiting.push({ resolve, reject });
      let frame = `*${args.length}\r\n`;
      for (const arg of args) frame += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
      s.write(frame);
    });

  const open = (): import('node:net').Socket => {
    const s =
      target.path !== undefined
        ? net.connect(target.path)
        : target.tls !== undefined
          ? tls.connect({ ...target.tls, host: target.host, port: target.port })
          : net.connect(target.port ?? 6379, target.host ?? '127.0.0.1');
    s.setEncoding('utf8');
    s.setNoDelay(true);
    s.on('data', (chunk: string) => {
      if (socket !== s) return;
      input += chunk;
      parse();
    });
    s.on('error', (err: Error) => {
      if (socket === s) drop(err);
    });
    s.on('close', () => {
      if (socket === s) drop(new Error('the connection to the lock store closed'));
    });
    socket = s;
    const hello: string[][] = [];
    if (target.password !== undefined) {
      hello.push(
        target.username === undefined
          ? ['AUTH', target.password]
          : ['AUTH', target.username, target.password],
      );
    }
    if (target.db !== 0) hello.push(['SELECT', String(target.db)]);
    for (const args of hello) {
      // A refusal shows in the SET that follows (NOAUTH, …): reported there.
      write(s, args).catch(() => {});
    }
    return s;
  };

  const call = (args: string[], timeoutMs: number): Promise<string | null> => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error(`the lock store did not answer within ${timeoutMs} ms`);
        // A late reply would be taken for the next command's: start a new connection.
        drop(err);
        reject(err);
      }, timeoutMs);
    });
    return Promise.race([write(socket ?? open(), args), timedOut]).finally(() =>
      clearTimeout(timer),
    );
  };

  // The keeper.
  let stopped = false;
  let busy = false;
  let again = false;
  /** After the key was found gone, until the main thread has made it anew. */
  let paused = false;
  /** Report the first failure after a success, not one per retry. */
  let failing = false;
  let timer: NodeJS.Timeout | undefined;
  let expiry: NodeJS.Timeout | undefined;

  const schedule = (delayMs: number): void => {
    clearTimeout(timer);
    timer = setTimeout(() => void refresh(), delayMs);
  };

  const watchDeadline = (deadline: bigint): void => {
    clearTimeout(expiry);
    const leftMs = Number((deadline - now()) / NS_PER_MS);
    expiry = setTimeout(
      () => {
        if (!stopped && Atomics.load(slots, data.slots.deadline) <= now())
          tell({ type: 'expired' });
      },
      Math.max(0, leftMs + 1),
    );
  };

  const leaseFrom = (sentAtNs: bigint): void => {
    const deadline = sentAtNs + BigInt(data.ttlMs - data.marginMs) * NS_PER_MS;
    if (deadline <= Atomics.load(slots, data.slots.deadline)) return;
    Atomics.store(slots, data.slots.deadline, deadline);
    watchDeadline(deadline);
  };

  const refresh = async (): Promise<void> => {
    if (stopped || paused) return;
    if (busy) {
      again = true;
      return;
    }
    // A main thread silent for this long is stuck (an endless loop, a deadlock): the key is
    // left to run out so the twin takes its runs over, as it would a frozen process's.
    const silentNs = now() - Atomics.load(slots, data.slots.beat);
    if (silentNs > BigInt(data.staleMs) * NS_PER_MS) {
      schedule(data.retryMs);
      return;
    }
    busy = true;
    const sentAtNs = now();
    const grace = Atomics.load(slots, data.slots.grace);
    try {
      const reply = await call(
        ['SET', data.key, grace > 0n ? String(grace) : '1', 'PX', String(data.ttlMs), 'XX'],
        data.everyMs,
      );
      if (stopped) return;
      failing = false;
      if (reply === 'OK') {
        leaseFrom(sentAtNs);
        schedule(data.everyMs);
      } else {
        // Gone (ran out while this process was frozen or cut off, evicted, lost in a
        // failover): runs under it stop; the main thread makes the key anew ('armed').
        paused = true;
        Atomics.store(slots, data.slots.deadline, 0n);
        clearTimeout(expiry);
        tell({ type: 'missing', sentAtNs });
      }
    } catch (err) {
      if (stopped) return;
      if (!failing) tell({ type: 'error', message: (err as Error).message });
      failing = true;
      schedule(data.retryMs);
    } finally {
      busy = false;
      if (again && !stopped && !paused) {
        again = false;
        schedule(0);
      }
    }
  };

  port.on('message', (message: ToKeeper) => {
    if (message.type === 'armed') {
      paused = false;
      leaseFrom(message.sentAtNs);
      schedule(data.everyMs);
    } else if (message.type === 'renew') schedule(0);
    else if (message.type === 'target') {
      target = message.target;
      drop(new Error('the lock store moved'));
      schedule(0);
    } else {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(expiry);
      drop(new Error('stopped'));
      port.close();
    }
  });
  // The main thread wrote the first key and its deadline.
  watchDeadline(Atomics.load(slots, data.slots.deadline));
  schedule(0);
}
