/**
 * The bridge between the one router and a Bus (issue 8, cluster/DESIGN.md): everything a node
 * does to share topics with other nodes, so that protocols and the router stay unaware of it.
 *
 * - Interest: the router tells the bridge of every (subscriber, filter) added or removed; the
 *   bridge counts them per filter over every protocol and holds the filter on the bus while the
 *   count is above zero, plus `lingerMs` after it drops to zero (flapping clients cost nothing).
 * - Out: a router tap sends each local publish to the bus (cluster/outage.ts applies the outage
 *   policy); messages that came from the bus carry `BUS_ORIGIN` and never go back.
 * - In: bus messages are routed locally; the bus delivers each once per node and the router
 *   once per subscriber, so each local subscriber gets each message once.
 * - Retained mirror: for held filters the local retained store holds the bus's values. Every
 *   retained value (snapshot or live) is merged by its seq: routed when newer than what the node
 *   has for the topic, dropped (counted) when not, so no subscriber sees an older value after a
 *   newer one and each value reaches existing subscribers once. A subscription on a filter not
 *   mirrored yet waits (`prepare`) for the snapshot, bounded by `snapshotTimeoutMs`, and then
 *   subscribes and reads the store in one synchronous turn: no gap before live messages.
 * - Wills: sessions register theirs (`setWill`); the bus publishes them if this node dies, and
 *   hands other nodes' orphan wills to this node, which routes them like the broker's own publish.
 * - History and shared subscriptions, when the bus can share them (NATS, cluster/DESIGN.md):
 *   history topics go through the bus's history stream (`shareHistory`; their live copies only
 *   feed the retained store and shared groups), and each shared-subscription group is held on the
 *   bus, which picks one node per message (`onShared`).
 *
 * Invariants: topics and filters under `$SYS` stay local (each node has its own figures);
 * `seqs` only grows per topic (tombstones keep a deleted topic's seq so an older snapshot
 * cannot bring it back). Cost: one map lookup per subscribe/unsubscribe, one bus publish per local
 * publish, one seq entry per retained topic seen.
 */
import type { Bus, BusEvents, BusMessage, BusState, OrphanWill, RetainedEntry, SharedHistory } from '../core/bus.js';
import { filtersOverlap } from '../core/filters.js';
import { createMessage, type Message } from '../core/message.js';
import type { InterestListener, Router } from '../core/router.js';
import type { Logger } from '../observe/log.js';
import { BusOutbound, type OutageLimits } from './outage.js';

/** `origin` of every message that came from the bus: never sent back to it. */
export const BUS_ORIGIN: object = Object.freeze({ origin: 'bus' });

/** What sessions and the composition root see of the cluster (BrokerContext.cluster). */
export interface ClusterHooks {
  readonly state: BusState;
  /**
   * Called by a SUBSCRIBE before it subscribes and reads retained values: undefined when the
   * store already mirrors every filter (the synchronous fast path), else a promise (never
   * rejected) that resolves once the bus's retained values are merged or the wait timed out.
   */
  prepare(filters: readonly string[]): Promise<void> | undefined;
  /** Registers (or with undefined clears) the will of the connection or session `owner`. */
  setWill(owner: object, will: Message | undefined): void;
}

export interface BridgeOptions extends OutageLimits {
  lingerMs: number;
  snapshotTimeoutMs: number;
}

export interface BridgeStats {
  /** Messages from other nodes routed here. */
  received: number;
  /** Retained values from the bus not routed because the node already had a newer (or the same) one. */
  staleRetained: number;
  /** Local retained values removed because the bus no longer had them. */
  retainedRemoved: number;
  /** Retained snapshots merged, and those a subscription stopped waiting for. */
  snapshots: number;
  snapshotTimeouts: number;
  /** Other nodes' wills this node published. */
  orphanWills: number;
  stateChanges: number;
  /** Failed bus operations (subscribe, unsubscribe, snapshot, will, routing), each logged. */
  errors: number;
}

interface FilterState {
  /** Local subscriptions holding it (plus one per snapshot being taken). */
  refs: number;
  linger: NodeJS.Timeout | undefined;
  /** The store holds the bus's retained values for this filter. */
  mirrored: boolean;
  /** `Bus.subscribe` for it, called once per hold (bus.ts). */
  subscribed: Promise<void>;
  /** The snapshot being taken, shared by every subscription waiting for it. */
  snapshot: Promise<void> | undefined;
}

interface TopicSeq {
  seq: number;
  /** `changes` when it was last set: a snapshot requested before it cannot judge it. */
  change: number;
}

/** Topics and filters that never cross the bus: the broker's own figures. */
function isLocalOnly(topicOrFilter: string): boolean {
  return topicOrFilter.startsWith('$SYS');
}

function noop(): void {}

export class ClusterBridge implements ClusterHooks, InterestListener {
  readonly stats: BridgeStats = { received: 0, staleRetained: 0, retainedRemoved: 0, snapshots: 0, snapshotTimeouts: 0, orphanWills: 0, stateChanges: 0, errors: 0 };
  readonly outbound: BusOutbound;
  private readonly filters = new Map<string, FilterState>();
  /** Shared-subscription groups held on the bus (share NUL filter → local groups holding it). */
  private readonly shares = new Map<string, number>();
  private readonly seqs = new Map<string, TopicSeq>();
  private changes = 0;
  /** This node's latest retained write per topic until the bus told its seq. */
  private readonly ownPending = new Map<string, BusMessage>();
  private readonly willKeys = new WeakMap<object, string>();
  private willCount = 0;
  private untap: () => void = noop;
  private closed = false;
  /** Set once the bus is closed: until then messages from other nodes are routed (see `close`). */
  private stopped = false;
  /** The history every node shares through the bus, when it keeps one (cluster/DESIGN.md "History in JetStream"). */
  private shared: SharedHistory | undefined;

  constructor(
    readonly bus: Bus,
    private readonly router: Router,
    private readonly options: BridgeOptions,
    private readonly log: Logger,
    private readonly counters: { willsPublished: number },
  ) {
    let loggedAtMs = -Infinity;
    let unlogged = 0;
    this.outbound = new BusOutbound(bus, options, (m, seq) => this.ownRetainedStored(m, seq), (err, m) => {
      // Counted every time (topicast_bus_errors_total); logged at most every 10 s, so a bus that
      // refuses every message cannot flood the log.
      const now = Date.now();
      if (now - loggedAtMs < 10_000) {
        unlogged++;
        return;
      }
      this.log.warn({ err, topic: m?.topic, bus: bus.kind, notLoggedSince: unlogged }, 'the cluster bus refused a message');
      loggedAtMs = now;
      unlogged = 0;
    });
  }

  get state(): BusState {
    return this.bus.state;
  }

  /** Filters held on the bus (including lingering ones). */
  get heldFilters(): number {
    return this.filters.size;
  }

  /** Connects the bus, then starts sharing interest and publishes. Rejects when the engine cannot be reached. */
  async start(): Promise<void> {
    const events: BusEvents = {
      message: (m) => this.onMessage(m),
      state: (state, reason) => this.onState(state, reason),
      orphanWill: (will) => this.onOrphanWill(will),
      shared: (m, share, filter) => this.onShared(m, share, filter),
    };
    await this.bus.start(events);
    if (this.bus.subscribeShared !== undefined) this.router.gateShared(this.localShare);
    this.router.watchInterest(this);
    this.untap = this.router.tap((message, acknowledged) => this.toBus(message, acknowledged));
  }

  /**
   * Shares the router's history through the bus when the bus can keep one (NATS JetStream): the
   * router then hands it every history message and it routes them back with their place in the
   * shared stream. Rejects when the bus cannot keep it now.
   */
  async shareHistory(retryAfterSec: number): Promise<boolean> {
    const history = this.router.history;
    if (history === undefined || this.bus.shareHistory === undefined) return false;
    const router = this.router;
    this.shared = await this.bus.shareHistory({ history, route: (m) => router.publish(m), foreignOrigin: BUS_ORIGIN, retryAfterSec });
    router.sequenceHistory(this.shared);
    return true;
  }

  /** A topic whose messages travel through the shared history stream, not the live path. */
  private isSharedHistoryTopic(topic: string): boolean {
    return this.shared !== undefined && this.router.history!.isHistoryTopic(topic);
  }

  /** Stops sharing; the bus clears this node's wills and interest (a clean leave). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.shared) {
      this.router.sequenceHistory(undefined);
      this.shared.close();
    }
    this.untap();
    this.router.watchInterest(undefined);
    this.router.gateShared(undefined);
    for (const st of this.filters.values()) clearTimeout(st.linger);
    this.filters.clear();
    this.outbound.close();
    // Messages from other nodes are still routed while the bus closes: a drained node's offline
    // MQTT sessions keep queueing until the survivors have adopted them (cluster/DESIGN.md).
    await this.bus.close();
    this.stopped = true;
  }

  // ---- interest (router → bus) ----------------------------------------------------------

  added(filter: string, share?: string): void {
    if (isLocalOnly(filter)) return;
    if (share !== undefined && this.bus.subscribeShared !== undefined) return this.holdShared(share, filter);
    this.hold(filter).refs++;
  }

  removed(filter: string, share?: string): void {
    if (isLocalOnly(filter)) return;
    if (share !== undefined && this.bus.unsubscribeShared !== undefined) return this.releaseShared(share, filter);
    const st = this.filters.get(filter);
    if (!st || --st.refs > 0) return;
    st.linger = setTimeout(() => this.release(filter, st), this.options.lingerMs);
    st.linger.unref();
  }

  private hold(filter: string): FilterState {
    let st = this.filters.get(filter);
    if (st) {
      clearTimeout(st.linger);
      st.linger = undefined;
      return st;
    }
    const subscribed = this.bus.subscribe(filter);
    st = { refs: 0, linger: undefined, mirrored: false, snapshot: undefined, subscribed };
    this.filters.set(filter, st);
    subscribed.catch((err: unknown) => this.failed(err, 'subscribe', filter));
    return st;
  }

  /** A shared-subscription group with members here: the bus hands this node its share of the group's messages. */
  private holdShared(share: string, filter: string): void {
    const key = `${share}\u0000${filter}`;
    const refs = this.shares.get(key) ?? 0;
    this.shares.set(key, refs + 1);
    if (refs === 0) this.bus.subscribeShared!(share, filter).catch((err: unknown) => this.failed(err, 'shared subscribe', filter));
  }

  private releaseShared(share: string, filter: string): void {
    const key = `${share}\u0000${filter}`;
    const refs = (this.shares.get(key) ?? 1) - 1;
    if (refs > 0) return void this.shares.set(key, refs);
    this.shares.delete(key);
    this.bus.unsubscribeShared!(share, filter).catch((err: unknown) => this.failed(err, 'shared unsubscribe', filter));
  }

  /**
   * Which routed messages this node's shared-subscription groups take from `Router.publish`: with a
   * bus that spreads groups over nodes, the bus picks one node per message (`onShared`), so only
   * what never crosses the bus ($SYS), or local publishes while the bus is down, go to the local groups.
   */
  private readonly localShare = (message: Message): boolean => message.origin !== BUS_ORIGIN && (isLocalOnly(message.topic) || this.bus.state === 'down');

  private onShared(m: BusMessage, share: string, filter: string): void {
    if (this.closed) return;
    try {
      this.router.deliverShared(createMessage(m.topic, m.payload, false, BUS_ORIGIN, m.qos, m.properties), share, filter);
    } catch (err) {
      this.failed(err, 'a shared subscription delivery', m.topic);
    }
  }

  private release(filter: string, st: FilterState): void {
    if (st.refs > 0 || this.filters.get(filter) !== st) return;
    this.filters.delete(filter);
    this.bus.unsubscribe(filter).catch((err: unknown) => this.failed(err, 'unsubscribe', filter));
  }

  // ---- retained mirror ----------------------------------------------------------------------

  prepare(filters: readonly string[]): Promise<void> | undefined {
    // Down, or degraded (retained values unavailable): the local mirror is all there is; what the
    // bus holds arrives live once it is up (onState takes every held filter's snapshot again).
    if (this.closed) return undefined;
    let waits: Promise<void>[] | undefined;
    // A resume may carry a position another node delivered: the shared history's mirror catches up
    // first, and drops what the stream no longer holds (bounded; at once when NATS is unreachable).
    const history = this.router.history;
    if (this.shared !== undefined && filters.some((f) => history!.limits.patterns.some((p) => filtersOverlap(p, f)))) waits = [this.shared.caughtUp()];
    for (const filter of filters) {
      if (this.bus.state !== 'up') break;
      if (isLocalOnly(filter)) continue;
      const st = this.filters.get(filter);
      if (st?.mirrored) continue;
      (waits ??= []).push(this.mirror(filter));
    }
    if (waits === undefined) return undefined;
    const all = waits.length === 1 ? waits[0]! : Promise.all(waits).then(noop);
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.stats.snapshotTimeouts++;
        resolve();
      }, this.options.snapshotTimeoutMs);
      all.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Takes the bus's retained values for `filter` into the store (once at a time per filter); never rejects. */
  private mirror(filter: string): Promise<void> {
    const st = this.hold(filter);
    if (st.snapshot) return st.snapshot;
    st.refs++; // the interest stays while the snapshot is taken, even if its subscriber leaves
    const since = this.changes;
    st.snapshot = st.subscribed
      .then(() => this.bus.retained(filter))
      .then(
        (entries) => {
          this.mergeSnapshot(filter, entries, since);
          st.mirrored = true;
        },
        (err: unknown) => this.failed(err, 'retained snapshot', filter),
      )
      .finally(() => {
        st.snapshot = undefined;
        this.removed(filter);
      });
    return st.snapshot;
  }

  private mergeSnapshot(filter: string, entries: RetainedEntry[], since: number): void {
    this.stats.snapshots++;
    const present = new Set<string>();
    for (const e of entries) {
      present.add(e.topic);
      this.mergeRetained(e.topic, e.payload, e.properties, e.qos ?? 0, e.seq);
    }
    // A value the bus no longer has was deleted while this node did not hold the topic.
    const store = this.router.retained;
    for (const topic of store.match(filter)) {
      if (present.has(topic) || isLocalOnly(topic) || this.ownPending.has(topic)) continue;
      const known = this.seqs.get(topic);
      if (known && known.change > since) continue; // set after the snapshot was asked for: newer than it
      this.stats.retainedRemoved++;
      this.storeDirect(createMessage(topic, new Uint8Array(0), true, BUS_ORIGIN));
    }
  }

  /** Routes a retained value from the bus when it is newer than the node's; true when routed. */
  private mergeRetained(topic: string, payload: Uint8Array, properties: BusMessage['properties'], qos: 0 | 1 | 2, seq: number): boolean {
    const known = this.seqs.get(topic);
    if (known && known.seq >= seq) {
      this.stats.staleRetained++;
      return false;
    }
    this.seqs.set(topic, { seq, change: ++this.changes });
    const message = createMessage(topic, payload, true, BUS_ORIGIN, qos, properties);
    // Subscribers get a shared history topic's messages from the history stream: only the store takes it.
    if (this.isSharedHistoryTopic(topic)) this.storeDirect(message);
    else this.router.publish(message);
    return true;
  }

  /** The bus stored this node's own retained write with `seq`: the mirror takes it in its place. */
  private ownRetainedStored(m: BusMessage, seq: number): void {
    const latest = this.ownPending.get(m.topic) === m;
    if (latest) this.ownPending.delete(m.topic);
    const known = this.seqs.get(m.topic);
    if (known && known.seq >= seq) return; // another node's newer value is already here
    this.seqs.set(m.topic, { seq, change: ++this.changes });
    if (!latest) return; // a newer write of ours follows
    // An older value from another node may have been routed meanwhile: put ours back (no re-delivery).
    const current = this.router.retained.get(m.topic);
    const stored = m.payload.length === 0 ? current === undefined : current?.payload === m.payload;
    if (!stored) this.storeDirect(createMessage(m.topic, m.payload, true, BUS_ORIGIN, m.qos, m.properties));
  }

  private storeDirect(message: Message): void {
    const written = this.router.retained.set(message);
    if (written) written.catch((err: unknown) => this.failed(err, 'retained mirror write', message.topic));
  }

  // ---- bus events -----------------------------------------------------------------------------

  private onMessage(m: BusMessage): void {
    if (this.stopped) return;
    this.stats.received++;
    try {
      if (m.retain) this.mergeRetained(m.topic, m.payload, m.properties, m.qos, m.seq);
      // A shared history topic reaches subscribers from the history stream, in its order; the live
      // copy serves the retained store (above) and shared-subscription groups (onShared) only.
      else if (!this.isSharedHistoryTopic(m.topic)) this.router.publish(createMessage(m.topic, m.payload, false, BUS_ORIGIN, m.qos, m.properties));
    } catch (err) {
      this.failed(err, 'routing a bus message', m.topic); // the bus must not see a throw (bus.ts)
    }
  }

  private onState(state: BusState, reason: string): void {
    this.stats.stateChanges++;
    if (state === 'up') this.log.info({ bus: this.bus.kind, reason }, 'cluster bus up');
    else this.log.warn({ bus: this.bus.kind, state, reason }, state === 'down' ? 'cluster bus down: local delivery continues, see the outage policy' : 'cluster bus degraded');
    if (state === 'down') {
      // Updates are missed while down: every mirror is taken again once the bus is back.
      for (const st of this.filters.values()) st.mirrored = false;
      return;
    }
    this.outbound.replay();
    if (state !== 'up') return; // degraded: publishing works, retained snapshots do not
    for (const [filter, st] of this.filters) if (!st.mirrored && st.refs > 0) void this.mirror(filter);
  }

  private onOrphanWill(will: OrphanWill): void {
    if (this.closed) return;
    this.stats.orphanWills++;
    this.counters.willsPublished++;
    const m = will.message;
    this.log.info({ owner: will.owner, topic: m.topic }, 'publishing the will of a connection on a node that died');
    try {
      // Origin: the broker (not BUS_ORIGIN), so the tap also sends it to every other node, once.
      const routed = this.router.publish(createMessage(m.topic, m.payload, m.retain, undefined, m.qos, m.properties));
      if (routed.durable) routed.durable.catch((err: unknown) => this.failed(err, 'orphan will', m.topic));
    } catch (err) {
      this.failed(err, 'orphan will', m.topic);
    }
  }

  // ---- wills ------------------------------------------------------------------------------------

  setWill(owner: object, will: Message | undefined): void {
    if (this.closed) return;
    let key = this.willKeys.get(owner);
    if (will === undefined) {
      if (key === undefined) return;
      this.willKeys.delete(owner);
      this.bus.setWill(key, undefined).catch((err: unknown) => this.failed(err, 'will clear', key!));
      return;
    }
    if (key === undefined) {
      key = `w${++this.willCount}`;
      this.willKeys.set(owner, key);
    }
    // The expiry of a will counts from its publication: an absolute time taken now would be wrong then.
    const properties = will.properties?.expiresAt === undefined ? will.properties : { ...will.properties, expiresAt: undefined };
    this.bus.setWill(key, toBusMessage({ ...will, properties }, this.bus.nodeId)).catch((err: unknown) => this.failed(err, 'will registration', will.topic));
  }

  /** The router tap: a local publish goes to the other nodes (never one that came from the bus). */
  private toBus(message: Message, acknowledged: boolean): Promise<void> | undefined {
    if (message.origin === BUS_ORIGIN || isLocalOnly(message.topic)) return undefined;
    const m = toBusMessage(message, this.bus.nodeId);
    if (m.retain) this.ownPending.set(m.topic, m); // until the bus tells its seq (ownRetainedStored)
    return this.outbound.send(m, acknowledged);
  }

  private failed(err: unknown, what: string, subject: string): void {
    this.stats.errors++;
    this.log.error({ err, bus: this.bus.kind, topic: subject }, `cluster bus: ${what} failed`);
  }
}

export function toBusMessage(m: Pick<Message, 'topic' | 'payload' | 'retain' | 'qos' | 'properties'>, origin: string): BusMessage {
  return { topic: m.topic, payload: m.payload, retain: m.retain, qos: m.qos, properties: m.properties, origin, seq: 0 };
}
