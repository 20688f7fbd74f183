import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

/** What one region's processes reported, summed over its processes and their restarts. */
export interface RegionCounts {
  executed: number;
  shadowed: number;
  takenOver: number;
  completedByTwin: number;
}

export interface WorkerLine {
  event: string;
  at: number;
  [key: string]: unknown;
}

const workerFile = fileURLToPath(new URL('./region-worker.ts', import.meta.url));

/** One region: N identical worker processes (region-worker.ts), which it can kill and restart. */
export class Region {
  readonly counts: RegionCounts = { executed: 0, shadowed: 0, takenOver: 0, completedByTwin: 0 };
  readonly takeovers: WorkerLine[] = [];
  readonly metricsUrls: string[] = [];
  private readonly seen: Record<keyof RegionCounts, Set<string>> = {
    executed: new Set(),
    shadowed: new Set(),
    takenOver: new Set(),
    completedByTwin: new Set(),
  };
  state: 'up' | 'down' = 'down';
  private children: ChildProcessByStdio<null, Readable, Readable>[] = [];

  constructor(
    readonly name: string,
    private readonly processes: number,
    private readonly env: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    this.metricsUrls.length = 0;
    await Promise.all(Array.from({ length: this.processes }, () => this.spawnOne()));
    this.state = 'up';
  }

  /** SIGKILL every process of the region: a region lost at once, mid-work. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.state = 'down';
    await Promise.all(
      this.children.splice(0).map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill(signal);
        await exited;
      }),
    );
  }

  private async spawnOne(): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', workerFile], {
      env: { ...process.env, ...this.env, REGION: this.name },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.push(child);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const ready = new Promise<void>((resolve, reject) => {
      child.once('exit', (code) =>
        reject(new Error(`${this.name} worker exited (${code}):\n${stderr}`)),
      );
      createInterface({ input: child.stdout }).on('line', (text) => {
        const line = JSON.parse(text) as WorkerLine;
        if (line.event === 'ready') {
          this.metricsUrls.push(String(line.metrics));
          resolve();
        }
        this.count(line);
      });
    });
    await ready;
  }

  private count(line: WorkerLine): void {
    const key = {
      executed: 'executed',
      shadowed: 'shadowed',
      twinCompleted: 'completedByTwin',
      takeover: 'takenOver',
    }[line.event] as keyof RegionCounts | undefined;
    if (key === undefined) return;
    // Distinct jobs: BullMQ may hand a copy over twice (a stalled copy of a killed process).
    const ids = this.seen[key];
    if (ids.has(String(line.jobId))) return;
    ids.add(String(line.jobId));
    this.counts[key] = ids.size;
    if (key === 'takenOver') this.takeovers.push(line);
  }
}
