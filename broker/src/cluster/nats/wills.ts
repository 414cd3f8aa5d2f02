/**
 * The NATS bus's wills and liveness room (design note: cluster/nats.ts).
 *
 * Each node (each run) keeps a key in the KV bucket `<prefix>-nodes`, whose TTL is
 * `nodeTimeoutMs`, alive by a heartbeat every `heartbeatMs`; its wills sit in `<prefix>-wills`
 * under `<owner>.<key>`. Every node watches the nodes bucket; an owner unseen for `nodeTimeoutMs`
 * whose key is gone (expired, or purged by a clean close) is dead. One survivor, designated the
 * same way by all (cluster/will-claim.ts), deletes each of its wills with compare-and-set (expected
 * revision) and hands each deleted will to the bridge (`events.orphanWill`); the other survivors
 * do the same only a further `nodeTimeoutMs` later, in case the designated one died too, and the
 * compare-and-set makes them find nothing left. The designation keeps survivors from racing for
 * the compare-and-set, which nats-server 2.9 does not always settle in a cluster (two concurrent
 * deletes with the same expected revision were both accepted in our 3-server test). The winner
 * then purges the delete marker. A node that finds its own key expired (it was partitioned past
 * the timeout, and its wills may have been published) writes its key and all its wills again.
 * Limits: a will written while the bus is down is written on reconnect; a claimer that crashes
 * between its claim and publishing loses that will (the window is one event-loop turn).
 */
import type { KV } from 'nats';
import type { BusEvents, BusMessage } from '../../core/bus.js';
import { decodeEnvelope, encodeEnvelope } from '../nats-envelope.js';
import { willClaimer } from '../will-claim.js';
import type { NatsLink } from './link.js';
import { isWrongSequence, keyToken } from './options.js';

export class NatsWills {
  private willsKv: KV | undefined;
  private nodesKv: KV | undefined;
  private readonly ownWills = new Map<string, BusMessage>();
  private willsDirty = false;
  private heartbeatRevision = 0;
  /** Other owners (node runs) → when we last heard of them (ms, local clock). */
  private readonly ownersSeen = new Map<string, number>();
  /** Owners found dead (heartbeat key gone) → since when (ms): the fallback claim waits a timeout more. */
  private readonly deadSince = new Map<string, number>();
  private mustLearnOwners = true;
  private willOwnersListed = false;
  private ticking = false;
  private watching = false;
  private events: BusEvents | undefined;
  /**
   * Called on the designated survivor (or, a timeout later, the others) when `owner` is gone,
   * after its wills were claimed; the persistent MQTT sessions it held are adopted from there
   * (sessions.ts `adoptFrom`, which retries by itself).
   */
  onGone: ((owner: string, lastSeenMs: number) => void) | undefined;
  /** Called when this node finds its own heartbeat key expired: others may have adopted its sessions (sessions.ts `recheck`). */
  onExpired: (() => Promise<void>) | undefined;
  /** When each owner was last heard of (the watch sets `ownersSeen` to 0 when an owner leaves). */
  private readonly lastHeard = new Map<string, number>();

  constructor(private readonly link: NatsLink) {
    link.onJetStream(
      () => this.setUp(),
      async () => {
        if (this.willsDirty) await this.resync();
      },
    );
    link.onReconnect(() => {
      // Owners we could not hear while away get a fresh timeout before anyone is declared dead.
      for (const owner of this.ownersSeen.keys()) this.ownersSeen.set(owner, Date.now());
      this.mustLearnOwners = true;
    });
  }

  start(events: BusEvents): void {
    this.events = events;
  }

  /** Other owners heard from within the node timeout (the interest sync waits for their answers). */
  liveOwners(): string[] {
    const now = Date.now();
    const out: string[] = [];
    for (const [owner, seenMs] of this.ownersSeen) if (now - seenMs < this.link.o.nodeTimeoutMs) out.push(owner);
    return out;
  }

  private async setUp(): Promise<void> {
    const link = this.link;
    const js = link.js!;
    this.willsKv ??= await js.views.kv(link.names.willsBucket, { history: 1, replicas: link.replicas, timeout: link.o.requestTimeoutMs });
    this.nodesKv ??= await js.views.kv(link.names.nodesBucket, { history: 1, replicas: link.replicas, ttl: link.o.nodeTimeoutMs, timeout: link.o.requestTimeoutMs });
    await this.heartbeat();
    // Listing keys makes consumers (meta-leader work): only at start and after a reconnect, not on every retry.
    if (this.mustLearnOwners) {
      await this.learnOwners();
      this.mustLearnOwners = false;
    }
    if (!this.watching) void this.watchNodes();
  }

  async setWill(key: string, will: BusMessage | undefined): Promise<void> {
    if (will) this.ownWills.set(key, will);
    else this.ownWills.delete(key);
    if (!this.link.jetStreamReady || this.link.state === 'down') {
      this.willsDirty = true; // written when JetStream is back (resync)
      return;
    }
    try {
      await this.writeWill(key, will);
    } catch (err) {
      this.link.counters.willWritesFailed++;
      this.willsDirty = true;
      this.link.markDegraded('writing a will failed (retried on recovery)', err);
    }
  }

  private willKey(key: string): string {
    return `${this.link.owner}.${keyToken(key)}`;
  }

  private async writeWill(key: string, will: BusMessage | undefined): Promise<void> {
    const link = this.link;
    const k = this.willKey(key);
    if (will) await this.willsKv!.put(k, encodeEnvelope({ retain: will.retain, qos: will.qos, origin: link.nodeId, run: link.run, nodeSeq: 0, streamSeq: 0, properties: will.properties, payload: will.payload, topic: will.topic }));
    else await this.purgeKey(link.names.willsBucket, k);
  }

  /** Removes a key with no delete marker left behind (a stream purge of its subject). */
  private async purgeKey(bucket: string, key: string): Promise<void> {
    await this.link.jsm!.streams.purge(`KV_${bucket}`, { filter: `$KV.${bucket}.${key}` });
  }

  /** Writes every will this node holds and removes those it no longer holds. */
  private async resync(): Promise<void> {
    this.willsDirty = false;
    try {
      const held = new Set([...this.ownWills.keys()].map((k) => this.willKey(k)));
      for await (const k of await this.willsKv!.keys(`${this.link.owner}.>`)) if (!held.has(k)) await this.purgeKey(this.link.names.willsBucket, k);
      for (const [key, will] of this.ownWills) await this.writeWill(key, will);
    } catch (err) {
      this.willsDirty = true;
      this.link.counters.willWritesFailed++;
      this.link.markDegraded('re-writing wills failed', err);
    }
  }

  private async heartbeat(): Promise<void> {
    const link = this.link;
    const kv = this.nodesKv!;
    const value = JSON.stringify({ nodeId: link.nodeId, run: link.run });
    if (this.heartbeatRevision > 0) {
      try {
        this.heartbeatRevision = await kv.update(link.owner, value, this.heartbeatRevision);
        return;
      } catch (err) {
        if (!isWrongSequence(err)) throw err;
        // Our key expired: others may have declared us dead and published our wills. Re-register them.
        link.log?.warn({ owner: link.owner }, 'bus: this node was considered dead (heartbeat expired); re-writing its wills');
        this.willsDirty = true;
        void this.onExpired?.();
      }
    }
    try {
      this.heartbeatRevision = await kv.create(link.owner, value);
    } catch (err) {
      if (!isWrongSequence(err)) throw err;
      // An update that timed out but was applied: take the current revision.
      this.heartbeatRevision = (await kv.get(link.owner))?.revision ?? 0;
    }
  }

  /** Follows the nodes bucket: every heartbeat refreshes its owner; a purge (clean close) makes it suspect at once. */
  private async watchNodes(): Promise<void> {
    this.watching = true;
    try {
      const it = await this.nodesKv!.watch();
      for await (const e of it) {
        if (e.key === this.link.owner) continue;
        // A purge marker is a clean leave (`clear`): suspect at once, so its sessions are adopted at the next tick.
        this.ownersSeen.set(e.key, e.operation === 'PUT' ? Date.now() : 0);
        if (e.operation === 'PUT') this.lastHeard.set(e.key, Date.now());
      }
    } catch (err) {
      this.link.log?.warn({ err: (err as Error).message }, 'bus: watching node heartbeats failed; retrying');
    } finally {
      this.watching = false;
    }
  }

  /**
   * Live owners (their heartbeat keys), and at start the owners that hold wills, heard of or not
   * (e.g. all died while no node ran): each gets a timeout. Listing wills is O(wills), so only
   * at start; an owner that dies later was heard of by then (heartbeat before any will).
   */
  private async learnOwners(): Promise<void> {
    const me = this.link.owner;
    const now = Date.now();
    for await (const owner of await this.nodesKv!.keys()) if (owner !== me && !this.ownersSeen.has(owner)) this.ownersSeen.set(owner, now);
    if (this.willOwnersListed) return;
    for await (const k of await this.willsKv!.keys()) {
      const owner = k.slice(0, k.indexOf('.'));
      if (owner !== me && !this.ownersSeen.has(owner)) this.ownersSeen.set(owner, now);
    }
    this.willOwnersListed = true; // only once the whole listing went through
  }

  /** Every `heartbeatMs`: heartbeat, re-written wills when needed, and the claims of dead owners' wills. */
  async tick(): Promise<void> {
    const link = this.link;
    const nowMs = Date.now();
    if (this.ticking || link.closing || !link.jetStreamReady || link.state === 'down') return;
    this.ticking = true;
    try {
      await this.heartbeat();
      if (this.willsDirty) await this.resync();
      if (!this.watching) void this.watchNodes();
      for (const [owner, seenMs] of this.ownersSeen) {
        if (nowMs - seenMs < link.o.nodeTimeoutMs) continue;
        const alive = await this.nodesKv!.get(owner);
        if (alive && alive.operation === 'PUT') {
          this.ownersSeen.set(owner, Date.now());
          this.deadSince.delete(owner);
          continue;
        }
        const since = this.deadSince.get(owner) ?? nowMs;
        this.deadSince.set(owner, since);
        // One designated survivor claims; the others only after a further timeout (it may be gone too).
        const live = [link.owner];
        for (const [other, seen] of this.ownersSeen) if (nowMs - seen < link.o.nodeTimeoutMs) live.push(other);
        if (willClaimer(owner, live) !== link.owner && nowMs - since < link.o.nodeTimeoutMs) continue;
        if ((await this.claimWillsOf(owner)) > 0) continue; // see claimWillsOf: retried next tick
        this.onGone?.(owner, this.lastHeard.get(owner) ?? (seenMs || nowMs)); // not awaited: heartbeats must not wait for it
        this.ownersSeen.delete(owner);
        this.deadSince.delete(owner);
        this.lastHeard.delete(owner);
      }
    } catch (err) {
      link.counters.heartbeatsFailed++;
      link.markDegraded('heartbeat or will check failed', err);
    } finally {
      this.ticking = false;
    }
  }

  /**
   * Claims every will `owner` left; resolves with how many claims were lost. A lost claim is
   * another survivor's win, or a stale read (KV gets may be served by a replica that lags): the
   * caller keeps the owner and tries again next tick, when a fresh read finds either nothing (the
   * other node claimed it) or the will still there.
   */
  private async claimWillsOf(owner: string): Promise<number> {
    const link = this.link;
    const kv = this.willsKv!;
    const keys: string[] = [];
    for await (const k of await kv.keys(`${owner}.>`)) keys.push(k);
    let lost = 0;
    for (const k of keys) {
      const e = await kv.get(k);
      if (!e || e.operation !== 'PUT') continue;
      try {
        await kv.delete(k, { previousSeq: e.revision });
      } catch (err) {
        if (!isWrongSequence(err)) throw err;
        link.counters.willClaimsLost++;
        lost++;
        continue;
      }
      link.counters.willsClaimed++;
      this.purgeKey(link.names.willsBucket, k).catch((err: Error) => link.log?.warn({ err: err.message }, 'bus: purging a claimed will marker failed'));
      let env;
      try {
        env = decodeEnvelope(e.value);
        if (env.topic === undefined) throw new Error('will without a topic');
      } catch (err) {
        link.counters.malformed++;
        link.log?.warn({ key: k, err: (err as Error).message }, 'bus: malformed will skipped');
        continue;
      }
      const key = Buffer.from(k.slice(owner.length + 1), 'base64url').toString('utf8');
      link.log?.info({ owner: env.origin, key }, 'bus: publishing the will of a dead node');
      this.events?.orphanWill({ owner: env.origin, key, message: { topic: env.topic, payload: env.payload, retain: env.retain, qos: env.qos, properties: env.properties, origin: env.origin, seq: 0 } });
    }
    return lost;
  }

  /**
   * A clean leave: removes this node's wills and its heartbeat key, so nobody publishes them. A
   * shutdown must not hang on a sick JetStream: past the request timeout the wills stay and go out
   * as a dead node's.
   */
  async clear(): Promise<void> {
    const link = this.link;
    if (!link.jetStreamReady || link.state === 'down') return;
    try {
      const clear = async (): Promise<void> => {
        for await (const k of await this.willsKv!.keys(`${link.owner}.>`)) await this.purgeKey(link.names.willsBucket, k);
        // A purge marker (it expires with the bucket's TTL): the other nodes' watches see this node leave
        // now, not a node timeout later, and adopt its persistent sessions while it still answers claims.
        await this.nodesKv!.purge(link.owner);
      };
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([clear(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), link.o.requestTimeoutMs)))]).finally(() => clearTimeout(timer));
    } catch (err) {
      link.log?.warn({ err: (err as Error).message }, "bus: clearing this node's wills at close failed (they will be published after the node timeout)");
    }
  }
}
