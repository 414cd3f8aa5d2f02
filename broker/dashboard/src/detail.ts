/**
 * The selected topic's detail panel: full topic, format, size, counters, the whole value, its last
 * values from the broker's history (PROTOCOL.md §4.8) and a CSV export link.
 */
import { formatValue, type Decoded } from './decode.js';
import { byId, el, setText } from './dom.js';
import { formatAgo, formatBytes, formatCount, formatRate } from './format.js';
import type { TopicDetail } from './explorer.js';

const FORMAT_NAMES = { msgpack: 'MessagePack', json: 'JSON', text: 'UTF-8 text', binary: 'binary (hex)', empty: 'empty (retained value deleted)' } as const;
const MAX_VALUE_CHARS = 65536; // a <pre> beyond this slows layout and nobody reads it

export class DetailView {
  private readonly box = byId('detail');
  private readonly empty = byId('detail-empty');
  private readonly topicEl = byId('detail-topic');
  private readonly formatEl = byId('detail-format');
  private readonly sizeEl = byId('detail-size');
  private readonly retainedEl = byId('detail-retained');
  private readonly countEl = byId('detail-count');
  private readonly rateEl = byId('detail-rate');
  private readonly updatedEl = byId('detail-updated');
  private readonly valueEl = byId('detail-value');
  private readonly historyEl = byId('detail-history');
  private readonly historyNote = byId('detail-history-note');
  readonly exportEl = byId<HTMLAnchorElement>('detail-export');
  path: string | undefined;

  constructor(onUse: (topic: string) => void) {
    byId('detail-use').addEventListener('click', () => {
      if (this.path !== undefined) onUse(this.path);
    });
  }

  show(d: TopicDetail | undefined, nowMs: number): void {
    this.path = d?.path;
    this.box.hidden = !d;
    this.empty.hidden = !!d;
    if (!d) return;
    setText(this.topicEl, d.path);
    setText(this.formatEl, d.decoded ? FORMAT_NAMES[d.decoded.format] : '–');
    setText(this.sizeEl, formatBytes(d.bytes));
    setText(this.retainedEl, d.retained ? 'yes' : 'no');
    setText(this.countEl, `${formatCount(d.count)} live`);
    setText(this.rateEl, formatRate(d.rate) || 'idle');
    setText(this.updatedEl, d.lastMs ? formatAgo(d.lastMs, nowMs) : '–');
    const text = d.decoded ? formatValue(d.decoded, true) : '';
    setText(this.valueEl, text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}\n…` : text);
  }

  /** The last values of the selected topic, newest first, or why there are none. */
  showHistory(rows: readonly { ts: number; decoded: Decoded }[] | string): void {
    this.historyEl.replaceChildren();
    this.historyNote.hidden = typeof rows !== 'string';
    if (typeof rows === 'string') {
      setText(this.historyNote, rows);
      return;
    }
    for (const r of rows) {
      const at = new Date(r.ts);
      const value = formatValue(r.decoded);
      this.historyEl.append(el('li', {}, el('time', { datetime: at.toISOString() }, at.toLocaleTimeString()), value.length > 200 ? `${value.slice(0, 200)}…` : value));
    }
  }
}
