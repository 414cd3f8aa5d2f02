/**
 * Device cards, discovered from the device topic convention (DESIGN.md):
 * `devices/<id>/status` (online/offline), `devices/<id>/info` (host metadata
 * and sensor units) and `devices/<id>/<sensor path>` (readings: a number or
 * `{ value, unit, ts }`). Messages only update the model and mark cards dirty;
 * `render` (once per animation frame) touches the DOM of dirty cards and rows.
 * Cost per message: O(1) map updates; per frame: O(dirty rows).
 */
import { ActuatorPanel, actuatorsFromInfo, type SendCommand } from './actuators.js';
import { formatValue, type Decoded } from './decode.js';
import { el, insertSorted, setAttr, setText } from './dom.js';
import { clip, formatAgo, formatWithUnit } from './format.js';

export interface Reading {
  value: number | string | boolean;
  unit: string | undefined;
  /** The reading's own time (ms since epoch), when it carries one. */
  tsMs: number | undefined;
}

/** Turns a timestamp in seconds or milliseconds (or an ISO string) into milliseconds. */
function toMs(ts: unknown): number | undefined {
  if (typeof ts === 'number' && Number.isFinite(ts) && ts > 0) return ts < 1e11 ? ts * 1000 : ts;
  if (typeof ts === 'string') {
    const t = Date.parse(ts);
    return Number.isNaN(t) ? undefined : t;
  }
  if (ts instanceof Date) return ts.getTime();
  return undefined;
}

/**
 * A decoded payload as a reading: a number, a boolean, a string, or `{ value, unit, ts }`.
 * @example
 * toReading({ format: 'msgpack', value: { value: 48.2, unit: '°C' } }) // { value: 48.2, unit: '°C', tsMs: undefined }
 */
export function toReading(d: Decoded): Reading {
  const v = d.value;
  if (typeof v === 'number' || typeof v === 'boolean') return { value: v, unit: undefined, tsMs: undefined };
  if (typeof v === 'string') {
    const n = v.trim() === '' ? NaN : Number(v);
    return { value: Number.isFinite(n) ? n : v, unit: undefined, tsMs: undefined };
  }
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && 'value' in v) {
    const o = v as { value: unknown; unit?: unknown; ts?: unknown };
    const inner = o.value;
    const value = typeof inner === 'number' || typeof inner === 'boolean' || typeof inner === 'string' ? inner : clip(formatValue({ format: d.format, value: inner }), 60);
    return { value, unit: typeof o.unit === 'string' ? o.unit : undefined, tsMs: toMs(o.ts) };
  }
  return { value: clip(formatValue(d), 60), unit: undefined, tsMs: undefined };
}

/** Units announced by a device's info: `sensors` as `[{ path|name|topic, unit }]` or `{ path: unit | { unit } }`. */
function unitsFromInfo(info: unknown): Map<string, string> {
  const units = new Map<string, string>();
  if (!info || typeof info !== 'object') return units;
  const sensors = (info as { sensors?: unknown }).sensors;
  if (Array.isArray(sensors)) {
    for (const s of sensors) {
      if (!s || typeof s !== 'object') continue;
      const o = s as Record<string, unknown>;
      const path = o.path ?? o.topic ?? o.name ?? o.id;
      if (typeof path === 'string' && typeof o.unit === 'string') units.set(path, o.unit);
    }
  } else if (sensors && typeof sensors === 'object') {
    for (const [path, s] of Object.entries(sensors as Record<string, unknown>)) {
      if (typeof s === 'string') units.set(path, s);
      else if (s && typeof s === 'object' && typeof (s as { unit?: unknown }).unit === 'string') units.set(path, (s as { unit: string }).unit);
    }
  }
  return units;
}

/** First string-ish field among `keys` (dotted paths allowed), for info objects whose shape varies between agents. */
function pick(info: Record<string, unknown>, ...keys: string[]): string | undefined {
  for (const key of keys) {
    let v: unknown = info;
    for (const part of key.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
    if (typeof v === 'string' && v) return v;
    if (typeof v === 'number') return String(v);
  }
  return undefined;
}

interface ReadingRow {
  topic: string;
  path: string;
  reading: Reading;
  chartable: boolean;
  li: HTMLLIElement;
  control: HTMLElement;
  valueEl: HTMLElement;
}

interface Card {
  id: string;
  status: string | undefined;
  info: Record<string, unknown> | undefined;
  units: Map<string, string>;
  lastSeenMs: number | undefined;
  rows: Map<string, ReadingRow>;
  dirtyRows: Set<ReadingRow>;
  headDirty: boolean;
  root: HTMLElement;
  statusEl: HTMLElement;
  seenEl: HTMLElement;
  infoEl: HTMLDListElement;
  list: HTMLUListElement;
  countEl: HTMLElement;
  /** The actuators the device announced, as controls (actuators.ts). */
  panel: ActuatorPanel;
}

export interface DevicesOptions {
  /** Called when a chartable reading is activated (click, Enter, Space). */
  onToggleChart(topic: string, label: string, unit: string | undefined): void;
  /** Whether a chart is open for the topic (drives `aria-pressed`). */
  isCharted(topic: string): boolean;
  /** Asks for a render at the next animation frame. */
  requestRender(): void;
  /** Sends a command to an actuator (`devices/<id>/set/<name>`) and resolves with its answer. */
  sendCommand: SendCommand;
}

export class DevicesView {
  private readonly cards = new Map<string, Card>();
  private readonly dirty = new Set<Card>();
  private filter = '';

  constructor(
    private readonly grid: HTMLElement,
    private readonly empty: HTMLElement,
    private readonly opts: DevicesOptions,
  ) {}

  /** Devices known, and how many of them report `online`. */
  summary(): { total: number; online: number } {
    let online = 0;
    for (const c of this.cards.values()) if (c.status === 'online') online++;
    return { total: this.cards.size, online };
  }

  /**
   * Takes one message on `devices/...`; returns the numeric reading, if any, for the charts.
   * `nowMs` is the arrival time; retained messages do not count as "seen now".
   */
  onMessage(topic: string, d: Decoded, retained: boolean, nowMs: number): Reading | undefined {
    const parts = topic.split('/');
    if (parts.length < 3 || parts[0] !== 'devices' || !parts[1]) return undefined;
    const id = parts[1];
    const path = parts.slice(2).join('/');
    if (parts[2] === 'set' && parts.length > 3) return undefined; // a command going down (actuators.ts), not a reading
    const card = this.card(id);
    let result: Reading | undefined;
    if (path === 'status') {
      const v = d.value;
      card.status = d.format === 'empty' ? undefined : typeof v === 'string' ? v : v && typeof v === 'object' ? pick(v as Record<string, unknown>, 'status', 'state') : String(v);
      card.headDirty = true;
    } else if (path === 'info') {
      const v = d.value;
      card.info = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
      card.units = unitsFromInfo(card.info);
      card.panel.announce(actuatorsFromInfo(card.info));
      // An actuator's state that arrived before info made a reading row: it belongs to the control.
      for (const [p, row] of card.rows) {
        if (!card.panel.has(p)) continue;
        card.panel.setState(p, row.reading.value);
        row.li.remove();
        card.rows.delete(p);
        card.dirtyRows.delete(row);
      }
      if (this.filter) this.applyFilter(card);
      for (const row of card.rows.values()) card.dirtyRows.add(row);
      card.headDirty = true;
    } else if (card.panel.has(path)) {
      card.panel.setState(path, d.format === 'empty' ? undefined : d.value);
    } else if (d.format === 'empty') {
      const row = card.rows.get(path);
      if (row) {
        row.li.remove();
        card.rows.delete(path);
        card.dirtyRows.delete(row);
        card.headDirty = true;
      }
    } else {
      const reading = toReading(d);
      const row = card.rows.get(path) ?? this.row(card, topic, path, reading);
      row.reading = reading;
      card.dirtyRows.add(row);
      if (typeof reading.value === 'number') result = reading;
      const seen = reading.tsMs ?? (retained ? undefined : nowMs);
      if (seen !== undefined && (card.lastSeenMs === undefined || seen > card.lastSeenMs)) card.lastSeenMs = seen;
    }
    if (!retained && d.format !== 'empty' && (card.lastSeenMs === undefined || nowMs > card.lastSeenMs)) card.lastSeenMs = nowMs;
    this.dirty.add(card);
    this.opts.requestRender();
    return result;
  }

  /** A reading's unit: its own, else the one its device announced in `info` (which may arrive later). */
  unitOf(topic: string): string | undefined {
    const parts = topic.split('/');
    const card = this.cards.get(parts[1] ?? '');
    const path = parts.slice(2).join('/');
    return card?.rows.get(path)?.reading.unit ?? card?.units.get(path);
  }

  /** Reflects an opened or closed chart on the reading's button. */
  setCharted(topic: string, charted: boolean): void {
    const parts = topic.split('/');
    const row = this.cards.get(parts[1] ?? '')?.rows.get(parts.slice(2).join('/'));
    if (row?.chartable) setAttr(row.control, 'aria-pressed', String(charted));
  }

  /** Applies model changes to the DOM: only dirty cards, only dirty rows. */
  render(): void {
    for (const card of this.dirty) {
      if (card.headDirty) this.renderHead(card);
      card.panel.render();
      for (const row of card.dirtyRows) this.renderRow(card, row);
      card.dirtyRows.clear();
      card.headDirty = false;
    }
    this.dirty.clear();
    this.empty.hidden = this.cards.size > 0;
  }

  /** Shows only devices whose id or host fields contain `text` (case-insensitive). */
  setFilter(text: string): void {
    this.filter = text.trim().toLowerCase();
    for (const card of this.cards.values()) this.applyFilter(card);
  }

  private applyFilter(card: Card): void {
    if (!this.filter) {
      card.root.hidden = false;
      return;
    }
    const info = card.info ? Object.values(card.info).filter((v) => typeof v === 'string').join(' ') : '';
    card.root.hidden = !`${card.id} ${info}`.toLowerCase().includes(this.filter);
  }

  /** Refreshes the "last seen" texts; called once a second. */
  tick(nowMs: number): void {
    for (const card of this.cards.values()) setText(card.seenEl, card.lastSeenMs === undefined ? 'not seen live yet' : `last seen ${formatAgo(card.lastSeenMs, nowMs)}`);
  }

  clear(): void {
    for (const card of this.cards.values()) card.root.remove();
    this.cards.clear();
    this.dirty.clear();
    this.empty.hidden = false;
  }

  private card(id: string): Card {
    const existing = this.cards.get(id);
    if (existing) return existing;
    const headingId = `device-${this.cards.size}-name`;
    const statusEl = el('span', { class: 'status', 'data-status': 'unknown' }, 'unknown');
    const seenEl = el('span', { class: 'last-seen' }, 'not seen live yet');
    const countEl = el('span', { class: 'reading-count' });
    const infoEl = el('dl', { class: 'device-info' });
    const list = el('ul', { class: 'readings', 'aria-label': `Readings of ${id}` });
    const panel = new ActuatorPanel(id, this.opts.sendCommand);
    const root = el(
      'article',
      { class: 'card device', 'aria-labelledby': headingId, 'data-device': id },
      el('header', { class: 'device-head' }, el('h3', { id: headingId, class: 'device-name' }, id), statusEl),
      el('p', { class: 'device-meta' }, seenEl, countEl),
      infoEl,
      panel.root,
      list,
    );
    const card: Card = { id, status: undefined, info: undefined, units: new Map(), lastSeenMs: undefined, rows: new Map(), dirtyRows: new Set(), headDirty: true, root, statusEl, seenEl, infoEl, list, countEl, panel };
    this.cards.set(id, card);
    insertSorted(this.grid, root, id);
    if (this.filter) this.applyFilter(card);
    return card;
  }

  private row(card: Card, topic: string, path: string, reading: Reading): ReadingRow {
    const chartable = typeof reading.value === 'number';
    const nameEl = el('span', { class: 'reading-name' }, path.replaceAll('/', ' / '));
    const valueEl = el('span', { class: 'reading-value' });
    const control: HTMLElement = chartable
      ? el('button', { type: 'button', class: 'reading', 'data-topic': topic, 'aria-pressed': String(this.opts.isCharted(topic)), title: `Chart ${topic}` }, nameEl, valueEl)
      : el('div', { class: 'reading', 'data-topic': topic }, nameEl, valueEl);
    if (chartable) {
      control.addEventListener('click', () => {
        this.opts.onToggleChart(topic, `${card.id} · ${path}`, this.unitOf(topic));
      });
    }
    const li = el('li', {}, control);
    const row: ReadingRow = { topic, path, reading, chartable, li, control, valueEl };
    card.rows.set(path, row);
    insertSorted(card.list, li, path);
    card.headDirty = true;
    return row;
  }

  private renderHead(card: Card): void {
    const status = card.status === 'online' || card.status === 'offline' ? card.status : card.status ? 'other' : 'unknown';
    setAttr(card.statusEl, 'data-status', status);
    setText(card.statusEl, card.status ?? 'unknown');
    setText(card.countEl, `${card.rows.size} reading${card.rows.size === 1 ? '' : 's'}`);
    const info = card.info;
    const fields: [string, string | undefined][] = info
      ? [
          ['Host', pick(info, 'hostname', 'host')],
          ['OS', pick(info, 'os', 'platform', 'system', 'os.name')],
          ['Arch', pick(info, 'arch', 'machine')],
          ['Model', pick(info, 'model', 'board')],
          ['Kernel', pick(info, 'kernel', 'release')],
          ['Agent', pick(info, 'agentVersion', 'agent_version', 'agent.version', 'agent', 'version')],
        ]
      : [];
    const shown = fields.filter((f): f is [string, string] => f[1] !== undefined);
    const key = JSON.stringify(shown);
    if (card.infoEl.dataset.key === key) return;
    card.infoEl.dataset.key = key;
    card.infoEl.replaceChildren(...shown.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { title: v }, v)]));
    card.infoEl.hidden = shown.length === 0;
  }

  private renderRow(card: Card, row: ReadingRow): void {
    const r = row.reading;
    const unit = r.unit ?? card.units.get(row.path);
    if (typeof r.value === 'number') {
      setText(row.valueEl, formatWithUnit(r.value, unit));
      if (!row.chartable) {
        // A reading that started as text and became numeric: rebuild its control as a chart button.
        card.rows.delete(row.path);
        row.li.remove();
        const fresh = this.row(card, row.topic, row.path, r);
        setText(fresh.valueEl, formatWithUnit(r.value, unit));
      }
    } else {
      const v = typeof r.value === 'boolean' ? String(r.value) : r.value;
      setText(row.valueEl, unit ? `${v} ${unit}` : v);
    }
  }
}
