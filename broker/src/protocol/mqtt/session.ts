/**
 * An MQTT session: the state that outlives one network connection when the
 * client asks for it (MQTT 5 §4.1, 3.1.1 §4.1): subscriptions, QoS 1/2 messages
 * in flight both ways, the queue of messages waiting for an in-flight slot or
 * for the client to come back, and the expiry timer.
 *
 * The session, not the connection, is the router's Subscriber, so a persistent
 * session keeps receiving while its client is offline.
 *
 * Invariants
 * - `inflight` holds at most the client's Receive Maximum entries while a link
 *   is attached [MQTT-3.3.4-9], and grows only while the link's outbox is under
 *   `maxBufferedBytes` (so a QoS 1/2 burst never trips the slow-consumer
 *   disconnect); everything else waits in `queue`, which never
 *   holds more than `mqttMaxQueued` (overflow policy `mqttQueueOverflow`, counted).
 * - QoS 0 goes straight to the link's outbox (slow-consumer policy applies) and
 *   is dropped while offline: only QoS 1/2 is stored for later [MQTT-3.1.2-5].
 * - Packet ids of outgoing QoS 1/2 messages are unique among those in flight
 *   [MQTT-2.3.1-2]; in-flight entries are resent with DUP on resumption [MQTT-4.4.0-1].
 * - One delivery per message however many subscriptions match, with the highest
 *   QoS and every subscription identifier of the matching ones (MQTT 5 §3.3.4).
 * - With `store` set (a persistent session and `--data`, or a NATS bus: cluster/mqtt-sessions.ts), every change of subscriptions,
 *   deliveries (queued, in flight, done) and incoming QoS 2 ids is appended to the session
 *   store in the same turn (persist.ts); without it nothing is written and nothing is paid.
 * Cost per delivery: O(1) with one subscription; O(wildcard subscriptions) otherwise; plus one
 * record encode when the session is persisted.
 */
import { topicMatches } from 'topicast/protocol';
import { createMessage, type Message, type MessageProperties } from '../../core/message.js';
import type { Subscriber, Subscription } from '../../core/router.js';
import type { BrokerContext } from '../../context.js';
import type { TopicPermissions } from './auth.js';
import type { LoadedSession, SessionStore } from './persist.js';
import { parseShared, type SharedGroups } from './shared.js';
import type { Delivery, InflightEntry, MqttLimits, MqttStats, MqttSubscription, MqttSubscriptionOptions, Will } from './types.js';

export type { Delivery, InflightEntry, MqttSubscription, MqttSubscriptionOptions, Will } from './types.js';

/** What sessions need of the MQTT server (server.ts implements it; declared here so this file does not import it). */
export interface SessionHost {
  readonly ctx: BrokerContext;
  readonly limits: MqttLimits;
  readonly stats: MqttStats;
  readonly sessions: Map<string, MqttSession>;
  readonly shared: SharedGroups;
  /** Where persistent sessions are kept (`--data`, or JetStream with a NATS bus); undefined: nowhere. */
  readonly sessionStore: SessionStore | undefined;
}

/** The will as a message published now. */
export function willMessage(will: Will, nowMs: number): Message {
  const properties = will.properties === undefined && will.expiryIntervalSec === undefined ? undefined : {
    ...will.properties,
    expiresAt: will.expiryIntervalSec === undefined ? undefined : nowMs + will.expiryIntervalSec * 1000,
  };
  return createMessage(will.topic, will.payload, will.retain, undefined, will.qos, properties);
}

/** What a session needs from its live connection. */
export interface SessionLink {
  readonly version: 3 | 4 | 5;
  /** How many QoS 1/2 messages the client accepts in flight (its Receive Maximum, capped by ours). */
  readonly sendQuota: number;
  sendQos0(message: Message, retain: boolean, subscriptionIds: number[] | undefined): void;
  /** Sends a QoS 1/2 PUBLISH; false when it could not be sent (too large for the client): the caller forgets it. */
  sendPublish(d: Delivery, packetId: number, dup: boolean): boolean;
  sendPubrel(packetId: number): void;
  /**
   * Whether the connection can take another QoS 1/2 message now: its outbox is under
   * `maxBufferedBytes`. When not, the session keeps it queued and the link calls
   * `pump` again once the bytes are out (drain, or the next tick).
   */
  hasRoom(): boolean;
}

function isWildcard(filter: string): boolean {
  return filter.includes('+') || filter.includes('#');
}

/** A Map that stays empty: what a session without the collection reads (writes go through `own…`). */
class EmptyMap<K, V> extends Map<K, V> {
  override set(): this {
    throw new Error('internal: write to a shared empty collection');
  }
}
class EmptySet<T> extends Set<T> {
  override add(): this {
    throw new Error('internal: write to a shared empty collection');
  }
}
const NO_MAP = new EmptyMap<never, never>();
/** The empty queue and wildcard list of every session that has none (frozen: a push would throw). */
const NONE: never[] = Object.freeze([]) as unknown as never[];
const NO_SET = new EmptySet<never>();

export class MqttSession implements Subscriber {
  routerStamp = 0;
  // The exact (not shared) subscriptions: the first held alone until a second arrives, then all
  // of them in a Map (most devices subscribe one filter: no Map and its table per session, issue 20).
  private oneSub: MqttSubscription | undefined;
  private manySubs: Map<string, MqttSubscription> | undefined;
  // Collections most sessions never use (shared subscriptions, QoS 1/2 in flight, QoS 2 awaiting
  // PUBREL, permission-filtered subscriptions) are made on first write: an idle subscribed device
  // holds none of them (issue 20: bytes per connection). Until then they read as a shared empty one.
  private sharedOwn: Map<string, MqttSubscriptionOptions> | undefined;
  private inflightOwn: Map<number, InflightEntry> | undefined;
  private awaitingOwn: Set<number> | undefined;
  private filteredOwn: Set<string> | undefined;
  /** Exact subscriptions, filter → subscription (a copy when there is one: read where a session is stored, not per delivery). */
  get subscriptions(): ReadonlyMap<string, MqttSubscription> {
    const one = this.oneSub;
    return this.manySubs ?? (one === undefined ? NO_MAP : new Map([[one.filter, one]]));
  }
  /** The exact subscription to `filter`, if any. */
  subscription(filter: string): MqttSubscription | undefined {
    const one = this.oneSub;
    return one !== undefined ? (one.filter === filter ? one : undefined) : this.manySubs?.get(filter);
  }
  /** Exact and shared subscriptions held. */
  get subscriptionCount(): number {
    return (this.oneSub !== undefined ? 1 : this.manySubs?.size ?? 0) + this.sharedSubscriptions.size;
  }
  private exactFilters(): string[] {
    const one = this.oneSub;
    return one !== undefined ? [one.filter] : this.manySubs ? [...this.manySubs.keys()] : [];
  }
  /** `$share/name/filter` → options (MQTT 5 §4.8.2); delivered through the server's shared groups. */
  get sharedSubscriptions(): Map<string, MqttSubscriptionOptions> {
    return this.sharedOwn ?? NO_MAP;
  }
  get inflight(): Map<number, InflightEntry> {
    return this.inflightOwn ?? NO_MAP;
  }
  /** Incoming QoS 2 packet ids received and PUBREC'd, awaiting PUBREL [MQTT-4.3.3-2]. */
  get awaitingRelease(): Set<number> {
    return this.awaitingOwn ?? NO_SET;
  }
  /** Subscriptions whose deliveries need a per-topic `canRead` check (they overlap a deny rule). */
  get filtered(): Set<string> {
    return this.filteredOwn ?? NO_SET;
  }
  /** The writable collection, made on first use. */
  ownFiltered(): Set<string> {
    return (this.filteredOwn ??= new Set());
  }
  /** Wildcard subscriptions: the only ones that can overlap another (two exact filters never match one topic twice). */
  private wildcards: MqttSubscription[] = NONE;
  private queue: Delivery[] = NONE;
  private queueHead = 0;
  private nextPacketId = 1;
  /** Some in-flight entries wait in state 'resend' (after a resumption): they go before anything queued. */
  private resending = false;
  link: SessionLink | undefined;
  /** Seconds the session survives its connection (0: ends with it). */
  expirySec = 0;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** A will waiting for its delay (MQTT 5 §3.1.3.2.2); published on timer or session end unless the client returns. */
  private pendingWill: { will: Will; timer: NodeJS.Timeout | undefined } | undefined;
  /** The attached connection's will: stored with the session so a crash leaves it pending (persist.ts). */
  private connectedWill: Will | undefined;
  /** The session store when this session is persisted (`--data` and expiry > 0); undefined otherwise. */
  store: SessionStore | undefined;
  /** Protocol level of the latest connection. */
  version: 3 | 4 | 5 = 4;
  /** When the client went away (ms since the epoch); 0 while connected. */
  disconnectedAtMs = 0;
  /** Next key of a stored delivery. */
  private nextSeq = 1;
  /** PUBLISHes waiting for their entry to be durable (QoS 2 write-ahead, and what follows one). */
  private heldSends = 0;
  /**
   * Restored from disk while the connection's permissions were unknown: queued deliveries are
   * checked against `canRead` once a client connects again.
   */
  private recheckRead = false;
  ended = false;
  /** Permissions of the client's latest connection; undefined = unrestricted. */
  permissions: TopicPermissions | undefined;

  constructor(private readonly server: SessionHost, readonly clientId: string) {}

  get queuedCount(): number {
    return this.queue.length - this.queueHead;
  }

  /** Calls `fn` with every queued delivery, oldest first. */
  forEachQueued(fn: (d: Delivery) => void): void {
    for (let i = this.queueHead; i < this.queue.length; i++) fn(this.queue[i]!);
  }

  // ---- subscriptions ----------------------------------------------------------

  /** Adds or replaces; true when the filter is new for this session. `$share/...` filters join a shared group. */
  subscribe(filter: string, options: MqttSubscriptionOptions): boolean {
    if (options.subscriptionId !== undefined) options.subscriptionIds = [options.subscriptionId];
    const shared = parseShared(filter);
    if (shared !== undefined && shared !== 'invalid') {
      const isNew = !this.sharedSubscriptions.has(filter);
      (this.sharedOwn ??= new Map()).set(filter, options);
      this.server.shared.join(this, shared, options);
      return isNew;
    }
    const subscription: MqttSubscription = { filter, options };
    const isNew = this.subscription(filter) === undefined;
    // [MQTT-3.8.4-3] replaces an identical filter (in its place: a Map keeps a replaced key's position).
    const one = this.oneSub;
    if (this.manySubs) this.manySubs.set(filter, subscription);
    else if (one === undefined || one.filter === filter) this.oneSub = subscription;
    else {
      this.manySubs = new Map([[one.filter, one], [filter, subscription]]);
      this.oneSub = undefined;
    }
    if (isWildcard(filter)) this.wildcards = [...this.subscriptions.values()].filter((s) => isWildcard(s.filter));
    this.server.ctx.router.subscribe(this, filter, options);
    return isNew;
  }

  unsubscribe(filter: string): boolean {
    this.filtered.delete(filter);
    if (this.sharedSubscriptions.delete(filter)) {
      const shared = parseShared(filter);
      if (shared !== undefined && shared !== 'invalid') this.server.shared.leave(this, shared);
      return true;
    }
    if (this.oneSub?.filter === filter) this.oneSub = undefined;
    else if (!this.manySubs?.delete(filter)) return false;
    if (isWildcard(filter)) this.wildcards = this.wildcards.filter((s) => s.filter !== filter);
    this.server.ctx.router.unsubscribe(this, filter);
    return true;
  }

  // ---- router side --------------------------------------------------------------

  /** A message this session may not read (permissions) or that expired on the way: counted, not delivered. */
  private withheld(message: Message): boolean {
    if (this.filtered.size > 0 && !this.permissions!.canRead(message.topic)) {
      this.server.ctx.auth.stats.withheld++;
      return true;
    }
    const expiresAt = message.properties?.expiresAt;
    if (expiresAt !== undefined && expiresAt < this.server.ctx.now()) {
      this.server.stats.expired++;
      return true;
    }
    return false;
  }

  deliver(message: Message, first: Subscription): void {
    if (this.withheld(message)) return;
    const own = message.origin === this;
    const o = first.options as MqttSubscriptionOptions;
    if (this.wildcards.length === 0 || (this.wildcards.length === 1 && this.wildcards[0]!.filter === first.filter && this.subscription(message.topic) === undefined)) {
      // Fast path, no allocation: only `first` can match.
      if (own && o.noLocal) return; // [MQTT-3.8.3-3]
      const qos = (o.qos < message.qos ? o.qos : message.qos) as 0 | 1 | 2; // [MQTT-3.8.4-6] the lower of published and granted QoS
      const retain = o.retainAsPublished === true && message.retain; // [MQTT-3.3.1-12] [MQTT-3.3.1-13]
      if (qos === 0) {
        if (this.link) this.link.sendQos0(message, retain, o.subscriptionIds);
        else this.server.stats.offlineQos0Dropped++;
        return;
      }
      this.offer({ message, qos, retain, subscriptionIds: o.subscriptionIds });
      return;
    }
    // Overlapping subscriptions: one delivery, highest QoS, every identifier (MQTT 5 §3.3.4).
    let qos = -1;
    let retain = false;
    let ids: number[] | undefined;
    let s: MqttSubscriptionOptions | undefined = o;
    const exact = this.subscription(message.topic);
    for (let i = -2; i < this.wildcards.length; i++) {
      if (i === -1) s = exact !== undefined && exact.filter !== first.filter ? exact.options : undefined;
      else if (i >= 0) {
        const w = this.wildcards[i]!;
        s = w.filter !== first.filter && topicMatches(w.filter, message.topic) ? w.options : undefined;
      }
      if (s === undefined || (own && s.noLocal)) continue;
      const q = s.qos < message.qos ? s.qos : message.qos;
      if (q > qos) qos = q;
      if (s.retainAsPublished && message.retain) retain = true;
      if (s.subscriptionId !== undefined) (ids ??= []).push(s.subscriptionId); // [MQTT-3.3.4-3]
    }
    if (qos < 0) return;
    if (qos === 0) {
      if (this.link) this.link.sendQos0(message, retain, ids);
      else this.server.stats.offlineQos0Dropped++;
      return;
    }
    this.offer({ message, qos: qos as 1 | 2, retain, subscriptionIds: ids });
  }

  /** One message chosen for this session by a shared group. */
  deliverShared(message: Message, o: MqttSubscriptionOptions): void {
    if (this.withheld(message)) return;
    const qos = (o.qos < message.qos ? o.qos : message.qos) as 0 | 1 | 2;
    this.offer({ message, qos, retain: o.retainAsPublished === true && message.retain, subscriptionIds: o.subscriptionIds });
  }

  /** Sends or stores one delivery (live or retained). */
  offer(d: Delivery): void {
    if (d.qos === 0) {
      if (this.link) this.link.sendQos0(d.message, d.retain, d.subscriptionIds);
      else this.server.stats.offlineQos0Dropped++;
      return;
    }
    if (this.link && !this.resending && this.queuedCount === 0 && this.inflight.size < this.link.sendQuota && this.link.hasRoom()) {
      this.sendNew(d);
      return;
    }
    this.enqueue(d);
  }

  private enqueue(d: Delivery): void {
    const limits = this.server.limits;
    if (this.queuedCount >= limits.maxQueued) {
      this.server.stats.queueDropped++;
      if (limits.queueOverflow === 'drop-newest' || limits.maxQueued === 0) return;
      const dropped = this.queue[this.queueHead]!;
      this.queue[this.queueHead] = undefined as unknown as Delivery;
      this.queueHead++;
      if (this.store) this.store.dropDelivery(this, dropped);
    }
    if (this.queue === NONE) this.queue = [];
    this.queue.push(d);
    if (this.store) {
      d.seq = this.nextSeq++;
      this.store.saveDelivery(this, d, 0, 'queued');
    }
  }

  private sendNew(d: Delivery): void {
    const link = this.link!;
    const id = this.allocatePacketId();
    const entry: InflightEntry = { ...d, state: 'publish' };
    (this.inflightOwn ??= new Map()).set(id, entry);
    const store = this.store;
    if (store && (entry.qos === 2 || this.heldSends > 0)) {
      // Write-ahead for exactly once: a QoS 2 PUBLISH leaves only once its entry is durable. Sent
      // before, a crash could lose the entry while the client holds the message; the publisher's
      // resend would then reach the client under a new packet id, a second delivery. Whatever
      // follows it waits too, so the session's deliveries keep their order.
      entry.seq ??= this.nextSeq++;
      store.saveDelivery(this, entry, id, 'publish');
      this.heldSends++;
      afterDurable(store, () => {
        this.heldSends--;
        // Still this connection's, and not resent or completed meanwhile (else resume resends it).
        if (this.link === link && this.inflight.get(id) === entry && entry.state === 'publish' && !this.transmit(link, id, entry)) this.pump();
      });
      return;
    }
    if (!this.transmit(link, id, entry)) return;
    if (store) {
      entry.seq ??= this.nextSeq++;
      store.saveDelivery(this, entry, id, 'publish');
    }
  }

  /** Sends a new PUBLISH; false when it could not be sent (too large for the client): forgotten then. */
  private transmit(link: SessionLink, id: number, entry: InflightEntry): boolean {
    if (link.sendPublish(entry, id, false)) return true;
    this.inflight.delete(id);
    if (this.store && entry.seq !== undefined) this.store.dropDelivery(this, entry);
    return false;
  }

  /** PUBACK, PUBCOMP or a failed PUBREC ended an outgoing delivery: free its slot, send what waits. */
  complete(packetId: number, entry: InflightEntry): void {
    this.inflight.delete(packetId); // the packet id is free for reuse (MQTT 5 §2.2.1, 3.1.1 §2.3.1)
    if (this.store) this.store.dropDelivery(this, entry);
    this.pump();
  }

  /**
   * PUBREC received: answers PUBREL [MQTT-4.3.3-4]; from now on only PUBREL is resent for this id,
   * never the PUBLISH. A persisted session sends it once that state is durable: the client forgets
   * the id after PUBREL, so a crash that brought back the PUBLISH state would deliver it twice.
   */
  received(packetId: number, entry: InflightEntry): void {
    entry.state = 'pubrel';
    const link = this.link!;
    const store = this.store;
    if (!store) return link.sendPubrel(packetId);
    store.saveDelivery(this, entry, packetId, 'pubrel');
    afterDurable(store, () => {
      if (this.link === link && this.inflight.get(packetId) === entry) link.sendPubrel(packetId); // else resume resends it
    });
  }

  /**
   * Holds an incoming QoS 2 packet id until PUBREL [MQTT-4.3.3-9]. A persisted session stores it
   * (the PUBREC waits for that write, so a resent PUBLISH after a restart is not routed twice).
   */
  holdIncoming(packetId: number): void {
    (this.awaitingOwn ??= new Set()).add(packetId);
    if (this.store) void this.store.saveIncoming(this, packetId, true);
  }

  /**
   * PUBREL: forgets the id. Returns whether it was held and, for a persisted session, the write
   * the PUBCOMP must wait for (else a crash could bring the id back and swallow its reuse).
   */
  releaseIncoming(packetId: number): { known: boolean; durable: Promise<void> | undefined } {
    const known = this.awaitingRelease.delete(packetId);
    return { known, durable: known && this.store ? this.store.saveIncoming(this, packetId, false) : undefined };
  }

  /** Writes subscriptions, expiry and will of a persisted session; resolves when durable (undefined when not persisted). */
  saveMeta(): Promise<void> | undefined {
    return this.store?.saveMeta(this);
  }

  private allocatePacketId(): number {
    // At most Receive Maximum (≤ 65535) ids are in use, so this finds one quickly.
    for (;;) {
      const id = this.nextPacketId;
      this.nextPacketId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
  }

  /** Moves queued messages into free in-flight slots. */
  pump(): void {
    const link = this.link;
    if (!link) return;
    if (this.resending && !this.resendHeld(link)) return;
    const now = this.server.ctx.now();
    while (this.queueHead < this.queue.length && this.inflight.size < link.sendQuota && link.hasRoom()) {
      const d = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = undefined as unknown as Delivery;
      const expiresAt = d.message.properties?.expiresAt;
      if (expiresAt !== undefined && expiresAt < now) {
        this.server.stats.expired++; // [MQTT-3.3.2-5] not delivered once expired
        if (this.store) this.store.dropDelivery(this, d);
        continue;
      }
      this.sendNew(d);
      if (!this.link) return;
    }
    if (this.queueHead === this.queue.length) {
      this.queue = NONE;
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  // ---- connection lifecycle -----------------------------------------------------

  /** A connection takes this session (new or resumed): cancel expiry and any delayed will. */
  attach(link: SessionLink, will: Will | undefined): void {
    this.link = link;
    this.version = link.version;
    this.connectedWill = will;
    this.disconnectedAtMs = 0;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.pendingWill) {
      // [MQTT-3.1.3-9] a new connection to the session before the will delay: no will.
      if (this.pendingWill.timer) clearTimeout(this.pendingWill.timer);
      this.pendingWill = undefined;
    }
  }

  /** Applies a (new) connection's permissions to what the session already holds. */
  applyPermissions(permissions: TopicPermissions | undefined): void {
    this.permissions = permissions;
    this.filtered.clear();
    const recheck = this.recheckRead;
    this.recheckRead = false;
    if (!permissions) return;
    if (recheck) this.dropUnreadable(permissions);
    for (const filter of [...this.exactFilters(), ...this.sharedSubscriptions.keys()]) {
      const shared = parseShared(filter);
      const decision = permissions.canSubscribe(shared && shared !== 'invalid' ? shared.filter : filter);
      if (decision === 'deny') this.unsubscribe(filter);
      else if (decision === 'filtered') this.ownFiltered().add(filter);
    }
  }

  /** Drops restored deliveries the client's current permissions do not let it read (counted as withheld). */
  private dropUnreadable(permissions: TopicPermissions): void {
    const keep: Delivery[] = [];
    this.forEachQueued((d) => {
      if (permissions.canRead(d.message.topic)) keep.push(d);
      else {
        this.server.ctx.auth.stats.withheld++;
        this.store?.dropDelivery(this, d);
      }
    });
    this.queue = keep;
    this.queueHead = 0;
    for (const [id, entry] of this.inflight) {
      if (entry.state === 'pubrel' || permissions.canRead(entry.message.topic)) continue;
      this.server.ctx.auth.stats.withheld++;
      this.inflight.delete(id);
      this.store?.dropDelivery(this, entry);
    }
  }

  /**
   * Called at CONNECT once the expiry is known: a session with `--data` and expiry > 0 is
   * persisted (written whole when it becomes so, else its meta with the new connection).
   */
  persist(store: SessionStore | undefined): void {
    const target = this.expirySec > 0 ? store : undefined;
    if (target !== undefined && target === this.store) {
      void target.saveMeta(this);
      return;
    }
    if (this.store) this.store.end(this.clientId); // expiry 0 now: the session ends with this connection
    this.store = target;
    if (!target) return;
    for (const entry of this.inflight.values()) entry.seq ??= this.nextSeq++;
    this.forEachQueued((d) => {
      d.seq ??= this.nextSeq++;
    });
    void target.saveAll(this);
  }

  /** The will a crash would leave pending: the connection's while online, the delayed one while offline. */
  durableWill(): Will | undefined {
    return this.link ? this.connectedWill : this.pendingWill?.will;
  }

  /**
   * Rebuilds a session read from the session store at start-up: subscriptions in the router,
   * deliveries queued and in flight (resent with DUP when the client returns), incoming QoS 2 ids.
   * Its expiry and will delay count from when the client disconnected; a session that was online
   * when the broker stopped without a goodbye (kill -9) counts from now.
   */
  static restore(server: SessionHost, loaded: LoadedSession, store: SessionStore, nowMs: number): MqttSession {
    const limits = server.limits;
    const session = new MqttSession(server, loaded.clientId);
    session.version = loaded.version;
    session.expirySec = Math.min(loaded.expirySec, limits.maxSessionExpirySec); // the cap may have been lowered since
    session.store = store;
    session.recheckRead = true;
    server.sessions.set(loaded.clientId, session);
    for (const [filter, options] of loaded.subscriptions) session.subscribe(filter, options);
    for (const { seq, delivery, packetId, state } of loaded.deliveries) {
      if (packetId > 0 && !session.inflight.has(packetId)) (session.inflightOwn ??= new Map()).set(packetId, { ...delivery, state });
      else (session.queue === NONE ? (session.queue = []) : session.queue).push(delivery);
      if (seq >= session.nextSeq) session.nextSeq = seq + 1;
    }
    // mqttMaxQueued may have been lowered since: the queue keeps its bound, by the overflow policy.
    const over = session.queue.length - limits.maxQueued;
    if (over > 0) {
      const dropped = limits.queueOverflow === 'drop-newest' ? session.queue.splice(limits.maxQueued) : session.queue.splice(0, over);
      server.stats.queueDropped += dropped.length;
      for (const d of dropped) store.dropDelivery(session, d);
    }
    for (const id of loaded.awaitingRelease) (session.awaitingOwn ??= new Set()).add(id);
    const elapsedMs = loaded.connected ? 0 : Math.max(0, nowMs - loaded.disconnectedAtMs);
    session.detach(loaded.will, elapsedMs);
    return session;
  }

  /**
   * Resends everything in flight after a resumption [MQTT-4.4.0-1]: PUBRELs at once, PUBLISHes
   * (DUP, same ids, same order [MQTT-4.6.0-1]) only while the new connection's Receive Maximum
   * allows [MQTT-3.3.4-9]; the rest follow as acknowledgements free slots. Then fills free slots.
   */
  resume(): void {
    const link = this.link!;
    for (const [id, entry] of this.inflight) {
      if (entry.state === 'pubrel') {
        link.sendPubrel(id);
        if (this.link !== link) return;
      } else {
        entry.state = 'resend';
        this.resending = true;
      }
    }
    this.pump();
  }

  /** Resends held entries in order while there is quota; true once none is left. */
  private resendHeld(link: SessionLink): boolean {
    let outstanding = 0;
    for (const e of this.inflight.values()) if (e.state !== 'resend') outstanding++;
    for (const [id, entry] of this.inflight) {
      if (entry.state !== 'resend') continue;
      if (outstanding >= link.sendQuota || !link.hasRoom()) return false;
      entry.state = 'publish';
      outstanding++;
      if (!link.sendPublish(entry, id, true)) { // [MQTT-3.3.1-1] DUP on redelivery
        this.inflight.delete(id);
        if (this.store) this.store.dropDelivery(this, entry);
        outstanding--;
      }
      if (this.link !== link) return false;
    }
    this.resending = false;
    return true;
  }

  /**
   * The connection ended `elapsedMs` ago (0: now; more for a session restored from disk). A
   * session with expiry 0 ends now; otherwise it waits `expirySec` for its client. A will with a
   * delay waits the shorter of the two [MQTT-3.1.2-8].
   */
  detach(will: Will | undefined, elapsedMs = 0): void {
    this.link = undefined;
    this.connectedWill = undefined;
    this.disconnectedAtMs = this.server.ctx.now() - elapsedMs;
    if (this.expirySec === 0) {
      this.end();
      if (will) this.publishWill(will);
      return;
    }
    const expiryMs = this.expirySec * 1000 - elapsedMs;
    if (expiryMs <= 0) {
      this.server.stats.sessionsExpired++;
      this.end();
      if (will) this.publishWill(will);
      return;
    }
    if (will) {
      const delayMs = will.delaySec * 1000 - elapsedMs;
      if (delayMs <= 0) this.publishWill(will);
      else {
        const pending: { will: Will; timer: NodeJS.Timeout | undefined } = { will, timer: undefined };
        if (delayMs < expiryMs) {
          pending.timer = setTimeout(() => {
            if (this.pendingWill !== pending) return;
            this.pendingWill = undefined;
            this.publishWill(will);
            void this.saveMeta(); // the will is no longer pending after a restart
          }, delayMs);
          pending.timer.unref();
        }
        this.pendingWill = pending; // else published when the session ends [MQTT-3.1.2-8]
      }
    }
    if (this.expirySec < 0xffffffff) {
      this.expiryTimer = setTimeout(() => {
        this.server.stats.sessionsExpired++;
        this.end();
      }, Math.min(expiryMs, 2 ** 31 - 1));
      this.expiryTimer.unref();
    }
    if (this.store) void this.store.saveMeta(this);
  }

  /**
   * Another node took the client id over (cluster session store, `SessionStore.claim`): the
   * session leaves this node as it is — its stored state, pending will included, is the other
   * node's now — without ending it in the store or publishing anything.
   */
  leave(): void {
    if (this.ended) return;
    if (this.pendingWill?.timer) clearTimeout(this.pendingWill.timer);
    this.pendingWill = undefined;
    this.store = undefined;
    this.end();
  }

  /** Ends the session: leaves the router, drops its state, publishes a pending will. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.store) this.store.end(this.clientId);
    this.store = undefined;
    if (this.server.sessions.get(this.clientId) === this) this.server.sessionStore?.unhold?.(this.clientId);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.server.sessions.get(this.clientId) === this) this.server.sessions.delete(this.clientId);
    for (const filter of this.exactFilters()) this.server.ctx.router.unsubscribe(this, filter);
    this.oneSub = undefined;
    this.manySubs = undefined;
    for (const filter of [...this.sharedSubscriptions.keys()]) this.unsubscribe(filter);
    this.wildcards = NONE;
    this.inflight.clear();
    this.awaitingRelease.clear();
    this.queue = NONE;
    this.queueHead = 0;
    this.link = undefined;
    const pending = this.pendingWill;
    this.pendingWill = undefined;
    if (pending) {
      if (pending.timer) clearTimeout(pending.timer);
      this.publishWill(pending.will);
    }
  }

  private publishWill(will: Will): void {
    publishWill(this.server, will);
  }
}

/**
 * Runs `fn` once everything written to the store so far is durable, in write order. A failed write
 * (reported and counted by the store) does not hold delivery back: it goes on, only not durably.
 */
function afterDurable(store: SessionStore, fn: () => void): void {
  store.synced().then(fn, fn);
}

/** Publishes a will through the router (MQTT 5 §3.1.2.5), deferred: it may be triggered from inside a delivery. */
export function publishWill(server: SessionHost, will: Will): void {
  const { ctx } = server;
  ctx.counters.willsPublished++;
  queueMicrotask(() => {
    const routed = ctx.router.publish(willMessage(will, ctx.now()));
    if (routed.durable) routed.durable.catch((err: unknown) => ctx.log.error({ err, topic: will.topic }, 'retained will write failed'));
  });
}
