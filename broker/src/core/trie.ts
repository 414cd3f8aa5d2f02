/**
 * The subscription index: a trie over topic levels that maps filters to opaque
 * subscribers (STYLE.md #2; the idea of nats-server's sublist and mosquitto's subs.c).
 *
 * Invariants
 * - A node exists only while it or a descendant holds a subscription: removal prunes
 *   empty nodes up to the root, so "subscribe then unsubscribe everything" leaves an
 *   empty trie (tested).
 * - A (subscriber, filter) pair holds at most one entry; adding it again replaces the value.
 * - `$` rule: at the first level, `+` and `#` children are not visited for topics
 *   starting with `$` [MQTT-4.7.2-1].
 *
 * Cost: match visits at most 3 children per level (exact, `+`, `#`), so it grows
 * with the topic's depth and the number of *matching* entries, never with the
 * number of subscriptions. Add and remove are O(depth).
 */

/**
 * No parent pointer and no level: `remove` walks down from the root anyway and prunes along the
 * path it walked, so each node (one per subscribed topic at 10k+ idle devices) is 16 bytes smaller.
 */
export interface TrieNode<S, V> {
  children: Map<string, TrieNode<S, V>> | undefined;
  /**
   * Subscriber → value for the filter that ends at this node. Most filters have one
   * subscriber (a device's own topic), so the first entry is stored inline and a Map
   * (≈ 200 bytes even when small) is made only for a second one.
   */
  oneSubscriber: S | undefined;
  oneValue: V | undefined;
  entries: Map<S, V> | undefined;
}

function node<S, V>(): TrieNode<S, V> {
  return { children: undefined, oneSubscriber: undefined, oneValue: undefined, entries: undefined };
}

function isEmptyNode<S, V>(n: TrieNode<S, V>): boolean {
  return n.oneSubscriber === undefined && !n.entries && (!n.children || n.children.size === 0);
}

export class SubscriptionTrie<S, V> {
  private readonly root: TrieNode<S, V> = node();
  private count = 0;

  /** Number of (subscriber, filter) entries. */
  get size(): number {
    return this.count;
  }

  /** Adds or replaces the entry for (subscriber, filter). Returns true when it is new. */
  add(filter: string, subscriber: S, value: V): boolean {
    let n = this.root;
    for (const level of filter.split('/')) {
      let next = n.children?.get(level);
      if (!next) {
        next = node();
        (n.children ??= new Map()).set(level, next);
      }
      n = next;
    }
    let isNew = false;
    if (n.oneSubscriber === subscriber) n.oneValue = value;
    else if (n.entries?.has(subscriber)) n.entries.set(subscriber, value);
    else if (n.oneSubscriber === undefined) {
      n.oneSubscriber = subscriber;
      n.oneValue = value;
      isNew = true;
    } else {
      (n.entries ??= new Map()).set(subscriber, value);
      isNew = true;
    }
    if (isNew) this.count++;
    return isNew;
  }

  /** Removes the entry for (subscriber, filter) and prunes empty nodes. Returns true when it existed. */
  remove(filter: string, subscriber: S): boolean {
    const levels = filter.split('/');
    const path: TrieNode<S, V>[] = [this.root]; // path[i] is the parent of the node at levels[i]
    let n: TrieNode<S, V> | undefined = this.root;
    for (const level of levels) {
      n = n.children?.get(level);
      if (!n) return false;
      path.push(n);
    }
    if (n.oneSubscriber === subscriber) {
      n.oneSubscriber = undefined;
      n.oneValue = undefined;
    } else if (n.entries?.delete(subscriber)) {
      if (n.entries.size === 0) n.entries = undefined;
    } else return false;
    this.count--;
    // Prune upwards while the node is empty.
    for (let i = levels.length; i > 0 && isEmptyNode(path[i]!); i--) {
      const parent = path[i - 1]!;
      parent.children!.delete(levels[i - 1]!);
      if (parent.children!.size === 0) parent.children = undefined;
    }
    return true;
  }

  /** The value stored for (subscriber, filter), if any. */
  get(filter: string, subscriber: S): V | undefined {
    let n: TrieNode<S, V> | undefined = this.root;
    for (const level of filter.split('/')) {
      n = n.children?.get(level);
      if (!n) return undefined;
    }
    return n.oneSubscriber === subscriber ? n.oneValue : n.entries?.get(subscriber);
  }

  /**
   * Calls `visit` for every entry whose filter matches `topic`. A subscriber with
   * several matching filters is visited once per filter; callers dedupe.
   */
  match(topic: string, visit: (subscriber: S, value: V) => void): void {
    const levels = topic.split('/');
    const dollar = topic.charCodeAt(0) === 0x24;
    this.walk(this.root, levels, 0, visit, dollar);
  }

  /** True when the trie holds no entries and no nodes. */
  isEmpty(): boolean {
    return this.count === 0 && (!this.root.children || this.root.children.size === 0);
  }

  private walk(n: TrieNode<S, V>, levels: string[], i: number, visit: (subscriber: S, value: V) => void, dollar: boolean): void {
    const children = n.children;
    if (!children) {
      if (i === levels.length) this.emit(n, visit);
      return;
    }
    const skipWildcards = dollar && i === 0; // [MQTT-4.7.2-1]
    if (!skipWildcards) {
      // '#' matches this level and everything below, including the parent itself ('a/#' matches 'a').
      const hash = children.get('#');
      if (hash) this.emit(hash, visit);
    }
    if (i === levels.length) {
      this.emit(n, visit);
      return;
    }
    if (!skipWildcards) {
      const plus = children.get('+');
      if (plus) this.walk(plus, levels, i + 1, visit, dollar);
    }
    const level = levels[i]!;
    if (level !== '+' && level !== '#') {
      const exact = children.get(level);
      if (exact) this.walk(exact, levels, i + 1, visit, dollar);
    }
  }

  private emit(n: TrieNode<S, V>, visit: (subscriber: S, value: V) => void): void {
    if (n.oneSubscriber !== undefined) visit(n.oneSubscriber, n.oneValue as V);
    // forEach, not `for (const [s, v] of ...)`: the destructuring loop allocated an entry array
    // and an iterator result per matching subscriber (72 % of the broker's allocation at 1,000
    // msg/s × 100 subscribers, the young-generation garbage behind the latency tail; bench/README.md
    // "The tail"). `visit` rides as thisArg, so no closure is made either.
    if (n.entries) n.entries.forEach(visitEntry as (v: V, s: S) => void, visit);
  }
}

/** Map.forEach callback of `emit`: `this` is the visitor. */
function visitEntry<S, V>(this: (subscriber: S, value: V) => void, value: V, subscriber: S): void {
  this(subscriber, value);
}
