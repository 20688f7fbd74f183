import { type ChildLine, FixtureProcess } from '../../test/support/child.js';

/** What one region's processes reported, summed over its processes and their restarts. */
export interface RegionCounts {
  executed: number;
  shadowed: number;
  takenOver: number;
  completedByTwin: number;
}

const workerFile = new URL('./region-worker.ts', import.meta.url);

const COUNTED: Record<string, keyof RegionCounts> = {
  executed: 'executed',
  shadowed: 'shadowed',
  takeover: 'takenOver',
  twinCompleted: 'completedByTwin',
};

/** One region: N identical worker processes (region-worker.ts), which it can kill and restart. */
export class Region {
  state: 'up' | 'down' = 'down';
  /** Every process it ran, killed ones included: their lines make the counts. */
  private readonly all: FixtureProcess[] = [];
  private running: FixtureProcess[] = [];

  constructor(
    readonly name: string,
    private readonly processes: number,
    private readonly env: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    this.running = Array.from(
      { length: this.processes },
      () => new FixtureProcess(workerFile, { ...this.env, REGION: this.name }),
    );
    this.all.push(...this.running);
    await Promise.all(this.running.map((p) => p.next('ready')));
    this.state = 'up';
  }

  /** SIGKILL every process of the region: a region lost at once, mid-work. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.state = 'down';
    await Promise.all(this.running.splice(0).map((p) => p.kill(signal)));
  }

  /** The running processes' /metrics addresses. */
  get metricsUrls(): string[] {
    return this.running.flatMap((p) =>
      p.lines.filter((l) => l.event === 'ready').map((l) => String(l.metrics)),
    );
  }

  /** Distinct jobs per decision: BullMQ may hand a copy over twice (a killed process's stalled copy). */
  get counts(): RegionCounts {
    const ids: Record<keyof RegionCounts, Set<unknown>> = {
      executed: new Set(),
      shadowed: new Set(),
      takenOver: new Set(),
      completedByTwin: new Set(),
    };
    for (const line of this.lines()) {
      const key = COUNTED[line.event];
      if (key) ids[key].add(line.jobId);
    }
    return {
      executed: ids.executed.size,
      shadowed: ids.shadowed.size,
      takenOver: ids.takenOver.size,
      completedByTwin: ids.completedByTwin.size,
    };
  }

  /** Each job's first takeover line (with the time `at` the worker said it). */
  get takeovers(): ChildLine[] {
    const seen = new Set<unknown>();
    return this.lines().filter(
      (l) => l.event === 'takeover' && !seen.has(l.jobId) && seen.add(l.jobId),
    );
  }

  private lines(): ChildLine[] {
    return this.all.flatMap((p) => p.lines);
  }
}
