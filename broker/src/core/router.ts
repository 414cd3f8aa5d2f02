/**
 * The one router every protocol publishes into (DESIGN.md "One router").
 *
 * It owns the subscription index and the retained store, and knows nothing of
 * sockets, frames or timers. `publish` stores retained values, matches the topic
 * and hands the message to each matching subscriber exactly once, however many
 * of its filters match (dedupe by a per-publish stamp on the subscriber: no
 * allocation per subscriber). Subscribers decide how to encode and send.
 *
 * Order: `publish` is synchronous and delivers in call order, so messages from
 * one publisher on one topic reach each subscriber in the order published.
 * Cost: O(topic depth + matching entries) per publish.
 */
import type { History, HistorySequencer } from './history.js';
import type { Message } from './message.js';
import { MemoryRetainedStore, type RetainedStore } from './retained.js';
import { SubscriptionTrie, type TrieVisitor } from './trie.js';

/** Options of one subscription; protocols extend it with their own fields. */
export interface SubscriptionOptions {
  /** MQTT QoS granted for this subscription (0 for native). */
  qos: 0 | 1 | 2;
  /** MQTT 5 no local: do not deliver the subscriber's own publishes. */
  noLocal?: boolean;
  /** MQTT 5 retain as published: keep the retain flag on live deliveries. */
  retainAsPublished?: boolean;
  /** MQTT 5 subscription identifier. */
  subscriptionId?: number;
}

export interface Subscription {
  readonly filter: string;
  readonly options: SubscriptionOptions;
}

/** What the router delivers to; implemented by sessions. */
export interface Subscriber {
  /** Router bookkeeping: the sequence number of the last publish that reached this subscriber. */
  routerStamp: number;
  /**
   * Receives one message. `subscription` is the first of the subscriber's matching
   * subscriptions; a subscriber holding overlapping filters resolves the rest itself.
   * Must not throw and must not publish synchronously (defer instead).
   */
  deliver(message: Message, subscription: Subscription): void;
  /**
   * Set by a shared-subscription group (MQTT `$share/<share>/<filter>`, one Subscriber per group):
   * with a cluster that spreads groups over nodes (`gateShared`), one member in the whole cluster
   * gets each message, else one member per node.
   */
  readonly share?: string;
  /**
   * How many deliveries one `deliver` stands for: a fan-out group's members (session/fanout-group.ts),
   * so `publish` counts every one. Absent: one.
   */
  readonly fanout?: number;
}

export interface RouterStats {
  /** Messages published into the router. */
  messagesIn: number;
  /** Payload bytes published into the router. */
  bytesIn: number;
  /** Deliveries handed to subscribers (one per subscriber per message). */
  deliveries: number;
}

/**
 * Observer of every routed message, e.g. the cluster bridge; called after local delivery.
 * `acknowledged`: the publisher waits for an answer (native id > 0, MQTT QoS 1/2, HTTP), so a
 * returned promise joins the publish's `durable` (the ack waits for it, a rejection refuses it).
 */
export type PublishTap = (message: Message, acknowledged: boolean) => void | Promise<void>;

/** Told when a subscriber takes or leaves a filter (the cluster bridge reference-counts them). */
export interface InterestListener {
  /** `share`: the subscriber is that shared-subscription group (Subscriber.share). */
  added(filter: string, share?: string): void;
  removed(filter: string, share?: string): void;
}

/**
 * `publish`'s visit of the index: one object per router, its fields set per publish, instead of a
 * closure made per publish (garbage on every message). A publish made while one is being
 * delivered (subscribers must not, `Subscriber.deliver`) would get its own.
 */
class RouteVisitor implements TrieVisitor<Subscriber, Subscription> {
  message: Message | undefined = undefined;
  stamp = 0;
  skipGroups = false;
  deliveries = 0;

  visit(subscriber: Subscriber, subscription: Subscription): void {
    if (subscriber.routerStamp === this.stamp || (this.skipGroups && subscriber.share !== undefined)) return;
    subscriber.routerStamp = this.stamp;
    const fanout = subscriber.fanout;
    this.deliveries += fanout === undefined ? 1 : fanout;
    subscriber.deliver(this.message!, subscription);
  }
}

export class Router {
  readonly stats: RouterStats = { messagesIn: 0, bytesIn: 0, deliveries: 0 };
  private readonly index = new SubscriptionTrie<Subscriber, Subscription>();
  private stamp = 0;
  private readonly visitor = new RouteVisitor();
  /** Subscriptions held through fan-out groups beyond each group's one entry in the index (session/fanout-group.ts). */
  extraSubscriptions = 0;
  private readonly taps: PublishTap[] = [];
  private interest: InterestListener | undefined;
  private sequencer: HistorySequencer | undefined;
  private shareGate: ((message: Message) => boolean) | undefined;

  /** @param history per-topic history (core/history.ts); undefined when no history pattern is configured. */
  constructor(readonly retained: RetainedStore = new MemoryRetainedStore(), readonly history?: History) {}

  /** Number of (subscriber, filter) subscriptions. */
  get subscriptionCount(): number {
    return this.index.size + this.extraSubscriptions;
  }

  /** The first of at most `limit` subscribers of exactly `filter` that `test` accepts (a fan-out group's partner). */
  findSubscriber(filter: string, test: (subscriber: Subscriber) => boolean, limit: number): Subscriber | undefined {
    return this.index.find(filter, test, limit);
  }

  /** Adds or replaces a subscription. Returns true when it is new for this subscriber. */
  subscribe(subscriber: Subscriber, filter: string, options: SubscriptionOptions): boolean {
    const added = this.index.add(filter, subscriber, { filter, options });
    if (added) this.interest?.added(filter, subscriber.share);
    return added;
  }

  unsubscribe(subscriber: Subscriber, filter: string): boolean {
    const removed = this.index.remove(filter, subscriber);
    if (removed) this.interest?.removed(filter, subscriber.share);
    return removed;
  }

  /** Sets the one listener told of every (subscriber, filter) added or removed from now on. */
  watchInterest(listener: InterestListener | undefined): void {
    this.interest = listener;
  }

  /**
   * Hands messages on history topics to a shared stream (core/history.ts HistorySequencer), which
   * routes them back with their offset; undefined: this node numbers its history itself.
   */
  sequenceHistory(sequencer: HistorySequencer | undefined): void {
    this.sequencer = sequencer;
  }

  /**
   * Set by a cluster that picks one node per message for each shared-subscription group: `publish`
   * delivers to groups (Subscriber.share) only the messages `gate` lets through (e.g. while the
   * bus is down), and the cluster hands the node it picked the message through `deliverShared`.
   */
  gateShared(gate: ((message: Message) => boolean) | undefined): void {
    this.shareGate = gate;
  }

  /** Delivers `message` to this node's shared-subscription groups named `share` on `filter` (the cluster picked this node). */
  deliverShared(message: Message, share: string, filter: string): number {
    const stamp = ++this.stamp;
    let deliveries = 0;
    this.index.match(message.topic, function routeToGroup(subscriber, subscription) {
      if (subscriber.share !== share || subscription.filter !== filter || subscriber.routerStamp === stamp) return;
      subscriber.routerStamp = stamp;
      deliveries++;
      subscriber.deliver(message, subscription);
    });
    this.stats.deliveries += deliveries;
    return deliveries;
  }

  /** Registers an observer of every routed message; returns its removal. */
  tap(fn: PublishTap): () => void {
    this.taps.push(fn);
    return () => {
      const i = this.taps.indexOf(fn);
      if (i >= 0) this.taps.splice(i, 1);
    };
  }

  /**
   * Routes a message: updates the retained store when `retain` is set, then
   * delivers to every matching subscriber once. On a history topic the message first gets its
   * offset (PROTOCOL.md §4.6). Returns the number of deliveries and, when the stores are durable
   * or a tap answers for an acknowledged publish, the promise of those writes.
   */
  publish(message: Message, acknowledged = false): { deliveries: number; durable: void | Promise<void> } {
    const stats = this.stats;
    // A shared history stream places it first and routes it back with its offset (HistorySequencer).
    let unplaced = false;
    if (this.sequencer !== undefined && message.offset === 0 && this.history!.isHistoryTopic(message.topic)) {
      const taken = this.sequencer.sequence(message, acknowledged);
      if (taken !== undefined) return { deliveries: 0, durable: taken };
      unplaced = true; // the stream cannot take it now: delivered here without a position (the sequencer counts the loss)
    }
    stats.messagesIn++;
    stats.bytesIn += message.payload.length;
    let durable = message.retain ? this.retained.set(message) : undefined;
    if (this.history !== undefined && !unplaced) durable = bothDurable(durable, this.history.append(message));
    const skipGroups = this.shareGate !== undefined && !this.shareGate(message);
    const visitor = this.visitor.message === undefined ? this.visitor : new RouteVisitor();
    visitor.message = message;
    visitor.stamp = ++this.stamp;
    visitor.skipGroups = skipGroups;
    visitor.deliveries = 0;
    try {
      this.index.matchEach(message.topic, visitor);
    } finally {
      visitor.message = undefined;
    }
    const deliveries = visitor.deliveries;
    stats.deliveries += deliveries;
    for (const tap of this.taps) durable = bothDurable(durable, tap(message, acknowledged) ?? undefined);
    // A retained or history message outlives this publish in a store: drop the live encodings it no
    // longer needs (queued outboxes hold their own references) so the stores hold payloads only.
    if (message.retain || message.offset !== 0) for (const shape in message.encoded) delete message.encoded[shape];
    return { deliveries, durable };
  }

  /** Whether the index is empty (used by tests to prove pruning). */
  isEmpty(): boolean {
    return this.index.isEmpty();
  }
}

/** The promise of two durable writes (either may be absent): resolves when both are on disk. */
export function bothDurable(a: void | Promise<void>, b: Promise<void> | undefined): void | Promise<void> {
  if (b === undefined) return a;
  if (a === undefined) return b;
  return Promise.all([a, b]).then(function bothStored() {});
}
