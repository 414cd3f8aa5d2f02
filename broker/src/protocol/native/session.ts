/**
 * A native-protocol session (PROTOCOL.md): per-connection state between the
 * frame codec and the router. One small handler per frame kind; the session
 * implements the router's `Subscriber` and the transport's `ConnectionHandler`.
 *
 * Invariants
 * - Everything written goes through the outbox, in order: ACK, then the retained
 *   snapshot (paced), then SNAPSHOT_END, then live deliveries queued after it.
 * - A malformed frame gets an ERROR frame and a close 1002; a well-formed but
 *   invalid request (bad topic, too many subscriptions) gets an ERROR frame and
 *   the connection stays open. Nothing here throws into the transport.
 * - The will is published when the connection ends without a clean client close.
 * - Permissions (auth/permissions.ts, docs/SECURITY.md): without a principal's
 *   permissions everything is allowed. With them, PUBLISH and WILL topics must be
 *   allowed, SUBSCRIBE filters covered by an allowed filter; retained snapshots
 *   are filtered per topic, and so are live deliveries once a subscription only
 *   overlaps a deny rule. A token's `exp` ends the connection with 4001.
 */
import {
  CloseCode, DecodeError, ERRORS, ErrorCode, Flag, Op,
  decodeClientFrame, encodeDelivery, encodeFrame, encodeHistoryEnd, encodeHistoryMessage, type ClientFrame, type ReplyProperties, type SubscribeResult, type WillMessage,
} from 'topicast/protocol';
import type { Permissions, Principal } from '../../auth/index.js';
import { BusRefusedError } from '../../core/bus.js';
import { REFUSALS } from '../../core/errors.js';
import type { BrokerContext } from '../../context.js';
import { createMessage, type Message, type MessageProperties } from '../../core/message.js';
import type { Subscriber, SubscriptionOptions } from '../../core/router.js';
import type { Connection } from '../../session/connection.js';
import type { FanoutGroups, GroupMember } from '../../session/fanout-group.js';
import type { ConnectionHandler } from '../../session/handler.js';
import { collectRows, planQuery, readCheck, type CollectedRows } from '../../session/history-query.js';
import { admitPublish, admitWill, publishBucket } from '../../session/admission.js';
import { checkTopic, MAX_HELD_INBOUND, TokenBucket } from '../../session/limits.js';
import { Outbox, type FrameSource } from '../../session/outbox.js';
import { checkSubscribe, planSubscribe, ReplaySource, SnapshotSource } from '../../session/subscribe.js';
import { readPlainPublish, writePlainDelivery } from './fast.js';

/** Wire shape cached on each Message (core/message.ts) for the duration of its fan-out. */
const LIVE = 'native';

export function liveFrame(message: Message): Uint8Array {
  // A plain delivery (most): one frame per publish in the shared slab (fast.ts `frameBytes`), kept
  // here for the rest of this publish's fan-out, never on the message, which may outlive the tick
  // (a store, an MQTT session's queue) and would keep the slab alive.
  if (message === lastMessage && message.offset === lastOffset) return lastFrame;
  if (message.offset === 0 && message.properties?.contentType === undefined && replyOf(message.properties) === undefined) {
    const plain = writePlainDelivery(message.topic, message.payload, 0, true);
    if (plain !== undefined) {
      lastMessage = message;
      lastOffset = 0;
      return (lastFrame = plain);
    }
  }
  // History topics carry their offset (PROTOCOL.md §4.6); still one encode per message.
  // ... and its content type (PROTOCOL.md §8), bytes unchanged.
  // ... and its request/reply properties (PROTOCOL.md §9): MQTT 5 requesters reach native responders.
  return (message.encoded[LIVE] ??= deliveryFrame(message, 0, message.offset === 0 ? undefined : message.offset));
}

/** The message `liveFrame` last wrote a pooled frame for (its offset then), and the frame. */
let lastMessage: Message | undefined;
let lastOffset = 0;
let lastFrame: Uint8Array = new Uint8Array(0);

/** A DELIVERY of `message`: the plain shape written directly (fast.ts), anything else by the codec; the same bytes either way. */
function deliveryFrame(message: Message, flags: number, offset: number | undefined): Uint8Array {
  const p = message.properties;
  const contentType = p?.contentType;
  const reply = replyOf(p);
  if (offset === undefined && contentType === undefined && reply === undefined) {
    const plain = writePlainDelivery(message.topic, message.payload, flags);
    if (plain !== undefined) return plain;
  }
  return encodeDelivery(message.topic, message.payload, flags, offset, contentType, reply);
}

/** The request/reply part of a message's MQTT 5 properties, as a native DELIVERY carries it (PROTOCOL.md §9). */
function replyOf(p: MessageProperties | undefined): ReplyProperties | undefined {
  if (p === undefined || (p.responseTopic === undefined && p.correlationData === undefined)) return undefined;
  return { responseTopic: p.responseTopic, correlationData: p.correlationData };
}

/** A native PUBLISH's content type and request/reply properties as the message's MQTT 5 properties (core/message.ts). */
function propertiesOf(contentType: string | undefined, reply: ReplyProperties | undefined): MessageProperties | undefined {
  if (contentType === undefined && reply === undefined) return undefined;
  const p: MessageProperties = {};
  if (contentType !== undefined) p.contentType = contentType;
  if (reply?.responseTopic !== undefined) p.responseTopic = reply.responseTopic;
  if (reply?.correlationData !== undefined) p.correlationData = reply.correlationData;
  return p;
}

/**
 * Retained deliveries are encoded per snapshot, not cached on the stored message: a cache
 * would keep a second copy of every retained payload for as long as the topic is retained
 * (measured: +55 MB for 100k × 200 B after the first `#` snapshot). Snapshots are paced,
 * so one encode per snapshot delivery is cheap next to the write itself.
 */
function retainedFrame(message: Message): Uint8Array {
  return deliveryFrame(message, Flag.retain, undefined);
}

/** Snapshot deliveries (no cache: see `retainedFrame`). */
const encodeRetained = retainedFrame;

/** Replayed deliveries (PROTOCOL.md §4.6): flag replayed, with their offset. */
function replayedFrame(m: Message): Uint8Array {
  return encodeDelivery(m.topic, m.payload, Flag.replayed, m.offset, m.properties?.contentType, replyOf(m.properties));
}

/** A native will as the router's message, its content type kept (PROTOCOL.md §8). */
function willMessage(will: WillMessage): Message {
  return createMessage(will.topic, will.payload, will.retain, undefined, 0, will.contentType === undefined ? undefined : { contentType: will.contentType });
}

/**
 * The rows of a history answer or a subscribe prefill (PROTOCOL.md §4.8), addressed to the request
 * by its id: encoded one at a time as the outbox paces them, like a replay.
 */
class HistorySource implements FrameSource {
  private i = 0;
  constructor(private readonly id: number, private readonly rows: CollectedRows) {}
  next(): Uint8Array | undefined {
    const i = this.i;
    const m = this.rows.messages[i];
    if (m === undefined) return undefined;
    this.rows.messages[this.i++] = undefined as unknown as Message; // release as we go
    return encodeHistoryMessage(this.id, m.topic, m.payload, m.offset, this.rows.times[i]!, m.properties?.contentType);
  }
}

/** Every native subscription has the same options: one shared object, never one per subscription. */
export const NATIVE_OPTIONS: SubscriptionOptions = Object.freeze({ qos: 0 });

/** What every native session of a broker shares (one object: no closure or field per connection). */
export interface NativeShared {
  /** Called once when a connection ends (the protocol's bookkeeping). */
  ended(session: NativeSession): void;
  /** The fan-out groups of native sessions (session/fanout-group.ts). */
  readonly groups: FanoutGroups;
}

/** How many subscribers of a filter a session looks through for a fan-out group partner (it joins the group when there is one). */
const PARTNER_SCAN = 64;

/**
 * What only some sessions need (publishers, wills, authenticated principals, cluster waits):
 * made on first use, so an idle subscriber carries one empty slot instead of six
 * (measured per idle connection in bench "memory").
 */
class SessionExtras {
  will: WillMessage | undefined = undefined;
  /** Made on the first publish: most connections only subscribe. */
  bucket: TokenBucket | undefined = undefined;
  /** Made on the first history query or prefill (PROTOCOL.md §4.8). */
  historyBucket: TokenBucket | undefined = undefined;
  /** undefined: unrestricted (authentication off). */
  permissions: Permissions | undefined = undefined;
  /** Subscriptions that overlap a deny rule: while any is held, each delivery is checked per topic. */
  filtered: Set<string> | undefined = undefined;
  /** Frames received while a SUBSCRIBE waits for the cluster's retained snapshot (cluster/bridge.ts `prepare`). */
  held: ClientFrame[] | undefined = undefined;
  expiryTimer: NodeJS.Timeout | undefined = undefined;
  /**
   * The last topic published to that passed `checkTopic` (the limits are fixed for the broker's
   * life): a repeat is not checked again, and fast.ts `readPlainPublish` reuses its string.
   */
  lastTopic: string | undefined = undefined;
}

export class NativeSession implements Subscriber, ConnectionHandler {
  routerStamp = 0;
  private readonly outbox: Outbox;
  /**
   * The filters held: most connections hold one (a device's own topic), kept as the string
   * itself; a Set is made for the second (a Map with its table cost ≈ 200 bytes per connection).
   */
  private filters: string | Set<string> | undefined = undefined;
  private closed = false;
  private extras: SessionExtras | undefined = undefined;

  /**
   * @param welcome the WELCOME frame, encoded once per broker
   * @param shared the protocol's bookkeeping and fan-out groups (one object for all sessions)
   */
  constructor(
    private readonly ctx: BrokerContext,
    conn: Connection,
    welcome: Uint8Array,
    private readonly shared: NativeShared,
    principal?: Principal,
  ) {
    if (principal?.permissions !== undefined) this.more().permissions = principal.permissions;
    if (principal?.expiresAtMs !== undefined) this.armExpiry(principal.expiresAtMs + ctx.sessionLimits.authClockSkewMs);
    this.outbox = new Outbox(conn, ctx.outboxLimits, ctx.outboxStats, ctx.flusher);
    this.outbox.pushControl(welcome);
  }

  // ---- router side ----------------------------------------------------------

  deliver(message: Message): void {
    const filtered = this.extras?.filtered;
    if (filtered !== undefined && filtered.size > 0 && !this.extras!.permissions!.canRead(message.topic)) {
      this.ctx.auth.stats.withheld++;
      return;
    }
    this.outbox.pushLive(liveFrame(message), message.topic);
  }

  /** The filter of the fan-out group it is in, if any. */
  private get groupFilter(): string | undefined {
    return (this.outbox.member as GroupMember | undefined)?.group.filter;
  }

  /** The filter of the fan-out group it may be in: its one filter when no per-topic read check applies (session/fanout-group.ts). */
  private groupable(): string | undefined {
    const filters = this.filters;
    if (typeof filters !== 'string' || this.closed) return undefined;
    const filtered = this.extras?.filtered;
    return filtered === undefined || filtered.size === 0 ? filters : undefined;
  }

  /**
   * After its filters changed: leaves a group it no longer qualifies for (subscribed on its own again
   * to the filter if it still holds it), joins the group of its one filter when it qualifies.
   */
  private regroup(): void {
    const filter = this.groupable();
    const held = this.groupFilter;
    if (held !== undefined) {
      if (held === filter) return;
      // On its own first, then out of the group: the filter's interest (the cluster's subscription) never drops to none.
      if (this.holds(held)) this.ctx.router.subscribe(this, held, NATIVE_OPTIONS);
      this.shared.groups.leave(this.outbox);
    }
    if (filter === undefined) return;
    this.shared.groups.join(this.outbox, this, filter, () => {
      const other = this.ctx.router.findSubscriber(filter, (s) => s !== this && s instanceof NativeSession && s.groupable() === filter, PARTNER_SCAN);
      return other === undefined ? undefined : { subscriber: other, outbox: (other as NativeSession).outbox };
    });
  }

  private get permissions(): Permissions | undefined {
    return this.extras?.permissions;
  }

  private more(): SessionExtras {
    return (this.extras ??= new SessionExtras());
  }

  private holds(filter: string): boolean {
    const filters = this.filters;
    return filters === filter || (typeof filters === 'object' && filters.has(filter));
  }

  private get filterCount(): number {
    const filters = this.filters;
    return filters === undefined ? 0 : typeof filters === 'string' ? 1 : filters.size;
  }

  private addFilter(filter: string): void {
    const filters = this.filters;
    if (filters === undefined) this.filters = filter;
    else if (typeof filters === 'string') {
      if (filters !== filter) this.filters = new Set([filters, filter]);
    } else filters.add(filter);
  }

  /** Returns whether the filter was held. */
  private removeFilter(filter: string): boolean {
    const filters = this.filters;
    if (filters === filter) {
      this.filters = undefined;
      return true;
    }
    return typeof filters === 'object' && filters.delete(filter);
  }

  // ---- transport side ---------------------------------------------------------

  onMessage(bytes: Uint8Array): void {
    if (this.closed) return;
    // A plain PUBLISH is read in place (fast.ts), as the codec would read it; everything else by the codec.
    let frame: ClientFrame | undefined = bytes[1] === Op.publish ? readPlainPublish(bytes, this.extras?.lastTopic) : undefined;
    if (frame === undefined) {
      try {
        frame = decodeClientFrame(bytes); // copies every bin: nothing here outlives `bytes` (STYLE.md #4)
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.protocolError(err.message);
        return;
      }
    }
    const held = this.extras?.held;
    if (held !== undefined) {
      if (held.length >= MAX_HELD_INBOUND) {
        this.ctx.counters.rateLimited++;
        this.error(0, ErrorCode.rateLimited, `more than ${MAX_HELD_INBOUND} frames sent while a SUBSCRIBE waits for the cluster`);
        this.close(CloseCode.rateLimited, 'too many frames while a subscribe waits');
        return;
      }
      held.push(frame); // a SUBSCRIBE waits for the cluster's retained values: keep frame order
      return;
    }
    this.onFrame(frame);
  }

  private onFrame(frame: ClientFrame): void {
    switch (frame.op) {
      case Op.subscribe: return this.onSubscribe(frame);
      case Op.unsubscribe: return this.onUnsubscribe(frame);
      case Op.publish: return this.onPublish(frame);
      case Op.ping: return this.outbox.pushControl(encodeFrame({ op: Op.pong, id: frame.id }));
      case Op.will: return this.onWill(frame);
      case Op.history: return this.onHistory(frame);
    }
  }

  onDrain(): void {
    this.outbox.flush();
  }

  onClose(_code: number, _reason: string, clean: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.shared.ended(this);
    const extras = this.extras;
    if (extras !== undefined) clearTimeout(extras.expiryTimer);
    this.outbox.close();
    if (this.outbox.member !== undefined) this.shared.groups.leave(this.outbox);
    const filters = this.filters;
    this.filters = undefined;
    if (typeof filters === 'string') this.ctx.router.unsubscribe(this, filters);
    else if (filters !== undefined) for (const filter of filters) this.ctx.router.unsubscribe(this, filter);
    const will = extras?.will;
    if (extras !== undefined) extras.will = undefined;
    if (will) this.ctx.cluster?.setWill(this, undefined); // published here below, or discarded: not by another node
    if (will && !clean) {
      // [PROTOCOL.md §3.5] published like any other message, after this session left the index.
      this.ctx.counters.willsPublished++;
      this.route(willMessage(will));
    }
  }

  /** Sends a control frame ahead of queued deliveries (DRAIN, PROTOCOL.md §4.7). */
  sendControl(frame: Uint8Array): void {
    if (!this.closed) this.outbox.pushControl(frame);
  }

  /** Closes the connection from the broker's side (shutdown, drain). */
  close(code: number, reason: string): void {
    this.outbox.flush();
    this.outbox.conn.close(code, reason);
  }

  // ---- one handler per frame kind (PROTOCOL.md §4) ---------------------------

  private onSubscribe(frame: Extract<ClientFrame, { op: typeof Op.subscribe }>): void {
    const checked = checkSubscribe(this.ctx, frame.filters, this.permissions, { count: this.filterCount, has: (f) => this.holds(f) });
    if (!(checked instanceof Set)) return this.error(frame.id, checked.code, checked.message);
    if (frame.options.history !== undefined) {
      if (frame.options.resume !== undefined) return this.error(frame.id, ErrorCode.invalidRequest, 'subscribe options history and resume exclude each other');
      // Without history the subscription is still made, with an empty, incomplete prefill (PROTOCOL.md §4.8).
      const planned = this.ctx.router.history === undefined ? undefined : this.planHistory(frame.filters, frame.options.history);
      if (planned !== undefined && 'code' in planned) return this.error(frame.id, planned.code, planned.message);
    }
    // With a cluster bus, a filter this node does not mirror yet waits for the bus's retained values;
    // later frames wait behind it. Without one (or when mirrored) this stays synchronous.
    const mirrored = frame.options.retained === false ? undefined : this.ctx.cluster?.prepare(frame.filters);
    if (mirrored !== undefined) {
      this.more().held = [];
      void mirrored.then(() => this.resumeSubscribe(frame));
      return;
    }
    this.subscribeNow(frame);
  }

  private resumeSubscribe(frame: Extract<ClientFrame, { op: typeof Op.subscribe }>): void {
    const extras = this.more();
    const held = extras.held ?? [];
    extras.held = undefined;
    if (this.closed) return;
    this.subscribeNow(frame);
    for (const f of held) {
      if (this.closed) return;
      const waiting = extras.held as ClientFrame[] | undefined; // set again by a SUBSCRIBE among them
      if (waiting !== undefined) waiting.push(f);
      else this.onFrame(f);
    }
  }

  private subscribeNow(frame: Extract<ClientFrame, { op: typeof Op.subscribe }>): void {
    const { router } = this.ctx;
    const permissions = this.permissions;
    for (const filter of frame.filters) {
      this.addFilter(filter);
      if (permissions?.canSubscribe(filter) === 'filtered') (this.more().filtered ??= new Set()).add(filter);
      if (this.groupFilter !== filter) router.subscribe(this, filter, NATIVE_OPTIONS); // else its group holds it
    }
    this.regroup();
    // Subscribed and, below, replay or snapshot captured in this one synchronous turn: every later
    // live message has a larger offset and is queued after SNAPSHOT_END (no gap, no duplicate).
    const planned = planSubscribe(this.ctx, frame.filters, frame.options, permissions && ((topic) => this.readable(topic)));
    const { replay, result } = planned;
    const history = router.history;
    // A prefill (PROTOCOL.md §4.8): the newest rows up to now, sent oldest first; checked in onSubscribe.
    let prefill: CollectedRows | undefined;
    let prefillComplete = true;
    if (history && frame.options.history) {
      const answer = history.query({ filters: frame.filters, limit: frame.options.history.limit ?? this.ctx.historyLimits.maxRows, sinceMs: frame.options.history.sinceMs, newestFirst: true }, readCheck(this.ctx, permissions), true);
      prefill = collectRows(answer, this.ctx.historyLimits.maxQueryBytes);
      prefillComplete = answer.complete() && !prefill.truncated;
      prefill.messages.reverse();
      prefill.times.reverse();
    }
    let snapshot = planned.snapshot;
    if (prefill !== undefined && prefill.messages.length > 0 && snapshot.length > 0) {
      // A topic in the prefill already ends with its latest message: its retained value would repeat an older one.
      const prefilled = new Set(prefill.messages.map((m) => m.topic));
      snapshot = snapshot.filter((m) => !prefilled.has(m.topic));
    }
    result.retained = snapshot.length;
    if (prefill !== undefined) {
      result.history = prefill.messages.length;
      result.historyComplete = prefillComplete;
    } else if (frame.options.history !== undefined) {
      result.history = 0;
      result.historyComplete = false; // this broker keeps no history
    }
    this.outbox.pushControl(encodeFrame({ op: Op.ack, id: frame.id, result }));
    if (snapshot.length > 0) this.outbox.pushSource(new SnapshotSource(snapshot, encodeRetained));
    if (prefill !== undefined && prefill.messages.length > 0) this.outbox.pushSource(new HistorySource(frame.id, prefill));
    if (replay !== undefined && replay.length > 0) this.outbox.pushSource(new ReplaySource(replay, replayedFrame));
    this.outbox.pushControl(encodeFrame({ op: Op.snapshotEnd, id: frame.id }));
  }

  /** Per-topic read check for snapshots and replays: a topic under a broader allowed filter may still be denied (docs/SECURITY.md). */
  private readable(topic: string): boolean {
    if (this.permissions!.canRead(topic)) return true;
    this.ctx.auth.stats.withheld++;
    return false;
  }

  /** Checks a history request (rate, filters, permissions, window); the query itself runs later, in the subscribing turn. */
  private planHistory(filters: readonly string[], req: Extract<ClientFrame, { op: typeof Op.history }>['options']) {
    const ctx = this.ctx;
    const extras = this.more();
    extras.historyBucket ??= new TokenBucket(ctx.historyLimits.queriesPerSec, Math.max(1, ctx.historyLimits.queriesPerSec), ctx.now());
    return planQuery(ctx, filters, req, ctx.historyLimits.maxRows, this.permissions, extras.historyBucket);
  }

  /** HISTORY (PROTOCOL.md §4.8): rows captured now, paced through the outbox, then HISTORY_END. */
  private onHistory(frame: Extract<ClientFrame, { op: typeof Op.history }>): void {
    const planned = this.planHistory([frame.filter], frame.options);
    if ('code' in planned) return this.error(frame.id, planned.code, planned.message);
    const { history, query } = planned;
    const answer = history.query(query, readCheck(this.ctx, this.permissions), true); // collected below, in this turn
    const rows = collectRows(answer, this.ctx.historyLimits.maxQueryBytes);
    const info = {
      count: rows.messages.length, complete: answer.complete() && !rows.truncated, more: answer.more || rows.truncated,
      epoch: history.epoch, offset: history.last,
    };
    if (rows.messages.length > 0) this.outbox.pushSource(new HistorySource(frame.id, rows));
    this.outbox.pushControl(encodeHistoryEnd(frame.id, info));
  }

  private onUnsubscribe(frame: Extract<ClientFrame, { op: typeof Op.unsubscribe }>): void {
    for (const filter of frame.filters) {
      if (this.removeFilter(filter)) {
        if (this.groupFilter === filter) this.shared.groups.leave(this.outbox);
        else this.ctx.router.unsubscribe(this, filter);
      }
      this.extras?.filtered?.delete(filter);
    }
    this.regroup();
    this.outbox.pushControl(encodeFrame({ op: Op.ack, id: frame.id, result: null }));
  }

  private onPublish(frame: Extract<ClientFrame, { op: typeof Op.publish }>): void {
    const { ctx } = this;
    const extras = this.more();
    // The frame's topics first: a malformed name is an invalid request, answered whatever the id.
    if (frame.topic !== extras.lastTopic) {
      const bad = checkTopic(frame.topic, ctx.topicLimits);
      if (bad) return this.error(frame.id, bad.code, bad.message);
      extras.lastTopic = frame.topic;
    }
    const responseTopic = frame.reply?.responseTopic;
    if (responseTopic !== undefined) {
      // PROTOCOL.md §9: a topic name, as MQTT 5 requires of a Response Topic [MQTT-3.3.2-14].
      const badReply = checkTopic(responseTopic, ctx.topicLimits);
      if (badReply) return this.error(frame.id, badReply.code, `response topic: ${badReply.message}`);
    }
    const retain = (frame.flags & Flag.retain) !== 0;
    const refused = admitPublish(ctx, frame.topic, frame.payload.length, retain, extras.permissions, (extras.bucket ??= publishBucket(ctx)));
    if (refused !== undefined) {
      // Refused and counted (session/admission.ts); answered only when acknowledged (PROTOCOL.md §4.3).
      if (frame.id !== 0) this.error(frame.id, REFUSALS[refused.refusal].code, refused.message);
      return;
    }
    // The content type and request/reply properties travel as MQTT 5's (core/message.ts), so every store and bus keeps them.
    const properties = propertiesOf(frame.contentType, frame.reply);
    const durable = this.route(createMessage(frame.topic, frame.payload, retain, this, 0, properties), frame.id !== 0);
    if (frame.id === 0) {
      // Unacknowledged: nobody to tell. The store logs and counts every failed write (broker.ts).
      durable?.catch(() => {});
      return;
    }
    const ack = encodeFrame({ op: Op.ack, id: frame.id, result: null });
    if (durable === undefined) return this.outbox.pushControl(ack);
    const id = frame.id;
    durable.then(
      () => this.outbox.pushControl(ack),
      (err: unknown) => {
        // The cluster bus refused it (outage buffer full): counted there; the message says when to retry.
        if (err instanceof BusRefusedError) return this.error(id, ErrorCode.unavailable, err.message);
        ctx.log.error({ err, topic: frame.topic }, 'store write failed (retained value or history)');
        this.error(id, ErrorCode.unavailable, 'not stored: the broker could not write it to disk');
      },
    );
  }

  private onWill(frame: Extract<ClientFrame, { op: typeof Op.will }>): void {
    const will = frame.will;
    if (will) {
      const bad = checkTopic(will.topic, this.ctx.topicLimits);
      if (bad) return this.error(frame.id, bad.code, `will ${bad.message}`);
      const refused = admitWill(this.ctx, will.topic, will.payload.length, this.permissions);
      if (refused !== undefined) {
        const { code } = REFUSALS[refused.refusal];
        return this.error(frame.id, code, code === ErrorCode.notAuthorized ? `not authorized to publish the will to ${JSON.stringify(will.topic.slice(0, 64))}` : `will ${refused.message}`);
      }
    }
    if (will || this.extras !== undefined) this.more().will = will ?? undefined;
    // With a cluster bus, another node publishes it if this one dies (cluster/bridge.ts).
    this.ctx.cluster?.setWill(this, will ? willMessage(will) : undefined);
    this.outbox.pushControl(encodeFrame({ op: Op.ack, id: frame.id, result: null }));
  }

  // ---- helpers ----------------------------------------------------------------

  /** Ends the connection when the token expires (plus the clock tolerance it was accepted with). */
  private armExpiry(atMs: number): void {
    // setTimeout holds at most 2^31-1 ms (~24.8 days): longer tokens re-arm on the way.
    const delay = Math.min(Math.max(0, atMs - this.ctx.now()), 0x7fffffff);
    this.more().expiryTimer = setTimeout(() => {
      if (this.closed) return;
      if (this.ctx.now() < atMs) return this.armExpiry(atMs);
      this.ctx.auth.stats.expired++;
      this.error(0, ErrorCode.unauthenticated, 'token expired');
      this.close(CloseCode.unauthenticated, 'token expired');
    }, delay);
  }

  private route(message: Message, acknowledged = false): Promise<void> | undefined {
    return this.ctx.router.publish(message, acknowledged).durable ?? undefined;
  }

  private error(id: number, code: ErrorCode, message: string): void {
    this.ctx.counters.errorsSent++;
    this.outbox.pushControl(encodeFrame({ op: Op.error, id, code, message }));
  }

  private protocolError(detail: string): void {
    this.ctx.counters.malformed++;
    this.error(0, ErrorCode.badFrame, `${ERRORS[ErrorCode.badFrame].message}: ${detail}`);
    this.close(CloseCode.protocolError, 'malformed frame');
  }
}
