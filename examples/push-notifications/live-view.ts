import { MultiBar, Presets } from 'cli-progress';
import type { GatewayStats } from './gateway.js';
import type { Region } from './regions.js';

/**
 * The live terminal view: one bar per region (its copies completed, by running them or by
 * the twin's result) and one for the gateway (notifications delivered). Only on a terminal.
 */
export class LiveView {
  private readonly bars: MultiBar | undefined;
  private readonly regionBars = new Map<string, ReturnType<MultiBar['create']>>();
  private readonly gatewayBar: ReturnType<MultiBar['create']> | undefined;

  constructor(total: number, regions: Region[], enabled: boolean) {
    if (!enabled) return;
    this.bars = new MultiBar(
      {
        format: ' {label} {bar} {value}/{total}  {detail}',
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        autopadding: true,
      },
      Presets.shades_classic,
    );
    for (const region of regions) {
      this.regionBars.set(
        region.name,
        this.bars.create(total, 0, { label: `${region.name.padEnd(7)}`, detail: '' }),
      );
    }
    this.gatewayBar = this.bars.create(total, 0, { label: 'gateway', detail: '' });
  }

  update(regions: Region[], gateway: GatewayStats): void {
    for (const region of regions) {
      const c = region.counts;
      this.regionBars.get(region.name)?.update(c.executed + c.completedByTwin, {
        detail: `${region.state === 'up' ? 'up  ' : 'DOWN'}  executed ${c.executed} · shadowed ${c.shadowed} · took over ${c.takenOver} · completed by twin ${c.completedByTwin}`,
      });
    }
    this.gatewayBar?.update(gateway.delivered, {
      detail: `delivered · duplicates suppressed ${gateway.duplicatesSuppressed} · stale fences refused ${gateway.staleRejected}`,
    });
  }

  /** A line above the bars (e.g. "SIGKILL eu"). */
  note(text: string, fallback: (text: string) => void): void {
    if (this.bars) this.bars.log(`${text}\n`);
    else fallback(text);
  }

  stop(): void {
    this.bars?.stop();
  }
}
