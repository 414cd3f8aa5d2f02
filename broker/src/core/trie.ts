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
   * The first subscriber of the filter that ends at this node and its value. Most filters have
   * one subscriber (a device's own topic), so it is stored inline and `more` is made only for a
   * second one.
   */
  oneSubscriber: S | undefined;
  oneValue: V | undefined;
  more: Entries<S, V> | undefined;
}

/**
 * The second and later subscribers of a filter, in two dense arrays visited by a plain indexed
 * loop (a fan-out topic's hundreds of subscribers), with each one's position for O(1) removal:
 * the last entry moves into the removed one's slot. `Map.forEach` cost a builtin-to-JavaScript
 * call per subscriber (bench/README.md "Fan-out 1→100: the per-publish cost").
 * A removal while the entries are being visited (a delivery that closes its connection at once,
 * e.g. the `disconnect` slow-consumer policy: uWS calls the close handler from `end`) leaves a
 * hole instead, so no other subscriber moves under the loop and is skipped; the holes are
 * closed when the visit ends.
 */
class Entries<S, V> {
  readonly subscribers: (S | undefined)[] = [];
  readonly values: (V | undefined)[] = [];
  readonly at = new Map<S, number>();
  /** Visits in progress (`emit`), and the holes removals made meanwhile. */
  visiting = 0;
  private holes = 0;

  get size(): number {
    return this.subscribers.length - this.holes;
  }

  has(subscriber: S): boolean {
    return this.at.has(subscriber);
  }

  get(subscriber: S): V | undefined {
    const i = this.at.get(subscriber);
    return i === undefined ? undefined : this.values[i];
  }

  /** Returns true when the subscriber is new here. */
  set(subscriber: S, value: V): boolean {
    const i = this.at.get(subscriber);
    if (i !== undefined) {
      this.values[i] = value;
      return false;
    }
    this.at.set(subscriber, this.subscribers.length);
    this.subscribers.push(subscriber);
    this.values.push(value);
    return true;
  }

  delete(subscriber: S): boolean {
    const i = this.at.get(subscriber);
    if (i === undefined) return false;
    this.at.delete(subscriber);
    if (this.visiting > 0) {
      this.subscribers[i] = undefined;
      this.values[i] = undefined;
      this.holes++;
      return true;
    }
    const last = this.subscribers.length - 1;
    if (i !== last) {
      const moved = this.subscribers[last]!;
      this.subscribers[i] = moved;
      this.values[i] = this.values[last];
      this.at.set(moved, i);
    }
    this.subscribers.pop();
    this.values.pop();
    return true;
  }

  /** Closes the holes left by removals during a visit, keeping the order of the rest. */
  compact(): void {
    if (this.holes === 0) return;
    let j = 0;
    for (let i = 0; i < this.subscribers.length; i++) {
      const s = this.subscribers[i];
      if (s === undefined) continue;
      this.subscribers[j] = s;
      this.values[j] = this.values[i];
      this.at.set(s, j);
      j++;
    }
    this.subscribers.length = j;
    this.values.length = j;
    this.holes = 0;
  }
}

/** What `matchEach` calls for every matching entry: an object, so a hot caller reuses one instead of a closure per call. */
export interface TrieVisitor<S, V> {
  visit(subscriber: S, value: V): void;
}

/** `match`'s function as a visitor. */
class FunctionVisitor<S, V> implements TrieVisitor<S, V> {
  constructor(private readonly fn: (subscriber: S, value: V) => void) {}
  visit(subscriber: S, value: V): void {
    this.fn(subscriber, value);
  }
}

function node<S, V>(): TrieNode<S, V> {
  return { children: undefined, oneSubscriber: undefined, oneValue: undefined, more: undefined };
}

function isEmptyNode<S, V>(n: TrieNode<S, V>): boolean {
  return n.oneSubscriber === undefined && !n.more && (!n.children || n.children.size === 0);
}

export class SubscriptionTrie<S, V> {
  private readonly root: TrieNode<S, V> = node();
  private count = 0;
  /**
   * The last topic matched and its levels: a publisher repeating its topic (the native reader
   * hands the same string again, protocol/native/fast.ts) is not split again. Never mutated.
   */
  private lastTopic = '';
  private lastLevels: string[] = [''];

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
    else if (n.more?.has(subscriber)) n.more.set(subscriber, value);
    else if (n.oneSubscriber === undefined) {
      n.oneSubscriber = subscriber;
      n.oneValue = value;
      isNew = true;
    } else isNew = (n.more ??= new Entries()).set(subscriber, value);
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
    } else if (n.more?.delete(subscriber)) {
      if (n.more.size === 0) n.more = undefined;
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

  /** The first of at most `limit` subscribers of exactly `filter` that `test` accepts. */
  find(filter: string, test: (subscriber: S) => boolean, limit: number): S | undefined {
    let n: TrieNode<S, V> | undefined = this.root;
    for (const level of filter.split('/')) {
      n = n.children?.get(level);
      if (!n) return undefined;
    }
    if (n.oneSubscriber !== undefined && test(n.oneSubscriber)) return n.oneSubscriber;
    const subscribers = n.more?.subscribers;
    if (subscribers === undefined) return undefined;
    for (let i = 0; i < subscribers.length && i < limit; i++) {
      const subscriber = subscribers[i];
      if (subscriber !== undefined && test(subscriber)) return subscriber;
    }
    return undefined;
  }

  /** The value stored for (subscriber, filter), if any. */
  get(filter: string, subscriber: S): V | undefined {
    let n: TrieNode<S, V> | undefined = this.root;
    for (const level of filter.split('/')) {
      n = n.children?.get(level);
      if (!n) return undefined;
    }
    return n.oneSubscriber === subscriber ? n.oneValue : n.more?.get(subscriber);
  }

  /**
   * Calls `visit` for every entry whose filter matches `topic`. A subscriber with
   * several matching filters is visited once per filter; callers dedupe.
   */
  match(topic: string, visit: (subscriber: S, value: V) => void): void {
    this.matchEach(topic, new FunctionVisitor(visit));
  }

  /** `match` with a visitor object (the router's, reused for every publish). */
  matchEach(topic: string, visitor: TrieVisitor<S, V>): void {
    const root = this.root;
    const children = root.children;
    if (children === undefined) return; // nothing subscribed: not even the split
    let levels = this.lastLevels;
    if (topic !== this.lastTopic) {
      levels = this.lastLevels = topic.split('/');
      this.lastTopic = topic;
    }
    const dollar = topic.charCodeAt(0) === 0x24;
    this.walk(root, levels, 0, visitor, dollar);
  }

  /** True when the trie holds no entries and no nodes. */
  isEmpty(): boolean {
    return this.count === 0 && (!this.root.children || this.root.children.size === 0);
  }

  private walk(n: TrieNode<S, V>, levels: string[], i: number, visitor: TrieVisitor<S, V>, dollar: boolean): void {
    const children = n.children;
    if (!children) {
      if (i === levels.length) emit(n, visitor);
      return;
    }
    const skipWildcards = dollar && i === 0; // [MQTT-4.7.2-1]
    if (!skipWildcards) {
      // '#' matches this level and everything below, including the parent itself ('a/#' matches 'a').
      const hash = children.get('#');
      if (hash) emit(hash, visitor);
    }
    if (i === levels.length) {
      emit(n, visitor);
      return;
    }
    if (!skipWildcards) {
      const plus = children.get('+');
      if (plus) this.walk(plus, levels, i + 1, visitor, dollar);
    }
    const level = levels[i]!;
    if (level !== '+' && level !== '#') {
      const exact = children.get(level);
      if (exact) this.walk(exact, levels, i + 1, visitor, dollar);
    }
  }
}

/**
 * Visits a node's entries: an indexed loop over dense arrays, so no iterator, entry array or
 * closure is made per matching subscriber (the young-generation garbage behind the latency
 * tail, bench/README.md "The tail"). A visitor may remove entries meanwhile (see `Entries`):
 * a removed one not reached yet is not visited, every other one is, once; one added meanwhile
 * is visited too, as `Map.forEach` would.
 */
function emit<S, V>(n: TrieNode<S, V>, visitor: TrieVisitor<S, V>): void {
  if (n.oneSubscriber !== undefined) visitor.visit(n.oneSubscriber, n.oneValue as V);
  const more = n.more;
  if (more === undefined) return;
  const { subscribers, values } = more;
  more.visiting++;
  try {
    for (let i = 0; i < subscribers.length; i++) {
      const subscriber = subscribers[i];
      if (subscriber !== undefined) visitor.visit(subscriber, values[i] as V);
    }
  } finally {
    if (--more.visiting === 0) more.compact();
  }
}
