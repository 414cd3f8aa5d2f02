/**
 * An in-memory bus: one hub object plays the engine for several nodes in one process
 * (tests of the bridge and of the bus contract; never exposed as a setting).
 *
 * The hub holds what an engine holds: interest per node (a subscription trie), retained
 * values with a global sequence, and wills per node. `kill(nodeId)` simulates a crash (the
 * node's wills become orphans and one surviving node claims each, once); `setDown(true)`
 * simulates an outage seen by every node (publish and retained reject, state `down`).
 *
 * Invariants (the contract of core/bus.ts)
 * - Delivery is asynchronous (a microtask per receiving node batch, FIFO), so callers cannot
 *   rely on a publish being seen synchronously, and order per node per topic holds.
 * - A message reaches a node once however many of its filters match (trie dedupe by stamp).
 * - Interest and wills survive an outage: the hub keeps them, as a reconnecting adapter would.
 * Cost: one trie match per publish; retained snapshot proportional to the matching topics.
 */
import type { Bus, BusEvents, BusMessage, BusState, OrphanWill, RetainedEntry } from '../core/bus.js';
import { BusUnavailableError } from '../core/bus.js';
import { createMessage } from '../core/message.js';
import { MemoryRetainedStore } from '../core/retained.js';
import { SubscriptionTrie } from '../core/trie.js';

export class MemoryBusHub {
  private readonly nodes = new Map<string, MemoryBus>();
  private readonly interest = new SubscriptionTrie<MemoryBus, string>();
  /** Topic index of retained values; `retainedSeq` holds their sequence numbers. */
  private readonly retainedStore = new MemoryRetainedStore();
  private readonly retainedSeq = new Map<string, RetainedEntry>();
  private seq = 0;
  private down = false;
  /** Wills of dead nodes waiting for a live node to claim them. */
  private readonly orphans: OrphanWill[] = [];
  private deliveryStamp = 0;
  private readonly stamps = new Map<MemoryBus, number>();

  get isDown(): boolean {
    return this.down;
  }

  /** Makes a node endpoint; ids must be unique among live nodes. */
  createNode(nodeId: string): MemoryBus {
    if (this.nodes.has(nodeId)) throw new Error(`memory bus: node id ${nodeId} already in use`);
    const bus = new MemoryBus(this, nodeId);
    this.nodes.set(nodeId, bus);
    return bus;
  }

  /** Simulates a crash of a node: no clean close; its wills are claimed by one survivor each. */
  kill(nodeId: string): void {
    const bus = this.nodes.get(nodeId);
    if (!bus) throw new Error(`memory bus: no node ${nodeId}`);
    this.nodes.delete(nodeId);
    for (const filter of bus.held) this.interest.remove(filter, bus);
    bus.dead = true;
    for (const [key, message] of bus.wills) this.orphans.push({ owner: nodeId, key, message });
    bus.wills.clear();
    this.handOrphans();
  }

  /** Simulates the engine becoming unreachable (true) or reachable again (false) for every node. */
  setDown(down: boolean): void {
    if (this.down === down) return;
    this.down = down;
    for (const bus of this.nodes.values()) bus.setState(down ? 'down' : 'up', down ? 'memory bus set down' : 'memory bus back up');
    if (!down) this.handOrphans();
  }

  /** @internal */ subscribe(bus: MemoryBus, filter: string): void {
    this.interest.add(filter, bus, filter);
  }

  /** @internal */ unsubscribe(bus: MemoryBus, filter: string): void {
    this.interest.remove(filter, bus);
  }

  /** @internal */ publish(from: MemoryBus, message: BusMessage): number {
    let seq = 0;
    if (message.retain) {
      seq = ++this.seq;
      if (message.payload.length === 0) this.retainedSeq.delete(message.topic);
      else this.retainedSeq.set(message.topic, { topic: message.topic, payload: message.payload, properties: message.properties, seq, qos: message.qos });
      this.retainedStore.set(createMessage(message.topic, message.payload, true));
    }
    const sent: BusMessage = { ...message, origin: from.nodeId, seq };
    const stamp = ++this.deliveryStamp;
    const stamps = this.stamps;
    this.interest.match(message.topic, function memoryBusRoute(to) {
      if (to === from || stamps.get(to) === stamp) return; // no echo; once per node
      stamps.set(to, stamp);
      to.enqueue(sent);
    });
    return seq;
  }

  /** @internal */ retained(filter: string): RetainedEntry[] {
    return this.retainedStore.match(filter).map((topic) => this.retainedSeq.get(topic)!);
  }

  /** @internal */ forget(bus: MemoryBus): void {
    for (const filter of bus.held) this.interest.remove(filter, bus);
    this.stamps.delete(bus);
    this.nodes.delete(bus.nodeId);
  }

  private handOrphans(): void {
    if (this.down) return;
    while (this.orphans.length > 0) {
      const claimer = [...this.nodes.values()].find((b) => b.started && !b.dead);
      if (!claimer) return; // kept until a live node starts, as an engine keeps them until one claims
      claimer.claim(this.orphans.shift()!);
    }
  }

  /** @internal */ reorphan(will: OrphanWill): void {
    this.orphans.push(will);
    this.handOrphans();
  }

  /** @internal */ started(): void {
    this.handOrphans();
  }
}

/** One node's endpoint on a MemoryBusHub. */
export class MemoryBus implements Bus {
  readonly kind = 'memory';
  /** @internal */ readonly held = new Set<string>();
  /** @internal */ readonly wills = new Map<string, BusMessage>();
  /** @internal */ dead = false;
  /** @internal */ started = false;
  private events: BusEvents | undefined;
  private current: BusState;
  private queue: BusMessage[] = [];
  private flushing = false;

  constructor(private readonly hub: MemoryBusHub, readonly nodeId: string) {
    this.current = hub.isDown ? 'down' : 'up';
  }

  get state(): BusState {
    return this.dead ? 'down' : this.current;
  }

  start(events: BusEvents): Promise<void> {
    if (this.dead) return Promise.reject(new BusUnavailableError(`memory bus node ${this.nodeId} was killed`));
    if (this.hub.isDown) return Promise.reject(new BusUnavailableError('memory bus is down'));
    this.events = events;
    this.started = true;
    this.hub.started();
    return Promise.resolve();
  }

  subscribe(filter: string): Promise<void> {
    if (!this.dead && !this.held.has(filter)) {
      this.held.add(filter);
      this.hub.subscribe(this, filter);
    }
    return Promise.resolve();
  }

  unsubscribe(filter: string): Promise<void> {
    if (this.held.delete(filter)) this.hub.unsubscribe(this, filter);
    return Promise.resolve();
  }

  publish(message: BusMessage): Promise<number> {
    if (this.dead || this.hub.isDown) return Promise.reject(new BusUnavailableError(`memory bus is down (node ${this.nodeId})`));
    return Promise.resolve(this.hub.publish(this, message));
  }

  retained(filter: string): Promise<RetainedEntry[]> {
    if (this.dead || this.hub.isDown) return Promise.reject(new BusUnavailableError(`memory bus is down (node ${this.nodeId})`));
    const entries = this.hub.retained(filter);
    // Resolved a tick later, like an engine round trip: live messages may overtake the snapshot.
    return new Promise((resolve) => setImmediate(resolve, entries));
  }

  setWill(key: string, will: BusMessage | undefined): Promise<void> {
    if (this.dead) return Promise.resolve();
    if (will) this.wills.set(key, will);
    else this.wills.delete(key);
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.dead) return Promise.resolve();
    this.wills.clear();
    this.hub.forget(this);
    this.held.clear();
    this.dead = true;
    this.queue = [];
    return Promise.resolve();
  }

  /** @internal */ setState(state: BusState, reason: string): void {
    if (this.current === state) return;
    this.current = state;
    if (this.started && !this.dead) this.events!.state(state, reason);
  }

  /** @internal */ enqueue(message: BusMessage): void {
    if (!this.started || this.dead) return;
    this.queue.push(message);
    if (this.flushing) return;
    this.flushing = true;
    queueMicrotask(() => this.flush());
  }

  /** @internal */ claim(will: OrphanWill): void {
    queueMicrotask(() => {
      if (this.dead) this.hub.reorphan(will); // died before seeing it: another survivor claims it
      else this.events!.orphanWill(will);
    });
  }

  private flush(): void {
    this.flushing = false;
    const batch = this.queue;
    this.queue = [];
    if (this.dead) return;
    for (const m of batch) this.events!.message(m);
  }
}
