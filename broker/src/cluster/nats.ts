/**
 * The NATS implementation of `Bus` (core/bus.ts): Topicast nodes share topics through a NATS
 * cluster (core NATS for live messages, JetStream for retained values, a JetStream KV bucket for
 * wills and node liveness). The contract is on the interface; this note says how it is kept, and
 * each concern lives in its own room under cluster/nats/, each with its own note:
 *
 *   options.ts    settings, defaults, counters, the `bus` URL, error predicates
 *   link.ts       connection and health: the state (`down`/`degraded`/`up`), JetStream set-up, flush
 *   interest.ts   held subjects, the interest sync, receiving live messages once
 *   live.ts       live publishes: batching per event-loop turn, per-topic order behind retained stores
 *   retained.ts   the retained stream: stores (with their seq) and snapshots
 *   wills.ts      heartbeats, liveness, wills and their claims (cluster/will-claim.ts)
 *   history.ts    the history stream every node shares (`shareHistory`, cluster/DESIGN.md)
 *   shares.ts     shared subscriptions over the cluster (queue groups on a second connection)
 *
 * This file composes them and owns the one periodic tick.
 *
 * Subjects (cluster/subject.ts): live messages on `<prefix>.m.<root>.<levels>`, retained values
 * in the stream `<PREFIX>_RETAINED` on `<prefix>.r.<root>.<levels>`. Every message carries the
 * envelope of cluster/nats-envelope.ts (flags, MQTT properties, origin, run, sequences).
 *
 * Why retained merges are never older-after-newer: the stream orders all writes to a subject, so
 * for one topic a larger seq is the newer value, whichever node wrote it; receivers see retained
 * values only through the live path (with the seq, live.ts) and the snapshot (with the seq,
 * retained.ts), and the bridge keeps, per topic, the largest seq shown. A joiner subscribes
 * first, then asks for the snapshot: anything stored after the snapshot's moment arrives live with
 * a larger seq; anything older arriving late is dropped by the seq comparison. Crash between store
 * and live publish: the value is in the snapshot but not seen live, like any message lost with its node.
 *
 * Interest cost: one request and N-1 small replies per new filter (the bridge lingers before
 * removal, so flapping filters do not repeat it). The connection is `noEcho`, so a node never
 * receives its own publishes.
 */
import type { Bus, BusEvents, BusMessage, BusState, RetainedEntry, SessionLog, SharedHistory, SharedHistoryOptions } from '../core/bus.js';
import { NatsHistory } from './nats/history.js';
import { NatsInterest } from './nats/interest.js';
import { NatsLink } from './nats/link.js';
import { NatsLive } from './nats/live.js';
import { natsBusOptionsFromUrl, type NatsBusCounters, type NatsBusOptions } from './nats/options.js';
import { NatsRetained } from './nats/retained.js';
import { NatsSessions } from './nats/sessions.js';
import { NatsShares } from './nats/shares.js';
import { NatsWills } from './nats/wills.js';

export { natsBusOptionsFromUrl, parseNatsServers, type BusLog, type NatsBusCounters, type NatsBusOptions } from './nats/options.js';

class NatsBusImpl implements Bus {
  readonly kind = 'nats';
  readonly nodeId: string;
  readonly counters: NatsBusCounters;
  private readonly link: NatsLink;
  private readonly interest: NatsInterest;
  private readonly live: NatsLive;
  private readonly retainedRoom: NatsRetained;
  private readonly wills: NatsWills;
  private readonly shares: NatsShares;
  private historyRoom: NatsHistory | undefined;
  private readonly sessions: NatsSessions;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: NatsBusOptions) {
    this.link = new NatsLink(options);
    this.nodeId = this.link.nodeId;
    this.counters = this.link.counters;
    // Set-up steps run in construction order: the retained stream (which fixes the replicas) before the buckets.
    this.retainedRoom = new NatsRetained(this.link);
    this.wills = new NatsWills(this.link);
    this.interest = new NatsInterest(this.link, () => this.wills.liveOwners());
    this.live = new NatsLive(this.link, this.retainedRoom.store);
    this.shares = new NatsShares(this.link, () => this.interest.sync());
    this.sessions = new NatsSessions(this.link);
    this.wills.onGone = (owner, lastSeenMs) => this.sessions.adoptFrom(owner, lastSeenMs);
    this.wills.onExpired = () => this.sessions.recheck();
  }

  get state(): BusState {
    return this.link.state;
  }

  async start(events: BusEvents): Promise<void> {
    await this.link.connect(events);
    this.interest.start(events);
    this.wills.start(events);
    this.shares.start(events);
    await this.link.settle();
    this.timer = setInterval(() => this.tick(), this.link.o.heartbeatMs);
    this.timer.unref();
  }

  private tick(): void {
    this.interest.tick(Date.now());
    void this.wills.tick();
  }

  subscribe(filter: string): Promise<void> {
    return this.interest.subscribe(filter);
  }

  unsubscribe(filter: string): Promise<void> {
    return this.interest.unsubscribe(filter);
  }

  publish(message: BusMessage): Promise<number> {
    return this.live.publish(message);
  }

  retained(filter: string): Promise<RetainedEntry[]> {
    return this.retainedRoom.snapshot(filter);
  }

  setWill(key: string, will: BusMessage | undefined): Promise<void> {
    return this.wills.setWill(key, will);
  }

  subscribeShared(share: string, filter: string): Promise<void> {
    return this.shares.subscribe(share, filter);
  }

  unsubscribeShared(share: string, filter: string): Promise<void> {
    return this.shares.unsubscribe(share, filter);
  }

  async shareHistory(options: SharedHistoryOptions): Promise<SharedHistory> {
    if (this.historyRoom) throw new Error('bus: the history is shared already');
    const room = new NatsHistory(this.link, options);
    await room.start();
    this.historyRoom = room;
    return room;
  }

  sessionLog(): SessionLog {
    return this.sessions;
  }

  /**
   * Drops the connection without clearing wills or leaving, as a crash would (the other nodes
   * publish this node's wills after `nodeTimeoutMs`). For tests and for a process that must exit now.
   */
  async closeAbruptly(): Promise<void> {
    clearInterval(this.timer);
    this.historyRoom?.close();
    this.sessions.close();
    await this.shares.close();
    await this.link.closeAbruptly();
  }

  async close(): Promise<void> {
    if (this.link.closing) return;
    clearInterval(this.timer);
    this.historyRoom?.close();
    this.link.stopTimers();
    await this.shares.close();
    const nc = this.link.nc;
    if (!nc || nc.isClosed()) {
      this.sessions.close();
      return;
    }
    await this.wills.clear();
    // The heartbeat key is gone: the survivors adopt the persistent sessions held here, claiming
    // them from this node while it still queues for them (a node timeout plus a heartbeat at most).
    if (this.wills.liveOwners().length > 0) await this.sessions.handOver(this.link.o.nodeTimeoutMs + this.link.o.heartbeatMs);
    this.sessions.close();
    await this.live.settle(); // messages queued this turn go before the connection drains
    await this.link.drain();
  }
}

/** A Bus over NATS (see the design note above). `start(events)` connects. */
export type NatsBus = Bus & { readonly counters: NatsBusCounters; closeAbruptly(): Promise<void> };

export function createNatsBus(options: NatsBusOptions): NatsBus {
  // The `bus` setting arrives whole (cluster/index.ts): its query string carries NATS-only tuning.
  if (typeof options.servers === 'string' && options.servers.includes('?')) {
    const fromUrl = natsBusOptionsFromUrl(options.servers, options.nodeId);
    const explicit = Object.fromEntries(Object.entries(options).filter(([k, v]) => v !== undefined && k !== 'servers'));
    options = { ...fromUrl, ...explicit } as NatsBusOptions;
  }
  return new NatsBusImpl(options);
}
