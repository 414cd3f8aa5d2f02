/**
 * Broker figures from `$SYS/broker/#` (retained UTF-8 text, republished every
 * few seconds). Counters also show a rate, computed from the last two values.
 * Figures the dashboard does not know yet are appended under their own name.
 */
import type { Decoded } from './decode.js';
import { el, setText } from './dom.js';
import { formatBytes, formatCount, formatDuration, formatNumber } from './format.js';

type Kind = 'count' | 'counter' | 'bytes' | 'duration' | 'text';

interface Figure {
  kind: Kind;
  value: number | string | undefined;
  prev: { value: number; atMs: number } | undefined;
  rate: number | undefined;
  valueEl: HTMLElement;
  subEl: HTMLElement;
  root: HTMLElement;
}

/** Headline figures, in display order: path under `$SYS/broker/`, label, kind. */
const MAIN: readonly (readonly [string, string, Kind])[] = [
  ['clients/connected', 'Clients', 'count'],
  ['messages/received', 'Messages in', 'counter'],
  ['messages/sent', 'Messages out', 'counter'],
  ['bytes/received', 'Bytes in', 'bytes'],
  ['bytes/sent', 'Bytes out', 'bytes'],
  ['messages/dropped', 'Dropped', 'counter'],
  ['retained/count', 'Retained', 'count'],
  ['subscriptions/count', 'Subscriptions', 'count'],
  ['memory/rss', 'Memory', 'bytes'],
  ['uptime', 'Uptime', 'duration'],
];

/** Secondary figures, shown on one line below; unknown `$SYS/broker/...` topics join them. */
const MINOR: readonly (readonly [string, string, Kind])[] = [
  ['version', 'version', 'text'],
  ['clients/total', 'clients since start', 'count'],
  ['messages/conflated', 'conflated', 'counter'],
  ['messages/rate-limited', 'rate-limited', 'counter'],
  ['clients/slow-disconnects', 'slow-consumer disconnects', 'counter'],
];

const PREFIX = '$SYS/broker/';

export class SysView {
  private readonly figures = new Map<string, Figure>();
  private readonly dirty = new Set<Figure>();

  constructor(
    private readonly list: HTMLElement,
    private readonly minorList: HTMLElement,
    private readonly requestRender: () => void,
  ) {
    for (const [path, label, kind] of MAIN) this.figure(path, label, kind, false);
    for (const [path, label, kind] of MINOR) this.figure(path, label, kind, true);
  }

  onMessage(topic: string, d: Decoded, nowMs: number): void {
    if (!topic.startsWith(PREFIX)) return;
    const path = topic.slice(PREFIX.length);
    const f = this.figures.get(path) ?? this.figure(path, path.replaceAll('/', ' '), 'text', true);
    let v: number | string | undefined;
    if (d.format === 'empty') v = undefined;
    else if (typeof d.value === 'number') v = d.value;
    else {
      // "123 seconds" (mosquitto style) and "123" both read as 123.
      const text = typeof d.value === 'string' ? d.value : JSON.stringify(d.value);
      const n = f.kind === 'text' ? NaN : Number.parseFloat(text);
      v = Number.isFinite(n) ? n : text;
    }
    if (typeof v === 'number' && (f.kind === 'counter' || f.kind === 'bytes')) {
      if (f.prev && nowMs > f.prev.atMs && v >= f.prev.value) f.rate = ((v - f.prev.value) * 1000) / (nowMs - f.prev.atMs);
      f.prev = { value: v, atMs: nowMs };
    }
    f.value = v;
    this.dirty.add(f);
    this.requestRender();
  }

  render(): void {
    for (const f of this.dirty) {
      const v = f.value;
      let text: string;
      if (v === undefined) text = '–';
      else if (typeof v === 'string') text = v.replace(/^topicast[ /]/, ''); // "topicast 0.1.0": the name is in the header already
      else if (f.kind === 'bytes') text = formatBytes(v);
      else if (f.kind === 'duration') text = formatDuration(v);
      else if (f.kind === 'count' || f.kind === 'counter') text = formatCount(v);
      else text = formatNumber(v);
      setText(f.valueEl, text);
      const rate = f.rate;
      setText(f.subEl, rate === undefined ? '' : f.kind === 'bytes' ? formatBytes(rate, true) : `${formatNumber(Math.round(rate * 10) / 10)}/s`);
    }
    this.dirty.clear();
  }

  clear(): void {
    for (const f of this.figures.values()) {
      f.value = undefined;
      f.prev = undefined;
      f.rate = undefined;
      this.dirty.add(f);
    }
    this.requestRender();
  }

  private figure(path: string, label: string, kind: Kind, minor: boolean): Figure {
    const valueEl = el(minor ? 'b' : 'span', { class: 'figure-value' }, '–');
    const subEl = el('span', { class: 'figure-sub' });
    const root = minor
      ? el('div', { class: 'minor-figure', 'data-sys': path }, el('dt', {}, label), el('dd', {}, valueEl, subEl))
      : el('div', { class: 'figure', 'data-sys': path, 'data-kind': kind }, el('dt', {}, label), el('dd', {}, valueEl, subEl));
    const f: Figure = { kind, value: undefined, prev: undefined, rate: undefined, valueEl, subEl, root };
    this.figures.set(path, f);
    (minor ? this.minorList : this.list).append(root);
    return f;
  }
}
