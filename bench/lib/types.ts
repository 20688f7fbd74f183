export type Measured = Record<string, unknown>;

export interface ScenarioResult {
  paired: Measured;
  bullmq: Measured | null;
  ratio: number | null;
  target: string;
  met: boolean;
  /** How it was measured, in one line (configuration that matters). */
  config: string;
  /** Set when the scenario threw: what it threw (the run went on without it). */
  error?: string;
}

export interface BenchOptions {
  quick: boolean;
  log: (line: string) => void;
}

export type Scenario = (options: BenchOptions) => Promise<ScenarioResult>;
