import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

/** How long `next` waits for a line by default: well under the test timeout, so it names the line. */
export const NEXT_TIMEOUT_MS = 30_000;

/** How many of the child's last lines a `next` timeout quotes. */
const QUOTED_LINES = 5;

export interface ChildLine {
  event: string;
  [key: string]: unknown;
}

/** A TypeScript fixture in a real child process (node --import tsx), speaking JSON lines. */
export class FixtureProcess {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly lines: ChildLine[] = [];
  private readonly waiters: {
    event: string;
    match: (line: ChildLine) => boolean;
    resolve: (line: ChildLine) => void;
    reject: (err: Error) => void;
  }[] = [];
  private stderr = '';
  /** The fixture's name in messages: its file name. */
  private readonly name: string;

  /** `fixture`: a file name under test/fixtures, or the URL of any TypeScript file. */
  constructor(fixture: string | URL, env: Record<string, string>) {
    const path = fileURLToPath(
      fixture instanceof URL ? fixture : new URL(`../fixtures/${fixture}`, import.meta.url),
    );
    this.name = basename(path);
    // FIXTURE_CPU_PROF=<dir>: each fixture writes a V8 CPU profile there when it exits
    // (NODE_OPTIONS refuses --cpu-prof); how the bench's worker processes are profiled.
    const profile = process.env.FIXTURE_CPU_PROF
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FIXTURE_CPU_PROF}`]
      : [];
    this.child = spawn(process.execPath, [...profile, '--import', 'tsx', path], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    // One exit listener for every waiter (a listener per waiter trips Node's leak warning).
    this.child.once('exit', () => {
      for (const waiter of this.waiters.splice(0)) waiter.reject(this.exitedBefore(waiter.event));
    });
    createInterface({ input: this.child.stdout }).on('line', (text) => {
      const line = JSON.parse(text) as ChildLine;
      if (process.env.FIXTURE_DEBUG)
        appendFileSync(process.env.FIXTURE_DEBUG, `[${this.child.pid}] ${text}\n`);
      this.lines.push(line);
      for (const waiter of this.waiters.filter((w) => w.event === line.event && w.match(line))) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    });
  }

  /**
   * The first line with this event (and matching `match`), already seen or still to come;
   * rejects if the child exits first, or if no such line comes within `timeoutMs` (naming
   * the awaited event and quoting the child's last lines, rather than letting the test time
   * out without saying what it waited for).
   */
  next(
    event: string,
    match: (line: ChildLine) => boolean = () => true,
    timeoutMs = NEXT_TIMEOUT_MS,
  ): Promise<ChildLine> {
    const seen = this.lines.find((line) => line.event === event && match(line));
    if (seen) return Promise.resolve(seen);
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return Promise.reject(this.exitedBefore(event));
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        event,
        match,
        resolve: (line: ChildLine) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(this.noLineWithin(event, timeoutMs));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private exitedBefore(event: string): Error {
    const how = this.child.exitCode ?? this.child.signalCode;
    return new Error(
      `child ${this.name} pid ${this.child.pid}: exited (${how}) before a '${event}' line; last lines: ${this.lastLines()}\n${this.stderr}`,
    );
  }

  private noLineWithin(event: string, timeoutMs: number): Error {
    const within = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000} s` : `${timeoutMs} ms`;
    const stderr = this.stderr === '' ? '' : `\nstderr:\n${this.stderr.slice(-2_000)}`;
    return new Error(
      `child ${this.name} pid ${this.child.pid}: no '${event}' line within ${within}; last lines: ${this.lastLines()}${stderr}`,
    );
  }

  private lastLines(): string {
    if (this.lines.length === 0) return '(none)';
    return this.lines
      .slice(-QUOTED_LINES)
      .map((line) => JSON.stringify(line))
      .join(' | ');
  }

  /** SIGKILL by default; SIGTERM while profiling (a killed process writes no profile). */
  async kill(
    signal: NodeJS.Signals = process.env.FIXTURE_CPU_PROF ? 'SIGTERM' : 'SIGKILL',
  ): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill(signal);
    await exited;
  }

  async exited(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    const [code] = (await once(this.child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`fixture exited with ${code}:\n${this.stderr}`);
    return code;
  }
}
