/**
 * The `Bus` (core/bus.ts) over an upstream MQTT 5 broker, for sites that already run one
 * (Mosquitto, tested; any MQTT 5 broker with the properties listed in cluster/MQTT-UPSTREAM.md).
 * One MQTT 5 connection per node (mqtt.js), clean start, every upstream publish at QoS 1.
 *
 * Upstream topics, all under `root` (default `topicast`; a `$` root is refused by most brokers):
 *   <root>/t/<topic>          a topic not starting with `$`  (filters: `#`, `+/x`, `a/#` → here only)
 *   <root>/$/<topic>          a topic starting with `$`, so leading wildcards never reach it
 *   <root>/m/<node>           this node's snapshot markers (node-private, not retained)
 *   <root>/p/<node>           presence: retained incarnation id; the connection's MQTT will clears it
 *   <root>/i/<node>/<inc>     retained index of incarnations that may hold wills
 *   <root>/w/<node>/<inc>/<key>  one retained message per registered will (msgpack)
 * Node ids and will keys are escaped into one level (`%`, `/`, `+`, `#` → %XX).
 *
 * Invariants and why they hold
 * - No echo: held subscriptions use No Local. Once per message: brokers may send one copy per
 *   matching subscription (Mosquitto does) — each held filter has its own Subscription Identifier,
 *   and a copy is delivered only when it carries the smallest identifier among the held filters
 *   matching its topic (a trie match; no per-origin state). Retain As Published is off on purpose:
 *   then RETAIN=1 on a received message means exactly "sent because of a SUBSCRIBE" (a snapshot);
 *   whether a live message is retained travels in our `topicast.bus` user property instead.
 * - Order per node per topic: one connection, one QoS (1) for every publish and subscription, so
 *   the broker's per-connection FIFO keeps publish order [MQTT-4.6.0-6].
 * - Snapshot marker: `retained(filter)` (re)subscribes the filter with Retain Handling 0, waits
 *   for SUBACK, then publishes a marker to `<root>/m/<node>`, which this node subscribes without
 *   No Local. The broker queues the retained messages while it handles the SUBSCRIBE — before it
 *   reads our marker PUBLISH, sent only after the SUBACK — and queues the marker behind them on the
 *   same connection at the same QoS: every snapshot message arrives before the marker.
 * - seq: the publisher stamps each retained publish with a hybrid clock, max(now_ms × 1024,
 *   last stamp issued + 1, last seq seen for the topic + 1), so sequential writes grow across
 *   nodes. The broker serialises publishes per topic and delivers them to this connection in that
 *   order, snapshot included; the receiver keeps seq = max(stamp, previous seq of the topic + 1)
 *   (same origin and stamp: same seq), so on each node a larger seq is newer in the broker's order
 *   even when two nodes wrote one topic within their clock skew.
 * - Wills without compare-and-set: a node dead for `willGraceMs` (presence gone, or showing another
 *   incarnation) has its incarnations' wills published by one node, the live node cluster/will-claim.ts
 *   designates for it (the rule the NATS bus uses too), which then clears them and the index entry. Each connection is a new incarnation; after a reconnect
 *   the node re-registers its wills under it and clears its old incarnation itself, so a blip
 *   shorter than the grace fires nothing. Exactly once while membership is stable; see MQTT-UPSTREAM.md.
 * Cost per message in: one trie match over held filters; per retained message: one map entry per
 * topic under a held filter (dropped when no held filter matches it any more).
 */
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { pack, unpack } from 'msgpackr';
import { BusUnavailableError, type Bus, type BusEvents, type BusMessage, type BusState, type RetainedEntry } from '../core/bus.js';
import type { MessageProperties } from '../core/message.js';
import { SubscriptionTrie } from '../core/trie.js';
import type { Logger } from '../observe/log.js';
import { willClaimer } from './will-claim.js';

export interface MqttBusOptions {
  /**
   * mqtt://host:port or mqtts://… (user:password in the URL are used for CONNECT). A path names
   * the root: `mqtt://host:1883/site-a/topicast` puts everything under `site-a/topicast`.
   */
  url: string;
  nodeId: string;
  /** Root of every upstream topic (overrides the URL's path); default `topicast`. A topic without wildcards, not starting with `$`. */
  root?: string;
  /** MQTT keepalive; the broker publishes a dead node's presence will after 1.5 × this. Default 10 s. */
  keepaliveSec?: number;
  /** Pause between reconnect attempts; default 1000 ms. */
  reconnectPeriodMs?: number;
  /** Bound on one connection attempt (start() rejects after it); default 5000 ms. */
  connectTimeoutMs?: number;
  /** A node must stay absent this long before its wills are published; covers a reconnect. Default 5000 ms. */
  willGraceMs?: number;
  log?: Logger;
}

/** Counters for /metrics and tests. */
export interface MqttBusStats {
  /** Copies dropped because another copy of the same publish (another held filter) is delivered. */
  duplicatesDropped: number;
  /** Messages under the root that no Topicast node wrote (no `topicast.bus` property); delivered with origin ''. */
  foreignMessages: number;
  /** Dead nodes' wills handed to `orphanWill` by this node. */
  willsClaimed: number;
  /** Will claims or clean-ups that failed (logged); retried on the next membership change or reconnect. */
  claimErrors: number;
  /** Connections (re)established. */
  connects: number;
}

const HEADER = 'topicast.bus';
const MARKER_ID = 1;
const PRESENCE_ID = 2;
const INDEX_ID = 3;
const FIRST_ID = 16;
const MAX_ID = 268_435_455; // MQTT 5 §3.3.2.3.8: Variable Byte Integer 1..268,435,455
const SEQ_PER_MS = 1024; // 2^53 / 1024 ms ≈ year 2248; 1024 stamps per ms per node before the clock is overtaken

/** Escapes a string into one topic level. */
function level(s: string): string {
  return s.replace(/[%/+#]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}
function unlevel(s: string): string {
  return s.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

const toBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

interface StoredWill {
  t: string;
  p: Uint8Array;
  r: boolean;
  q: 0 | 1 | 2;
  pr?: MessageProperties;
}

type Raw = { topic: string; payload: Buffer; packet: mqtt.IPublishPacket };

export function createMqttBus(options: MqttBusOptions): MqttBus {
  return new MqttBus(options);
}

export class MqttBus implements Bus {
  readonly kind = 'mqtt';
  readonly nodeId: string;
  /** Exported in /metrics as topicast_bus_mqtt_<name>_total by the cluster wiring. */
  readonly counters: MqttBusStats = { duplicatesDropped: 0, foreignMessages: 0, willsClaimed: 0, claimErrors: 0, connects: 0 };
  private readonly root: string;
  private readonly willGraceMs: number;
  private readonly log: Logger | undefined;
  private current: BusState = 'down';
  private events: BusEvents | undefined;
  private client: mqtt.MqttClient | undefined;
  private closed = false;
  private errorLogged = false;
  /** Incarnation of the current connection (a new one per connection). */
  private inc = '';
  /** Earlier incarnations of this process whose wills and index entry are not cleared yet. */
  private readonly oldIncs = new Set<string>();
  private gen = 0;
  private readonly held = new Map<string, number>();
  private readonly interest = new SubscriptionTrie<string, number>();
  private nextId = FIRST_ID;
  private idsWrapped = false;
  private readonly collectors = new Map<number, (raw: Raw) => void>();
  private readonly markers = new Map<string, { resolve(): void; reject(err: Error): void }>();
  private markerCount = 0;
  private readonly chains = new Map<string, Promise<unknown>>();
  private upWaiters: (() => void)[] = [];
  private readonly wills = new Map<string, BusMessage>();
  /** Wills set or cleared while not up: written (or cleared) by the sync before it reports up. */
  private readonly willsPending = new Set<string>();
  private readonly lastRetained = new Map<string, { origin: string; stamp: number; seq: number }>();
  private lastStamp = 0;
  // Membership, as seen through the presence and index subscriptions of the current connection.
  private synced = false;
  private readonly presence = new Map<string, string>();
  private readonly index = new Map<string, Set<string>>();
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  private readonly graceOver = new Set<string>();
  private readonly claiming = new Set<string>();
  private claimChain: Promise<void> = Promise.resolve();

  private readonly url: string;

  constructor(private readonly options: MqttBusOptions) {
    if (options.nodeId.length === 0) throw new Error('mqtt bus: nodeId must not be empty');
    this.nodeId = options.nodeId;
    const u = new URL(options.url);
    const path = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '');
    u.pathname = '';
    this.url = u.toString();
    this.root = options.root ?? (path || 'topicast');
    if (this.root === '' || this.root.startsWith('$') || /[+#\0]/.test(this.root)) {
      throw new Error(`mqtt bus: root ${JSON.stringify(this.root)} must be a topic name without wildcards, not starting with $`);
    }
    this.willGraceMs = options.willGraceMs ?? 5000;
    this.log = options.log;
  }

  get state(): BusState {
    return this.current;
  }

  // ---- topics ----------------------------------------------------------------------------

  private up(topicOrFilter: string): string {
    return `${this.root}/${topicOrFilter.charCodeAt(0) === 0x24 ? '$' : 't'}/${topicOrFilter}`;
  }

  /** The Topicast topic of an upstream topic, or undefined when it is not one. */
  private down(upTopic: string): string | undefined {
    const n = this.root.length;
    if (!upTopic.startsWith(this.root) || upTopic.charCodeAt(n) !== 0x2f || upTopic.charCodeAt(n + 2) !== 0x2f) return undefined;
    const space = upTopic[n + 1];
    const topic = upTopic.slice(n + 3);
    if (space === 't' && topic.charCodeAt(0) !== 0x24 && topic.length > 0) return topic;
    if (space === '$' && topic.charCodeAt(0) === 0x24) return topic;
    return undefined;
  }

  private presenceTopic(node: string): string {
    return `${this.root}/p/${level(node)}`;
  }
  private indexTopic(node: string, inc: string): string {
    return `${this.root}/i/${level(node)}/${inc}`;
  }
  private willTopic(node: string, inc: string, key: string): string {
    return `${this.root}/w/${level(node)}/${inc}/${level(key)}`;
  }
  private get markerTopic(): string {
    return `${this.root}/m/${level(this.nodeId)}`;
  }

  // ---- lifecycle ------------------------------------------------------------------------

  start(events: BusEvents): Promise<void> {
    if (this.client) return Promise.reject(new Error('mqtt bus: already started'));
    this.events = events;
    this.inc = randomBytes(8).toString('hex');
    const o = this.options;
    const client = mqtt.connect(this.url, {
      protocolVersion: 5,
      // Root in the id: two clusters on one broker may reuse node ids without taking over each other's connection.
      clientId: `topicast:${this.root}:${this.nodeId}`,
      clean: true,
      keepalive: o.keepaliveSec ?? 10,
      reconnectPeriod: o.reconnectPeriodMs ?? 1000,
      connectTimeout: o.connectTimeoutMs ?? 5000,
      resubscribe: false, // we resubscribe ourselves, with our Subscription Identifiers, before reporting up
      queueQoSZero: false,
      properties: { sessionExpiryInterval: 0, receiveMaximum: 65535 },
      will: { topic: this.presenceTopic(this.nodeId), payload: Buffer.alloc(0), qos: 1, retain: true },
    });
    this.client = client;
    client.on('message', (topic, payload, packet) => this.onMessage({ topic, payload, packet }));
    client.on('close', () => this.onConnectionLost('connection to the upstream MQTT broker closed'));
    client.on('error', (err) => {
      // Once per outage at warn (a reconnect attempt fails every reconnectPeriodMs while the broker is away).
      const first = !this.errorLogged;
      this.errorLogged = true;
      this.log?.[first ? 'warn' : 'debug']({ err, bus: 'mqtt', url: redact(o.url) }, 'upstream MQTT broker error');
    });
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        this.closed = true;
        client.end(true);
        reject(new BusUnavailableError(`mqtt bus: cannot reach ${redact(o.url)}: ${err.message}`));
      };
      client.once('error', fail);
      client.once('close', () => fail(new Error('connection closed before CONNACK')));
      client.on('connect', () => {
        this.counters.connects++;
        const gen = ++this.gen;
        if (this.counters.connects > 1) {
          // A new incarnation per connection: the old one's wills may be claimed meanwhile (see the note on top).
          this.oldIncs.add(this.inc);
          this.inc = randomBytes(8).toString('hex');
        }
        this.sync(client, gen).then(
          () => {
            if (!settled) {
              settled = true;
              client.off('error', fail);
              resolve();
            }
          },
          (err: unknown) => {
            if (!settled) return fail(err as Error); // e.g. a SUBSCRIBE refused by the broker's ACL: start() says so
            if (gen === this.gen) this.log?.warn({ err, bus: 'mqtt' }, 'upstream MQTT sync failed; retrying on the next connection');
          },
        );
      });
    });
  }

  /** After each CONNACK: marker route, presence, wills, membership and interest in place, then `up`. */
  private async sync(client: mqtt.MqttClient, gen: number): Promise<void> {
    this.presence.clear();
    this.index.clear();
    this.synced = false;
    await subscribeUpstream(client, this.markerTopic, MARKER_ID, false, 2);
    const retained = { qos: 1 as const, retain: true };
    const writes: Promise<unknown>[] = [
      client.publishAsync(this.presenceTopic(this.nodeId), this.inc, retained),
      client.publishAsync(this.indexTopic(this.nodeId, this.inc), '1', retained),
    ];
    this.willsPending.clear(); // the new incarnation gets exactly the current wills; later changes are pending again
    for (const [key, will] of this.wills) writes.push(client.publishAsync(this.willTopic(this.nodeId, this.inc, key), encodeWill(will), retained));
    await Promise.all(writes);
    await subscribeUpstream(client, `${this.root}/p/+`, PRESENCE_ID, true, 0);
    await subscribeUpstream(client, `${this.root}/i/+/+`, INDEX_ID, true, 0);
    await Promise.all([...this.held].map(([filter, id]) => this.subscribeUp(client, filter, id, 2)));
    await this.marker(client);
    // Wills changed while this sync ran: written now, until none is left (setWill does not publish before up).
    while (this.willsPending.size > 0 && gen === this.gen) {
      const keys = [...this.willsPending];
      this.willsPending.clear();
      await Promise.all(keys.map((key) => {
        const will = this.wills.get(key);
        return client.publishAsync(this.willTopic(this.nodeId, this.inc, key), will ? encodeWill(will) : '', retained);
      }));
    }
    if (gen !== this.gen || this.closed) return;
    this.synced = true;
    this.errorLogged = false;
    this.setState('up', 'connected to the upstream MQTT broker; interest in place');
    for (const w of this.upWaiters.splice(0)) w();
    for (const old of this.oldIncs) this.enqueueClaim(this.nodeId, old, false);
    this.evaluateClaims();
  }

  private onConnectionLost(reason: string): void {
    this.synced = false;
    for (const t of this.graceTimers.values()) clearTimeout(t);
    this.graceTimers.clear();
    this.graceOver.clear();
    const err = new BusUnavailableError(`mqtt bus: ${reason}`);
    for (const m of this.markers.values()) m.reject(err);
    this.markers.clear();
    if (!this.closed) this.setState('down', reason);
  }

  private setState(state: BusState, reason: string): void {
    if (this.current === state) return;
    this.current = state;
    if (!this.closed) this.events?.state(state, reason);
  }

  private whenUp(): Promise<void> {
    if (this.current === 'up' || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.upWaiters.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const client = this.client;
    if (client && this.current === 'up') {
      // Clear this incarnation's wills, then its index entry and presence: nothing is left to claim.
      const retained = { qos: 1 as const, retain: true };
      try {
        await Promise.all([...this.wills.keys()].map((key) => client.publishAsync(this.willTopic(this.nodeId, this.inc, key), '', retained)));
        await client.publishAsync(this.indexTopic(this.nodeId, this.inc), '', retained);
        await client.publishAsync(this.presenceTopic(this.nodeId), '', retained);
      } catch (err) {
        this.log?.warn({ err, bus: 'mqtt' }, 'mqtt bus: clearing wills on close failed; the designated live node will publish them');
      }
    }
    this.closed = true;
    this.shutdown();
    // DISCONNECT 0x00: the broker drops the session (expiry 0) and does not publish the presence will.
    if (client) await client.endAsync().catch(() => client.end(true));
  }

  /**
   * Test hook: ends the connection as a crash would (no DISCONNECT, nothing cleared), so the
   * broker publishes the presence will and the wills are left for a survivor.
   * @internal
   */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.shutdown();
    this.client?.end(true);
  }

  private shutdown(): void {
    this.current = 'down';
    for (const t of this.graceTimers.values()) clearTimeout(t);
    this.graceTimers.clear();
    const err = new BusUnavailableError('mqtt bus closed');
    for (const m of this.markers.values()) m.reject(err);
    this.markers.clear();
    for (const w of this.upWaiters.splice(0)) w();
  }

  // ---- interest ---------------------------------------------------------------------------

  /** Runs `fn` after every earlier operation on the same filter (subscribe, unsubscribe, snapshot). */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.then(() => undefined, () => undefined);
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return next;
  }

  /** A Subscription Identifier not in use; identifiers only repeat after 268 million subscriptions. */
  private allocId(): number {
    const used = this.idsWrapped ? new Set([...this.held.values(), ...this.collectors.keys()]) : undefined;
    for (;;) {
      const id = this.nextId;
      if (id >= MAX_ID) this.idsWrapped = true;
      this.nextId = id >= MAX_ID ? FIRST_ID : id + 1;
      if (!used?.has(id)) return id;
    }
  }

  private subscribeUp(client: mqtt.MqttClient, filter: string, id: number, rh: 0 | 2): Promise<void> {
    return subscribeUpstream(client, this.up(filter), id, true, rh);
  }

  subscribe(filter: string): Promise<void> {
    return this.serial(filter, async () => {
      if (this.closed || this.held.has(filter)) return;
      const id = this.allocId();
      this.held.set(filter, id);
      this.interest.add(filter, filter, id);
      for (;;) {
        await this.whenUp();
        const client = this.client;
        if (this.closed || !client || !this.held.has(filter)) return;
        try {
          await this.subscribeUp(client, filter, id, 2);
          return;
        } catch (err) {
          if (this.current === 'up') throw err; // refused by the broker, not an outage
          // Lost with the connection: the next sync subscribes every held filter; wait for it.
        }
      }
    });
  }

  unsubscribe(filter: string): Promise<void> {
    return this.serial(filter, async () => {
      if (!this.held.delete(filter)) return;
      this.interest.remove(filter, filter);
      this.forgetRetained();
      const client = this.client;
      // While down there is nothing to undo: the next connection starts clean and subscribes only held filters.
      if (client && this.current === 'up') await client.unsubscribeAsync(this.up(filter)).catch((err: unknown) => {
        if (this.current === 'up') throw err;
      });
    });
  }

  /** Drops per-topic seq state of topics no held filter matches any more. */
  private forgetRetained(): void {
    for (const topic of this.lastRetained.keys()) {
      let held = false;
      this.interest.match(topic, () => (held = true));
      if (!held) this.lastRetained.delete(topic);
    }
  }

  // ---- publish ----------------------------------------------------------------------------

  /** Resolves on PUBACK with this write's seq (its stamp) when retained, else 0. */
  publish(message: BusMessage): Promise<number> {
    const client = this.client;
    if (this.current !== 'up' || !client) return Promise.reject(new BusUnavailableError(`mqtt bus is ${this.closed ? 'closed' : 'down'} (node ${this.nodeId})`));
    let stamp = 0;
    if (message.retain) {
      stamp = Math.max(Date.now() * SEQ_PER_MS, this.lastStamp + 1, (this.lastRetained.get(message.topic)?.seq ?? 0) + 1);
      this.lastStamp = stamp;
      if (this.isHeld(message.topic)) this.lastRetained.set(message.topic, { origin: this.nodeId, stamp, seq: stamp });
    }
    const header = `${message.qos}${message.retain ? 'r' : 'n'}|${stamp}|${this.nodeId}`;
    return client.publishAsync(this.up(message.topic), toBuffer(message.payload), {
      qos: 1,
      retain: message.retain,
      properties: upProperties(message.properties, header),
    }).then(
      () => stamp,
      (err: Error) => {
        throw this.current === 'up' ? err : new BusUnavailableError(`mqtt bus: ${err.message}`);
      },
    );
  }

  private isHeld(topic: string): boolean {
    let held = false;
    this.interest.match(topic, () => (held = true));
    return held;
  }

  // ---- receive ----------------------------------------------------------------------------

  private onMessage(raw: Raw): void {
    if (this.closed) return;
    const sid = raw.packet.properties?.subscriptionIdentifier;
    const ids = sid === undefined ? [] : Array.isArray(sid) ? sid : [sid];
    if (ids.includes(MARKER_ID)) {
      const token = raw.payload.toString();
      this.markers.get(token)?.resolve();
      this.markers.delete(token);
      return;
    }
    if (ids.includes(PRESENCE_ID) || ids.includes(INDEX_ID)) return this.onMembership(raw);
    if (raw.packet.retain) {
      // RETAIN=1 with Retain As Published off: sent because of a SUBSCRIBE, i.e. a snapshot.
      for (const id of ids) this.collectors.get(id)?.(raw);
      return;
    }
    const topic = this.down(raw.topic);
    if (topic === undefined) return; // not a Topicast topic (e.g. our own internals seen through a user filter: impossible by layout)
    let first = Infinity;
    this.interest.match(topic, (_filter, id) => {
      if (id < first) first = id;
    });
    if (!ids.includes(first)) {
      this.counters.duplicatesDropped++;
      return;
    }
    this.events!.message(this.toBusMessage(topic, raw, true));
  }

  private toBusMessage(topic: string, raw: Raw, record: boolean): BusMessage {
    const props = raw.packet.properties;
    const user = props?.userProperties as Record<string, string | string[]> | undefined;
    const headerValue = user?.[HEADER];
    const header = Array.isArray(headerValue) ? headerValue[0] : headerValue;
    let qos: 0 | 1 | 2 = raw.packet.qos;
    let retain = false;
    let stamp = 0;
    let origin = '';
    const m = header === undefined ? null : /^([012])([rn])\|(\d+)\|(.*)$/s.exec(header);
    if (m) {
      qos = Number(m[1]) as 0 | 1 | 2;
      retain = m[2] === 'r' || raw.packet.retain;
      stamp = Number(m[3]);
      origin = m[4]!;
    } else {
      this.counters.foreignMessages++;
      retain = raw.packet.retain;
    }
    const seq = retain ? this.observeRetained(topic, origin, stamp, record) : 0;
    return { topic, payload: raw.payload, retain, qos, properties: downProperties(props, user, headerValue), origin, seq };
  }

  /** The seq of a retained value received in broker order (see the note on top). */
  private observeRetained(topic: string, origin: string, stamp: number, record: boolean): number {
    const last = this.lastRetained.get(topic);
    if (last && last.origin === origin && last.stamp === stamp) return last.seq;
    const seq = Math.max(stamp, (last?.seq ?? 0) + 1);
    if (record && this.isHeld(topic)) this.lastRetained.set(topic, { origin, stamp, seq });
    return seq;
  }

  // ---- retained snapshots -----------------------------------------------------------------

  retained(filter: string): Promise<RetainedEntry[]> {
    if (this.current !== 'up') return Promise.reject(new BusUnavailableError(`mqtt bus is down (node ${this.nodeId})`));
    return this.serial(filter, async () => {
      const entries = new Map<string, RetainedEntry>();
      const heldId = this.held.get(filter);
      await this.snapshot(this.up(filter), heldId, (raw) => {
        const topic = this.down(raw.topic);
        if (topic === undefined || raw.payload.length === 0) return;
        const m = this.toBusMessage(topic, raw, heldId !== undefined);
        entries.set(topic, { topic, payload: m.payload, properties: m.properties, seq: m.seq });
      });
      return [...entries.values()];
    });
  }

  /**
   * The retained messages matching `upFilter`, then the marker. With `heldId` the held
   * subscription is re-made with Retain Handling 0 (same options otherwise); without, a
   * temporary subscription is made and removed.
   */
  private async snapshot(upFilter: string, heldId: number | undefined, collect: (raw: Raw) => void): Promise<void> {
    const client = this.client;
    if (!client || this.current !== 'up') throw new BusUnavailableError(`mqtt bus is down (node ${this.nodeId})`);
    const id = heldId ?? this.allocId();
    this.collectors.set(id, collect);
    try {
      await subscribeUpstream(client, upFilter, id, true, 0);
      await this.marker(client);
    } catch (err) {
      throw this.current === 'up' ? err : new BusUnavailableError(`mqtt bus: snapshot of ${upFilter} interrupted: ${(err as Error).message}`);
    } finally {
      this.collectors.delete(id);
      if (heldId === undefined && this.current === 'up') await client.unsubscribeAsync(upFilter).catch((err: unknown) => this.log?.warn({ err, bus: 'mqtt', filter: upFilter }, 'mqtt bus: removing a snapshot subscription failed'));
    }
  }

  /** Publishes a marker to this node's marker topic and waits for it to come back (see the note on top). */
  private async marker(client: mqtt.MqttClient): Promise<void> {
    const token = `${this.inc}.${++this.markerCount}`;
    const arrived = new Promise<void>((resolve, reject) => this.markers.set(token, { resolve, reject }));
    // Both at once: a lost connection rejects `arrived` at once, while the PUBLISH would wait for the next one.
    await Promise.all([client.publishAsync(this.markerTopic, token, { qos: 1 }), arrived]);
  }

  // ---- wills ------------------------------------------------------------------------------

  setWill(key: string, will: BusMessage | undefined): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (will) this.wills.set(key, will);
    else if (!this.wills.delete(key)) return Promise.resolve();
    const client = this.client;
    if (!client || this.current !== 'up') {
      // Kept: the next sync registers exactly the current wills under its new incarnation.
      this.willsPending.add(key);
      return Promise.resolve();
    }
    return client.publishAsync(this.willTopic(this.nodeId, this.inc, key), will ? encodeWill(will) : '', { qos: 1, retain: true }).then(
      () => undefined,
      (err: Error) => {
        // Lost with the connection: the next sync writes the current wills under a new incarnation.
        if (this.current === 'up') throw err;
      },
    );
  }

  private onMembership(raw: Raw): void {
    const rest = raw.topic.slice(this.root.length + 1).split('/');
    const value = raw.payload.toString();
    if (rest[0] === 'p' && rest.length === 2) {
      const node = unlevel(rest[1]!);
      if (value) this.presence.set(node, value);
      else this.presence.delete(node);
    } else if (rest[0] === 'i' && rest.length === 3) {
      const node = unlevel(rest[1]!);
      const incs = this.index.get(node) ?? new Set<string>();
      if (value) incs.add(rest[2]!);
      else incs.delete(rest[2]!);
      if (incs.size > 0) this.index.set(node, incs);
      else this.index.delete(node);
    } else return;
    this.evaluateClaims();
  }

  /**
   * Every incarnation whose node has not shown it for `willGraceMs` is claimed by the live node
   * cluster/will-claim.ts designates for that node (the same rule as the NATS bus), from the
   * presence every node sees; a membership change re-runs this, so a designated node that died
   * hands its share to another.
   */
  private evaluateClaims(): void {
    if (!this.synced || this.closed || this.current !== 'up') return;
    const live = [this.nodeId, ...this.presence.keys()];
    // A node alone claims its own earlier process's incarnations; otherwise the rule decides, for every node alike.
    const mine = (node: string): boolean => (live.some((n) => n !== node) ? willClaimer(node, live) === this.nodeId : node === this.nodeId);
    for (const [key, timer] of this.graceTimers) {
      const [node, inc] = key.split('\u0000') as [string, string];
      if (!this.index.get(node)?.has(inc) || !mine(node)) {
        clearTimeout(timer);
        this.graceTimers.delete(key);
      }
    }
    for (const key of this.graceOver) {
      const [node, inc] = key.split('\u0000') as [string, string];
      if (!this.index.get(node)?.has(inc) || !mine(node)) this.graceOver.delete(key); // cleared by its owner meanwhile, or another node's to claim
    }
    for (const [node, incs] of this.index) {
      if (!mine(node)) continue;
      for (const inc of incs) {
        const key = `${node}\u0000${inc}`;
        if ((node === this.nodeId && (inc === this.inc || this.oldIncs.has(inc))) || this.claiming.has(key)) continue;
        if (this.presence.get(node) === inc) {
          clearTimeout(this.graceTimers.get(key));
          this.graceTimers.delete(key);
          this.graceOver.delete(key);
        } else if (this.graceOver.has(key)) {
          this.graceOver.delete(key);
          this.enqueueClaim(node, inc, true);
        } else if (!this.graceTimers.has(key)) {
          this.graceTimers.set(key, setTimeout(() => {
            this.graceTimers.delete(key);
            this.graceOver.add(key);
            this.evaluateClaims();
          }, this.willGraceMs));
        }
      }
    }
  }

  /**
   * Collects the wills of (node, inc), hands each to `orphanWill` when `publish` (a dead node's)
   * or just clears it (this process's own earlier incarnation), then clears the index entry.
   */
  private enqueueClaim(node: string, inc: string, publish: boolean): void {
    const key = `${node}\u0000${inc}`;
    if (this.claiming.has(key)) return;
    this.claiming.add(key);
    this.claimChain = this.claimChain.then(async () => {
      try {
        const client = this.client;
        if (!client || this.current !== 'up') return; // re-evaluated after the next sync
        const found: Raw[] = [];
        await this.snapshot(`${this.root}/w/${level(node)}/${inc}/+`, undefined, (raw) => found.push(raw));
        const retained = { qos: 1 as const, retain: true };
        for (const raw of found) {
          if (raw.payload.length === 0) continue;
          if (publish) {
            const willKey = unlevel(raw.topic.slice(raw.topic.lastIndexOf('/') + 1));
            let message: BusMessage | undefined;
            try {
              message = decodeWill(raw.payload, node);
            } catch (err) {
              this.counters.claimErrors++;
              this.log?.error({ err, bus: 'mqtt', topic: raw.topic }, 'mqtt bus: an orphan will could not be decoded; cleared without publishing');
            }
            if (message) {
              this.counters.willsClaimed++;
              this.events!.orphanWill({ owner: node, key: willKey, message });
            }
          }
          await client.publishAsync(raw.topic, '', retained);
        }
        await client.publishAsync(this.indexTopic(node, inc), '', retained);
        if (node === this.nodeId) this.oldIncs.delete(inc);
        const incs = this.index.get(node);
        incs?.delete(inc);
        if (incs?.size === 0) this.index.delete(node);
      } catch (err) {
        this.counters.claimErrors++;
        this.log?.warn({ err, bus: 'mqtt', node, inc }, 'mqtt bus: claiming wills failed; retried on the next membership change or reconnect');
      } finally {
        this.claiming.delete(key);
      }
    });
  }
}

/**
 * SUBSCRIBE at QoS 1 (the QoS of every upstream publish: one FIFO per connection), Retain As
 * Published off (see the note on top), rejecting when the broker refuses the filter (e.g. its ACL).
 */
async function subscribeUpstream(client: mqtt.MqttClient, filter: string, id: number, noLocal: boolean, rh: 0 | 2): Promise<void> {
  const granted = await client.subscribeAsync(filter, { qos: 1, nl: noLocal, rap: false, rh, properties: { subscriptionIdentifier: id } });
  const refused = granted.find((g) => g.qos >= 0x80);
  if (refused) throw new Error(`the upstream broker refused SUBSCRIBE ${filter} (reason 0x${refused.qos.toString(16)})`);
}

function upProperties(p: MessageProperties | undefined, header: string): mqtt.IClientPublishOptions['properties'] {
  const user = p?.userProperties;
  const userProperties: Record<string, string | string[]> = { [HEADER]: header };
  if (user) {
    for (const [k, v] of Object.entries(user)) {
      // A user property named like ours follows ours; the receiver takes the first value.
      userProperties[k] = k === HEADER ? [header, ...(Array.isArray(v) ? v : [v])] : v;
    }
  }
  const out: NonNullable<mqtt.IClientPublishOptions['properties']> = { userProperties };
  if (!p) return out;
  if (p.payloadFormatIndicator) out.payloadFormatIndicator = true;
  if (p.contentType !== undefined) out.contentType = p.contentType;
  if (p.responseTopic !== undefined) out.responseTopic = p.responseTopic;
  if (p.correlationData !== undefined) out.correlationData = toBuffer(p.correlationData);
  // The broker counts the interval down while it holds the message (MQTT 5 §3.3.2.3.3).
  if (p.expiresAt !== undefined) out.messageExpiryInterval = Math.max(1, Math.ceil((p.expiresAt - Date.now()) / 1000));
  return out;
}

function downProperties(
  props: mqtt.IPublishPacket['properties'],
  user: Record<string, string | string[]> | undefined,
  headerValue: string | string[] | undefined,
): MessageProperties | undefined {
  if (!props) return undefined;
  const out: MessageProperties = {};
  let any = false;
  if (props.payloadFormatIndicator) (out.payloadFormatIndicator = true), (any = true);
  if (props.contentType !== undefined) (out.contentType = props.contentType), (any = true);
  if (props.responseTopic !== undefined) (out.responseTopic = props.responseTopic), (any = true);
  if (props.correlationData !== undefined) (out.correlationData = new Uint8Array(props.correlationData)), (any = true);
  if (props.messageExpiryInterval !== undefined) (out.expiresAt = Date.now() + props.messageExpiryInterval * 1000), (any = true);
  if (user) {
    const rest: Record<string, string | string[]> = {};
    let n = 0;
    for (const [k, v] of Object.entries(user)) {
      if (k !== HEADER) {
        rest[k] = v;
        n++;
      } else if (Array.isArray(headerValue) && headerValue.length > 1) {
        rest[k] = headerValue.length === 2 ? headerValue[1]! : headerValue.slice(1);
        n++;
      }
    }
    if (n > 0) (out.userProperties = rest), (any = true);
  }
  return any ? out : undefined;
}

function encodeWill(will: BusMessage): Buffer {
  const stored: StoredWill = { t: will.topic, p: will.payload, r: will.retain, q: will.qos };
  if (will.properties) stored.pr = will.properties;
  return pack(stored);
}

function decodeWill(bytes: Buffer, owner: string): BusMessage {
  const w = unpack(bytes) as StoredWill;
  if (!w || typeof w.t !== 'string' || !(w.p instanceof Uint8Array)) throw new Error('not a stored will');
  const properties = w.pr ? { ...w.pr, ...(w.pr.correlationData ? { correlationData: new Uint8Array(w.pr.correlationData) } : {}) } : undefined;
  return { topic: w.t, payload: new Uint8Array(w.p), retain: w.r === true, qos: w.q === 1 || w.q === 2 ? w.q : 0, properties, origin: owner, seq: 0 };
}

/** The URL without its password, for logs. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
}
