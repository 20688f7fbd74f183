import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

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

  /** `fixture`: a file name under test/fixtures, or the URL of any TypeScript file. */
  constructor(fixture: string | URL, env: Record<string, string>) {
    const path = fileURLToPath(
      fixture instanceof URL ? fixture : new URL(`../fixtures/${fixture}`, import.meta.url),
    );
    this.child = spawn(process.execPath, ['--import', 'tsx', path], {
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
   * rejects if the child exits first.
   */
  next(event: string, match: (line: ChildLine) => boolean = () => true): Promise<ChildLine> {
    const seen = this.lines.find((line) => line.event === event && match(line));
    if (seen) return Promise.resolve(seen);
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return Promise.reject(this.exitedBefore(event));
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ event, match, resolve, reject });
    });
  }

  private exitedBefore(event: string): Error {
    const how = this.child.exitCode ?? this.child.signalCode;
    return new Error(`fixture exited (${how}) before "${event}":\n${this.stderr}`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
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
