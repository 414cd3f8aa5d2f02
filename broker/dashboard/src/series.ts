/**
 * Bounded numeric time series, one per topic with numeric readings, kept from
 * the moment the dashboard sees the topic so a chart opened later already has
 * history. Invariants: x (seconds since epoch) never decreases within a series;
 * a series holds at most `maxPoints` points, none older than `windowSec`
 * behind its newest. Cost: O(1) amortised per point (shift on a small array).
 */

export interface Series {
  readonly xs: number[];
  readonly ys: number[];
  unit: string | undefined;
}

export class SeriesStore {
  private readonly series = new Map<string, Series>();

  constructor(
    readonly maxPoints = 600, // ≈ 10 minutes at one reading a second; a few KB per series
    readonly windowSec = 900, // the chart shows the last quarter hour at most
  ) {}

  /** Appends a point; `tsSec` is the reading's own time when it has one, else arrival time. */
  push(topic: string, tsSec: number, value: number, unit: string | undefined): Series {
    let s = this.series.get(topic);
    if (!s) {
      s = { xs: [], ys: [], unit };
      this.series.set(topic, s);
    }
    if (unit !== undefined) s.unit = unit;
    const last = s.xs.length ? s.xs[s.xs.length - 1]! : -Infinity;
    const x = tsSec < last ? last : tsSec; // clocks may step back; keep x monotonic for the chart
    if (x === last) {
      // Same instant (a retained value and its live twin, or a coarse clock): replace, don't stack.
      s.ys[s.ys.length - 1] = value;
    } else {
      s.xs.push(x);
      s.ys.push(value);
    }
    while (s.xs.length > this.maxPoints || (s.xs.length > 1 && s.xs[0]! < x - this.windowSec)) {
      s.xs.shift();
      s.ys.shift();
    }
    return s;
  }

  get(topic: string): Series | undefined {
    return this.series.get(topic);
  }

  clear(): void {
    this.series.clear();
  }
}
