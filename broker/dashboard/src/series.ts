/**
 * Bounded numeric time series, one per topic with numeric readings, kept from
 * the moment the dashboard sees the topic so a chart opened later already has
 * history, and a chart opened on a reading also gets the broker's stored points before those
 * (`prefill`, PROTOCOL.md §4.8). Invariants: x (seconds since epoch) never decreases within a series;
 * a series holds at most `maxPoints` points, none older than `windowSec`
 * behind its newest. Cost: O(1) amortised per point (shift on a small array).
 */

export interface Series {
  readonly xs: number[];
  readonly ys: number[];
  unit: string | undefined;
  /**
   * The first point is a retained value placed at its arrival time (its publish time unknown): the
   * history's newest message is that same value at its real time, so `prefill` replaces it.
   */
  provisionalFirst?: boolean;
}

export class SeriesStore {
  private readonly series = new Map<string, Series>();

  constructor(
    readonly maxPoints = 600, // ≈ 10 minutes at one reading a second; a few KB per series
    readonly windowSec = 900, // the chart shows the last quarter hour at most
  ) {}

  /**
   * Appends a point; `tsSec` is the reading's own time when it has one, else arrival time.
   * `provisional`: a retained value timed by its arrival (see Series.provisionalFirst).
   */
  push(topic: string, tsSec: number, value: number, unit: string | undefined, provisional = false): Series {
    let s = this.series.get(topic);
    if (!s) {
      s = { xs: [], ys: [], unit };
      this.series.set(topic, s);
    }
    if (s.xs.length === 0) s.provisionalFirst = provisional;
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

  /**
   * Puts earlier points (from the broker's history, oldest first) before the ones the page saw
   * itself: only those older than its first point, so nothing is doubled; then the bounds apply.
   */
  prefill(topic: string, points: readonly { x: number; y: number }[], unit: string | undefined): Series {
    let s = this.series.get(topic);
    if (!s) {
      s = { xs: [], ys: [], unit };
      this.series.set(topic, s);
    }
    if (s.provisionalFirst && points.length > 0) {
      s.xs.shift();
      s.ys.shift();
    }
    s.provisionalFirst = false;
    const first = s.xs.length ? s.xs[0]! : Infinity;
    const xs: number[] = [];
    const ys: number[] = [];
    for (const p of points) {
      if (p.x >= first || (xs.length > 0 && p.x <= xs[xs.length - 1]!)) continue; // keep x strictly increasing
      xs.push(p.x);
      ys.push(p.y);
    }
    s.xs.unshift(...xs);
    s.ys.unshift(...ys);
    const newest = s.xs[s.xs.length - 1] ?? 0;
    while (s.xs.length > this.maxPoints || (s.xs.length > 1 && s.xs[0]! < newest - this.windowSec)) {
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
