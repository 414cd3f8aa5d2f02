/**
 * Live charts (uPlot), one per opened reading, starting with the reading's stored history
 * (asked from the broker when the chart opens) and an export link to its CSV. The points live in the
 * SeriesStore (bounded per series); a chart only redraws at the animation
 * frame after its series changed, with `setData` on the same arrays.
 * Theme changes rebuild the charts, since uPlot paints colours onto a canvas.
 */
import uPlot from 'uplot';
import { el, setText } from './dom.js';
import { formatNumber, formatWithUnit } from './format.js';
import type { SeriesStore } from './series.js';

interface Chart {
  topic: string;
  label: string;
  unit: string | undefined;
  root: HTMLElement;
  plotEl: HTMLElement;
  latestEl: HTMLElement;
  plot: uPlot | undefined;
  /** Index of the point under the cursor, while hovering: the header shows it instead of the latest. */
  hoverIdx: number | null;
}

export interface ChartsOptions {
  /** Called after a chart opens or closes, so the reading's toggle can follow. */
  onChange(topic: string, open: boolean): void;
  /** Asks for a render at the next animation frame. */
  requestRender(): void;
  /** Polite announcements for screen readers. */
  announce(text: string): void;
  /** A chart opened: load the reading's earlier points from the broker's history (they arrive through `onData`). */
  loadHistory(topic: string): void;
  /** The reading's CSV export link (its URL, and the click handler that adds credentials). */
  exportLink(topic: string): { href: string; onClick(event: MouseEvent): void };
}

const HEIGHT_PX = 180;

// 24-hour clock: short labels that never collide, as in most monitoring tools.
const withSeconds = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
const withoutSeconds = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });

/** A tick label: hh:mm:ss when ticks are under a minute apart, else hh:mm. */
function clockTime(tSec: number, ticks: number[]): string {
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : 60;
  return (step < 60 ? withSeconds : withoutSeconds).format(tSec * 1000);
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

export class ChartsView {
  private readonly charts = new Map<string, Chart>();
  private readonly dirty = new Set<Chart>();
  private readonly resize = new ResizeObserver(() => this.fit());
  private ids = 0;

  constructor(
    private readonly grid: HTMLElement,
    private readonly empty: HTMLElement,
    private readonly store: SeriesStore,
    private readonly opts: ChartsOptions,
  ) {
    this.resize.observe(grid);
  }

  isOpen(topic: string): boolean {
    return this.charts.has(topic);
  }

  toggle(topic: string, label: string, unit: string | undefined): void {
    if (this.charts.has(topic)) this.close(topic);
    else this.open(topic, label, unit);
  }

  open(topic: string, label: string, unit: string | undefined): void {
    if (this.charts.has(topic)) return;
    const titleId = `chart-${++this.ids}-title`;
    const latestEl = el('span', { class: 'chart-latest', 'aria-live': 'off' });
    const closeBtn = el('button', { type: 'button', class: 'icon-button', 'aria-label': `Close chart ${label}`, title: 'Close chart' }, '×');
    const plotEl = el('div', { class: 'chart-plot', role: 'img', 'aria-label': `Line chart of ${label}` });
    const exportLink = this.opts.exportLink(topic);
    const exportEl = el('a', { class: 'chart-export', href: exportLink.href, download: '', title: `Download the stored readings of ${topic} as CSV` }, 'CSV');
    exportEl.setAttribute('aria-label', `Export ${label} as CSV`);
    exportEl.addEventListener('click', exportLink.onClick);
    const root = el(
      'figure',
      { class: 'card chart', 'aria-labelledby': titleId, 'data-topic': topic, 'data-points': '0' },
      el('figcaption', { class: 'chart-head' }, el('span', { id: titleId, class: 'chart-title' }, unit ? `${label} (${unit})` : label), latestEl, exportEl, closeBtn),
      plotEl,
    );
    const chart: Chart = { topic, label, unit, root, plotEl, latestEl, plot: undefined, hoverIdx: null };
    closeBtn.addEventListener('click', () => this.close(topic));
    this.charts.set(topic, chart);
    this.grid.prepend(root);
    this.empty.hidden = true;
    this.build(chart);
    this.dirty.add(chart);
    this.opts.requestRender();
    this.opts.onChange(topic, true);
    this.opts.announce(`Chart opened: ${label}`);
    this.opts.loadHistory(topic);
    root.scrollIntoView({ block: 'nearest' });
  }

  close(topic: string): void {
    const chart = this.charts.get(topic);
    if (!chart) return;
    chart.plot?.destroy();
    chart.root.remove();
    this.charts.delete(topic);
    this.dirty.delete(chart);
    this.empty.hidden = this.charts.size > 0;
    this.opts.onChange(topic, false);
    this.opts.announce(`Chart closed: ${chart.label}`);
  }

  /** A new point arrived for `topic`: redraw its chart (if open) at the next frame. */
  onData(topic: string): void {
    const chart = this.charts.get(topic);
    if (!chart) return;
    this.dirty.add(chart);
    this.opts.requestRender();
  }

  render(): void {
    for (const chart of this.dirty) {
      const s = this.store.get(chart.topic);
      if (!s || !chart.plot) continue;
      chart.plot.setData([s.xs, s.ys]);
      chart.root.dataset.points = String(s.xs.length);
      this.showValue(chart);
    }
    this.dirty.clear();
  }

  /** The header value: the hovered point with its time, else the latest point. */
  private showValue(chart: Chart): void {
    const s = this.store.get(chart.topic);
    if (!s) return;
    const i = chart.hoverIdx;
    const unit = s.unit ?? chart.unit;
    if (i !== null && i < s.ys.length) {
      const at = new Date(s.xs[i]! * 1000).toLocaleTimeString();
      setText(chart.latestEl, `${formatWithUnit(s.ys[i]!, unit)} at ${at}`);
      return;
    }
    const last = s.ys[s.ys.length - 1];
    setText(chart.latestEl, last === undefined ? '' : formatWithUnit(last, unit));
  }

  /** Rebuilds every chart with the current theme's colours. */
  retheme(): void {
    for (const chart of this.charts.values()) {
      this.build(chart);
      this.dirty.add(chart);
    }
    this.opts.requestRender();
  }

  closeAll(): void {
    for (const topic of [...this.charts.keys()]) this.close(topic);
  }

  private width(chart: Chart): number {
    return Math.max(200, Math.floor(chart.plotEl.clientWidth || chart.root.clientWidth || 320));
  }

  private fit(): void {
    for (const chart of this.charts.values()) {
      const w = this.width(chart);
      if (chart.plot && chart.plot.width !== w) chart.plot.setSize({ width: w, height: HEIGHT_PX });
    }
  }

  private build(chart: Chart): void {
    chart.plot?.destroy();
    const s = this.store.get(chart.topic);
    const line = cssVar('--accent');
    const grid = cssVar('--grid');
    const text = cssVar('--muted');
    const axis: uPlot.Axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: '11px system-ui, sans-serif' };
    const opts: uPlot.Options = {
      width: this.width(chart),
      height: HEIGHT_PX,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      // Clock times only (the date is today's); seconds while the window is short.
      axes: [{ ...axis, space: 84, values: (_u, ticks) => ticks.map((t, _i, all) => clockTime(t, all)) }, { ...axis, size: 56, values: (_u, ticks) => ticks.map((t) => formatNumber(t)) }],
      series: [{}, { label: chart.label, stroke: line, width: 2, fill: cssVar('--accent-fill'), points: { show: false } }],
      hooks: {
        setCursor: [
          (u) => {
            const idx = u.cursor.idx ?? null;
            if (idx === chart.hoverIdx) return;
            chart.hoverIdx = idx;
            this.showValue(chart);
          },
        ],
      },
    };
    chart.plot = new uPlot(opts, [s ? s.xs : [], s ? s.ys : []], chart.plotEl);
  }
}
