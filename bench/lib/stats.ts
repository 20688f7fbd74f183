import * as hdr from 'hdr-histogram-js';

export interface LatencySummary {
  samples: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Percentiles from an HDR histogram (ms, 3 significant digits). */
export function summarize(valuesMs: number[]): LatencySummary {
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000,
    numberOfSignificantValueDigits: 3,
  });
  for (const value of valuesMs) histogram.recordValue(Math.max(1, Math.round(value)));
  const summary = {
    samples: valuesMs.length,
    p50: histogram.getValueAtPercentile(50),
    p99: histogram.getValueAtPercentile(99),
    min: valuesMs.length ? Math.round(Math.min(...valuesMs)) : 0,
    max: valuesMs.length ? Math.round(Math.max(...valuesMs)) : 0,
    mean: Math.round(histogram.mean),
  };
  histogram.destroy();
  return summary;
}

export function round(value: number, digits = 2): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/**
 * Nearest-rank percentiles of values that may be negative or below 1 (ms, rounded); no
 * histogram, so no clamping. Empty: every figure 0.
 */
export function spread(values: number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) =>
    sorted.length === 0 ? 0 : (sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0);
  const mean = sorted.length === 0 ? 0 : sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return {
    samples: sorted.length,
    p50: Math.round(at(50)),
    p99: Math.round(at(99)),
    min: Math.round(sorted[0] ?? 0),
    max: Math.round(sorted[sorted.length - 1] ?? 0),
    mean: Math.round(mean),
  };
}
