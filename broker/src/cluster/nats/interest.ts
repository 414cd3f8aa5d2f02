/**
 * The NATS bus's interest room (design note: cluster/nats.ts): which live subjects this node
 * holds, the interest sync that makes `subscribe` resolve only once every other live node's
 * server knows of it, and the receiving side of live messages (decode, once per message).
 *
 * Once with overlapping filters: NATS delivers a message once per matching subscription of a
 * connection, and one publisher's messages reach a subscriber connection in publish order; every
 * live message carries (run, node sequence), and a message whose number is not above the last one
 * seen from its run is dropped. Cost: one Map lookup per message; runs unseen for
 * `PEER_FORGET_MS` are forgotten.
 */
import { createInbox, type Msg, type NatsError, type Subscription } from 'nats';
import type { BusEvents } from '../../core/bus.js';
import { decodeEnvelope } from '../nats-envelope.js';
import { filterToSubjects, subjectToTopic } from '../subject.js';
import type { NatsLink } from './link.js';
import { PEER_FORGET_MS, remembered } from './options.js';

export class NatsInterest {
  private readonly held = new Map<string, Subscription[]>();
  /** Last node sequence seen per peer run (dedupe), with when (ms, coarse). */
  private readonly peers = new Map<number, { seq: number; seenMs: number }>();
  /** Topic per recent live subject received (bounded, oldest first out). */
  private readonly liveTopics = new Map<string, string>();
  private nowMs = Date.now();
  private syncing: Promise<void> | undefined;
  private syncNext: Promise<void> | undefined;
  private events: BusEvents | undefined;

  /** @param liveOwners the other owners (node runs) heard from within the node timeout */
  constructor(
    private readonly link: NatsLink,
    private readonly liveOwners: () => Iterable<string>,
  ) {}

  /** Answers other nodes' interest syncs (see `sync`) and starts handing live messages to `events`. */
  start(events: BusEvents): void {
    this.events = events;
    const me = new TextEncoder().encode(this.link.owner);
    this.link.requireConnection().subscribe(this.link.names.sync, {
      callback: (err, msg) => {
        if (!err) msg.respond(me);
      },
    });
  }

  /** Called by the bus's periodic tick: forgets runs not heard from for a long time. */
  tick(nowMs: number): void {
    this.nowMs = nowMs;
    for (const [run, p] of this.peers) if (nowMs - p.seenMs > PEER_FORGET_MS) this.peers.delete(run);
  }

  async subscribe(filter: string): Promise<void> {
    if (this.held.has(filter)) return;
    const nc = this.link.requireConnection();
    const subjects = filterToSubjects(filter, this.link.names.live);
    this.held.set(
      filter,
      subjects.map((s) => nc.subscribe(s, { callback: this.onLive })),
    );
    // While down, nats.js sends the subscription on reconnect; waiting would stall local subscribers.
    if (this.link.state !== 'down') await this.sync();
  }

  async unsubscribe(filter: string): Promise<void> {
    const subs = this.held.get(filter);
    if (!subs) return;
    this.held.delete(filter);
    for (const s of subs) s.unsubscribe();
    if (this.link.connected) await this.link.flush();
  }

  /**
   * Resolves once every other live node's server holds the interest sent so far. A server forwards
   * a message to another only once it has heard of interest there (route `RS+`), which travels
   * apart from our PING/PONG: so a request on `<prefix>.sync` that every other live node answers; a
   * reply from node X travelled X's server → ours on the route that carried our `RS+` before it, so
   * X's server holds the interest. Nodes not known yet are not waited for, and the sync gives up
   * after `interestSyncMs` (counted). Coalesced like `flush`.
   */
  sync(): Promise<void> {
    if (this.syncing === undefined) {
      this.syncing = this.doSync().finally(() => (this.syncing = undefined));
      return this.syncing;
    }
    this.syncNext ??= this.syncing.then(() => {
      this.syncNext = undefined;
      return this.sync();
    });
    return this.syncNext;
  }

  private async doSync(): Promise<void> {
    const link = this.link;
    await link.flush();
    const nc = link.nc!;
    const waiting = new Set(this.liveOwners());
    if (waiting.size === 0 || nc.isClosed()) return;
    const decoder = new TextDecoder();
    await new Promise<void>((resolve) => {
      const inbox = createInbox();
      const done = (): void => {
        clearTimeout(timer);
        sub.unsubscribe();
        resolve();
      };
      const timer = setTimeout(() => {
        link.counters.interestSyncTimeouts++;
        link.log?.warn({ waitingFor: [...waiting].slice(0, 10) }, 'bus: interest sync timed out; some nodes may miss messages on the new filter briefly');
        done();
      }, link.o.interestSyncMs);
      const sub = nc.subscribe(inbox, {
        callback: (err, msg) => {
          if (err) return done();
          waiting.delete(decoder.decode(msg.data));
          if (waiting.size === 0) done();
        },
      });
      nc.publish(link.names.sync, new Uint8Array(0), { reply: inbox });
    });
  }

  private readonly onLive = (err: NatsError | null, msg: Msg): void => {
    const link = this.link;
    if (err) {
      link.log?.warn({ err: err.message }, 'bus: subscription error');
      return;
    }
    let env;
    let topic;
    try {
      env = decodeEnvelope(msg.data);
      topic = remembered(this.liveTopics, msg.subject, link.names.live, subjectToTopic);
    } catch (e) {
      const c = link.counters;
      c.malformed++;
      if (c.malformed <= 10 || c.malformed % 1000 === 0) link.log?.warn({ subject: msg.subject.slice(0, 128), err: (e as Error).message, count: c.malformed }, 'bus: malformed message dropped');
      return;
    }
    const peer = this.peers.get(env.run);
    if (peer === undefined) this.peers.set(env.run, { seq: env.nodeSeq, seenMs: this.nowMs });
    else if (env.nodeSeq <= peer.seq) {
      link.counters.duplicates++;
      return;
    } else {
      peer.seq = env.nodeSeq;
      peer.seenMs = this.nowMs;
    }
    link.counters.received++;
    this.events?.message({ topic, payload: env.payload, retain: env.retain, qos: env.qos, properties: env.properties, origin: env.origin, seq: env.streamSeq });
  };
}
