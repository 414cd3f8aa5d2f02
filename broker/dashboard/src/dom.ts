/** Tiny DOM helpers: views build their nodes once and then only touch text and attributes. */

type Attrs = Record<string, string | number | boolean | undefined>;

/**
 * Creates an element with attributes (`class`, `aria-*`, `data-*`, …) and children.
 * @example
 * el('button', { class: 'reading', type: 'button' }, 'cpu')
 */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) node.append(c);
  return node;
}

/** Sets text only when it changed: avoids layout work on unchanged values. */
export function setText(node: Node, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

/** Sets or removes an attribute only when it changed. */
export function setAttr(node: Element, name: string, value: string | null): void {
  if (value === null) {
    if (node.hasAttribute(name)) node.removeAttribute(name);
  } else if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

/** The element with this id, or an error naming the missing id (index.html and the code disagree). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`dashboard: #${id} missing from index.html`);
  return node as T;
}

// Numeric collation so that cpu/core2 sorts before cpu/core10.
const collator = new Intl.Collator('en', { numeric: true });

/** Compares two keys the way the views order them. */
export const compareKeys = collator.compare;

/** Inserts `child` into `parent` keeping children ordered by their `data-key`. O(log n) comparisons. */
export function insertSorted(parent: Element, child: HTMLElement, key: string, compare: (a: string, b: string) => number = collator.compare): void {
  child.dataset.key = key;
  const kids = parent.children;
  let lo = 0;
  let hi = kids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const k = (kids[mid] as HTMLElement).dataset.key ?? '';
    if (compare(k, key) <= 0) lo = mid + 1;
    else hi = mid;
  }
  parent.insertBefore(child, kids[lo] ?? null);
}
