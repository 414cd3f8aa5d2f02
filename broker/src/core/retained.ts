/**
 * Retained messages: the last message published with retain on each topic
 * (DESIGN.md "Retained"). The router writes through `RetainedStore`; this file
 * holds the contract and the in-memory implementation. Persistent stores
 * implement the same interface and run the same contract test
 * (test/unit/broker/core/retained-contract.ts).
 *
 * Contract
 * - `set` with a non-empty payload stores the message under its topic, replacing
 *   any earlier one; with an empty payload it deletes the topic's value [MQTT-3.3.1-10].
 * - `get` and `match` see every `set` that returned, in call order (read-your-writes).
 * - `match(filter)` yields the topics of stored messages matching `filter` with the
 *   usual wildcard rules, including the `$` rule; each topic once; order unspecified.
 *   Cost: proportional to the matching part of the topic tree, not to the store's size.
 * - `size` counts stored topics.
 */
import type { Message } from './message.js';

export interface RetainedStore {
  readonly size: number;
  /** Stores or (empty payload) deletes. A returned promise resolves once the write is durable. */
  set(message: Message): void | Promise<void>;
  get(topic: string): Message | undefined;
  /** Topics of stored messages matching `filter` (an array: the caller paces delivery and may outlive changes). */
  match(filter: string): string[];
  /** Total payload bytes held, for metrics and limits. */
  readonly bytes: number;
}

interface TopicNode {
  children: Map<string, TopicNode> | undefined;
  message: Message | undefined;
  parent: TopicNode | undefined;
  level: string;
}

function topicNode(parent: TopicNode | undefined, level: string): TopicNode {
  return { children: undefined, message: undefined, parent, level };
}

/** In-memory retained store: a map for `get`, a topic tree for `match`. */
export class MemoryRetainedStore implements RetainedStore {
  private readonly byTopic = new Map<string, TopicNode>();
  private readonly root = topicNode(undefined, '');
  private payloadBytes = 0;

  get size(): number {
    return this.byTopic.size;
  }

  get bytes(): number {
    return this.payloadBytes;
  }

  set(message: Message): void {
    const existing = this.byTopic.get(message.topic);
    if (message.payload.length === 0) {
      if (existing) this.delete(existing);
      return;
    }
    if (existing) {
      this.payloadBytes += message.payload.length - existing.message!.payload.length;
      existing.message = message;
      return;
    }
    let n = this.root;
    for (const level of message.topic.split('/')) {
      let next = n.children?.get(level);
      if (!next) {
        next = topicNode(n, level);
        (n.children ??= new Map()).set(level, next);
      }
      n = next;
    }
    n.message = message;
    this.payloadBytes += message.payload.length;
    this.byTopic.set(message.topic, n);
  }

  get(topic: string): Message | undefined {
    return this.byTopic.get(topic)?.message;
  }

  match(filter: string): string[] {
    const out: string[] = [];
    if (!filter.includes('+') && !filter.includes('#')) {
      if (this.byTopic.has(filter)) out.push(filter);
      return out;
    }
    this.walk(this.root, filter.split('/'), 0, out);
    return out;
  }

  private delete(n: TopicNode): void {
    this.payloadBytes -= n.message!.payload.length;
    this.byTopic.delete(n.message!.topic);
    n.message = undefined;
    let cur: TopicNode = n;
    while (cur.parent && !cur.message && (!cur.children || cur.children.size === 0)) {
      const parent: TopicNode = cur.parent;
      parent.children!.delete(cur.level);
      if (parent.children!.size === 0) parent.children = undefined;
      cur = parent;
    }
  }

  private walk(n: TopicNode, levels: string[], i: number, out: string[]): void {
    if (i === levels.length) {
      if (n.message) out.push(n.message.topic);
      return;
    }
    const level = levels[i]!;
    if (level === '#') {
      // '#' matches the parent level too ('a/#' matches 'a'), except at the root where there is no parent topic.
      if (i > 0 && n.message) out.push(n.message.topic);
      this.collectAll(n, out, i === 0);
      return;
    }
    if (!n.children) return;
    if (level === '+') {
      for (const [name, child] of n.children) {
        if (i === 0 && name.charCodeAt(0) === 0x24) continue; // [MQTT-4.7.2-1]
        this.walk(child, levels, i + 1, out);
      }
      return;
    }
    const child = n.children.get(level);
    if (child) this.walk(child, levels, i + 1, out);
  }

  private collectAll(n: TopicNode, out: string[], skipDollar: boolean): void {
    if (!n.children) return;
    // Iterative to keep deep trees off the call stack.
    const stack: TopicNode[] = [];
    for (const [name, child] of n.children) {
      if (skipDollar && name.charCodeAt(0) === 0x24) continue; // [MQTT-4.7.2-1]
      stack.push(child);
    }
    while (stack.length > 0) {
      const cur = stack.pop()!;
      if (cur.message) out.push(cur.message.topic);
      if (cur.children) for (const child of cur.children.values()) stack.push(child);
    }
  }
}
