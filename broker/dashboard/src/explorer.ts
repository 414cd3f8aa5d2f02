/**
 * Topic explorer: the topic tree as discovered through `#` (and `$SYS/broker/#`),
 * each topic's latest decoded value, its retained marker and its message rate.
 *
 * Model and view share one node per level: a node's DOM is built once when the
 * topic first appears and afterwards only its text and attributes change, in
 * `render` (once per animation frame, dirty nodes only). Rates are recomputed
 * once a second. The tree follows the ARIA tree pattern: one tab stop (roving
 * tabindex), arrow keys to move, expand and collapse, Enter or Space to select.
 *
 * The retained marker means "the broker holds a retained value": set by a
 * delivery flagged retained (the snapshot) or by our own retained publish,
 * cleared by an empty payload (a deletion). Live deliveries carry no retain
 * flag (MQTT semantics), so a retained value set later by another client shows
 * after the next snapshot only.
 */
import { decodePayload, formatValue, type Decoded, type PayloadFormat } from './decode.js';
import { compareKeys, el, insertSorted, setAttr, setText } from './dom.js';
import { clip, formatRate } from './format.js';

interface TopicNode {
  name: string;
  path: string;
  parent: TopicNode | undefined;
  children: Map<string, TopicNode>;
  li: HTMLLIElement;
  row: HTMLElement;
  caret: HTMLElement;
  valueEl: HTMLElement;
  retainedEl: HTMLElement;
  rateEl: HTMLElement;
  group: HTMLUListElement | undefined;
  expanded: boolean;
  // message state (nodes that are only levels have hasValue false)
  hasValue: boolean;
  decoded: Decoded | undefined;
  format: PayloadFormat | undefined;
  retained: boolean;
  bytes: number;
  count: number;
  countAtTick: number;
  rate: number;
  lastMs: number;
}

export interface ExplorerOptions {
  /** Called when a topic is selected (Enter, Space or click). */
  onSelect(path: string | undefined): void;
  requestRender(): void;
}

/** What the detail panel shows about the selected topic. */
export interface TopicDetail {
  path: string;
  decoded: Decoded | undefined;
  retained: boolean;
  bytes: number;
  count: number;
  rate: number;
  lastMs: number;
}

const VALUE_CHARS = 80; // one line of the tree; the detail panel shows the whole value
/** Tree nodes (topics and their levels) shown at most: churning topic names must not grow the tab without bound. */
export const MAX_TOPICS = 5000;

export class ExplorerView {
  private readonly roots = new Map<string, TopicNode>();
  private readonly byPath = new Map<string, TopicNode>();
  private readonly byRow = new WeakMap<Element, TopicNode>();
  private readonly dirty = new Set<TopicNode>();
  private filter = '';
  private focused: TopicNode | undefined;
  private selected: TopicNode | undefined;
  private ids = 0;
  /** Topics that hold a value. */
  topicCount = 0;
  /** Distinct topics not shown because the tree is full (MAX_TOPICS). */
  overflowCount = 0;
  private readonly overflow = new Set<string>();
  /** Sum of all topic rates, messages per second. */
  totalRate = 0;

  constructor(
    private readonly tree: HTMLUListElement,
    private readonly opts: ExplorerOptions,
  ) {
    tree.addEventListener('keydown', (e) => this.onKey(e));
    tree.addEventListener('click', (e) => this.onClick(e));
  }

  /** Takes one delivery; returns its decoded value (by the content type it arrived with). */
  onMessage(topic: string, payload: Uint8Array, contentType: string | undefined, retained: boolean, nowMs: number): Decoded {
    const decoded = decodePayload(payload, contentType);
    if (!this.byPath.has(topic) && this.byPath.size >= MAX_TOPICS) {
      if (this.overflow.size < MAX_TOPICS) this.overflow.add(topic); // counted up to a bound too
      this.overflowCount = this.overflow.size;
      return decoded;
    }
    const node = this.node(topic);
    if (!node.hasValue) {
      node.hasValue = true;
      this.topicCount++;
    }
    node.decoded = decoded;
    if (decoded.format !== 'empty') node.format = decoded.format;
    node.bytes = payload.length;
    node.lastMs = nowMs;
    if (retained) node.retained = true;
    if (decoded.format === 'empty') node.retained = false;
    else if (!retained) node.count++;
    this.dirty.add(node);
    this.opts.requestRender();
    return decoded;
  }

  /** Marks a topic as holding a retained value (after our own retained publish). */
  markRetained(topic: string): void {
    const node = this.byPath.get(topic);
    if (!node) return;
    node.retained = true;
    this.dirty.add(node);
    this.opts.requestRender();
  }

  detail(path: string): TopicDetail | undefined {
    const n = this.byPath.get(path);
    if (!n) return undefined;
    return { path, decoded: n.decoded, retained: n.retained, bytes: n.bytes, count: n.count, rate: n.rate, lastMs: n.lastMs };
  }

  selectedPath(): string | undefined {
    return this.selected?.path;
  }

  /** Whether `path` is the selected topic (the detail panel follows it). */
  isSelected(path: string): boolean {
    return this.selected?.path === path;
  }

  render(): void {
    for (const n of this.dirty) {
      if (n.hasValue && n.decoded) {
        setText(n.valueEl, clip(formatValue(n.decoded), VALUE_CHARS));
        setAttr(n.valueEl, 'data-format', n.decoded.format);
      }
      n.retainedEl.hidden = !n.retained;
      setText(n.rateEl, formatRate(n.rate));
    }
    this.dirty.clear();
  }

  /** Recomputes rates over the last `dtSec`; called once a second. */
  tick(dtSec: number): void {
    let total = 0;
    for (const n of this.byPath.values()) {
      if (!n.hasValue) continue;
      const instant = (n.count - n.countAtTick) / dtSec;
      n.countAtTick = n.count;
      // Half-life of about a second: reacts quickly, yet smooths bursty publishers.
      const rate = n.rate * 0.5 + instant * 0.5;
      const next = rate < 0.05 ? 0 : rate;
      if (formatRate(next) !== formatRate(n.rate)) this.dirty.add(n);
      n.rate = next;
      total += next;
    }
    this.totalRate = total;
    if (this.dirty.size) this.opts.requestRender();
  }

  /** Shows only topics whose path contains `text` (case-insensitive), with their ancestors. */
  setFilter(text: string): void {
    this.filter = text.trim().toLowerCase();
    const visit = (n: TopicNode): boolean => {
      let any = this.matches(n);
      for (const c of n.children.values()) if (visit(c)) any = true;
      n.li.hidden = !any;
      return any;
    };
    for (const r of this.roots.values()) visit(r);
    // Keep the tree's one tab stop on a visible row.
    if (this.focused?.li.hidden || (this.focused && this.isInsideHidden(this.focused))) {
      const first = this.visibleItems()[0];
      if (first) this.focus(first, false);
    }
  }

  private isInsideHidden(n: TopicNode): boolean {
    for (let p: TopicNode | undefined = n; p; p = p.parent) if (p.li.hidden) return true;
    return false;
  }

  clear(): void {
    this.tree.replaceChildren();
    this.roots.clear();
    this.byPath.clear();
    this.dirty.clear();
    this.focused = undefined;
    this.selected = undefined;
    this.topicCount = 0;
    this.totalRate = 0;
    this.overflow.clear();
    this.overflowCount = 0;
    this.opts.onSelect(undefined);
  }

  private matches(n: TopicNode): boolean {
    return this.filter === '' || n.path.toLowerCase().includes(this.filter);
  }

  private node(path: string): TopicNode {
    const found = this.byPath.get(path);
    if (found) return found;
    const cut = path.lastIndexOf('/');
    const parent = cut >= 0 ? this.node(path.slice(0, cut)) : undefined;
    const name = cut >= 0 ? path.slice(cut + 1) : path;
    const rowId = `topic-${++this.ids}`;
    const caret = el('span', { class: 'caret', 'aria-hidden': 'true' });
    const valueEl = el('span', { class: 'topic-value' });
    const retainedEl = el('span', { class: 'badge retained', title: 'The broker holds a retained value for this topic', hidden: true }, el('span', { 'aria-hidden': 'true' }, 'R'), el('span', { class: 'sr-only' }, ' retained'));
    const rateEl = el('span', { class: 'topic-rate' });
    const row = el('div', { class: 'topic-row', id: rowId }, caret, el('span', { class: 'topic-name' }, name === '' ? '(empty)' : name), valueEl, retainedEl, rateEl);
    const li = el('li', { role: 'treeitem', 'aria-labelledby': rowId, 'aria-selected': 'false', tabindex: '-1', 'data-topic': path }, row);
    const node: TopicNode = {
      name, path, parent, children: new Map(), li, row, caret, valueEl, retainedEl, rateEl, group: undefined, expanded: true,
      hasValue: false, decoded: undefined, format: undefined, retained: false, bytes: 0, count: 0, countAtTick: 0, rate: 0, lastMs: 0,
    };
    this.byRow.set(li, node);
    this.byPath.set(path, node);
    if (parent) {
      if (!parent.group) {
        parent.group = el('ul', { role: 'group' });
        parent.li.append(parent.group);
        setAttr(parent.li, 'aria-expanded', String(parent.expanded));
      }
      parent.children.set(name, node);
      insertSorted(parent.group, li, name);
    } else {
      this.roots.set(name, node);
      insertSorted(this.tree, li, name, rootOrder);
    }
    if (!this.focused) this.focus(node, false);
    if (this.filter) {
      const show = this.matches(node);
      li.hidden = !show;
      if (show) for (let p = parent; p; p = p.parent) p.li.hidden = false;
    }
    return node;
  }

  private setExpanded(n: TopicNode, expanded: boolean): void {
    if (!n.group) return;
    n.expanded = expanded;
    n.group.hidden = !expanded;
    setAttr(n.li, 'aria-expanded', String(expanded));
  }

  private focus(n: TopicNode, move = true): void {
    if (this.focused && this.focused !== n) this.focused.li.tabIndex = -1;
    this.focused = n;
    n.li.tabIndex = 0;
    if (move) n.li.focus();
  }

  private select(n: TopicNode): void {
    if (this.selected) setAttr(this.selected.li, 'aria-selected', 'false');
    this.selected = n;
    setAttr(n.li, 'aria-selected', 'true');
    this.opts.onSelect(n.path);
  }

  /** Rows a keyboard user can reach, in screen order (the DOM is kept sorted by insertSorted). */
  private visibleItems(): TopicNode[] {
    const out: TopicNode[] = [];
    const walk = (list: Element): void => {
      for (const li of list.children) {
        const n = this.byRow.get(li);
        if (!n || n.li.hidden) continue;
        out.push(n);
        if (n.group && n.expanded) walk(n.group);
      }
    };
    walk(this.tree);
    return out;
  }

  private onClick(e: MouseEvent): void {
    const li = (e.target as Element).closest('li[role="treeitem"]');
    const n = li ? this.byRow.get(li) : undefined;
    if (!n) return;
    e.stopPropagation();
    if ((e.target as Element).closest('.caret') || !n.hasValue) this.setExpanded(n, !n.expanded);
    this.focus(n);
    if (n.hasValue) this.select(n);
  }

  private onKey(e: KeyboardEvent): void {
    const n = this.focused;
    if (!n) return;
    let handled = true;
    switch (e.key) {
      case 'ArrowDown':
      case 'ArrowUp': {
        const items = this.visibleItems();
        const i = items.indexOf(n);
        const next = items[e.key === 'ArrowDown' ? i + 1 : i - 1];
        if (next) this.focus(next);
        break;
      }
      case 'ArrowRight':
        if (n.group && !n.expanded) this.setExpanded(n, true);
        else if (n.group) {
          const first = this.visibleItems().find((c) => c.parent === n);
          if (first) this.focus(first);
        }
        break;
      case 'ArrowLeft':
        if (n.group && n.expanded) this.setExpanded(n, false);
        else if (n.parent) this.focus(n.parent);
        break;
      case 'Home': {
        const first = this.visibleItems()[0];
        if (first) this.focus(first);
        break;
      }
      case 'End': {
        const items = this.visibleItems();
        const last = items[items.length - 1];
        if (last) this.focus(last);
        break;
      }
      case 'Enter':
      case ' ':
        if (n.hasValue) this.select(n);
        else this.setExpanded(n, !n.expanded);
        break;
      default:
        handled = false;
    }
    if (handled) e.preventDefault();
  }
}


/** Root levels in name order, except that the broker's own `$` topics come after the application's. */
function rootOrder(a: string, b: string): number {
  return Number(a.startsWith('$')) - Number(b.startsWith('$')) || compareKeys(a, b);
}
