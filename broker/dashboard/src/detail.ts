/** The selected topic's detail panel: full topic, format, size, counters and the whole value. */
import { formatValue } from './decode.js';
import { byId, setText } from './dom.js';
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
}
