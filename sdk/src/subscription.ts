/**
 * A subscription's own state machine, kept apart from the client's (STYLE.md #13):
 *
 *   subscribing ──ACK──▶ snapshot ──SNAPSHOT_END──▶ live
 *        ▲                  │                        │
 *        └──── connection lost (the client re-sends SUBSCRIBE on the next connection)
 *   any ──unsubscribe / refused / client closed──▶ closed
 *
 * `ready` settles at the first ACK or refusal, `snapshot` at the first SNAPSHOT_END;
 * later snapshots (after a reconnect) are visible as 'state' events. 'snapshot' covers
 * both the retained values and, after a resume, the replayed history (PROTOCOL.md §4.6).
 * Messages reach the handler and every open iterator (without a handler, the first
 * iterator also gets what arrived before it was created); each iterator buffers at most
 * `maxBuffered` messages (oldest dropped first, counted in `dropped`) so a stalled
 * `for await` cannot grow memory without bound. The client owns routing; this file only
 * receives decoded messages.
 *
 * Position (history, PROTOCOL.md §4.6): when the broker keeps history, a subscription
 * holds the epoch and the offset of the last history message it was handed — set from
 * the ACK, moved by every delivery with an offset, raised to the ACK's offset when a
 * replay ends (everything up to it was replayed). Invariant: within one epoch, a
 * subscription receives offsets in strictly increasing order, so a delivery at or below
 * its position is a duplicate (overlapping resumed subscriptions each get a replay) and
 * is skipped. Every SUBSCRIBE sent after the first (a reconnect), or a first one with the
 * `resume` option, ends in a 'resumed' event saying whether nothing was missed.
 * Cost: two fields per subscription, one comparison per delivery with an offset.
 */
import type { Codec } from './codec.js';
import { createEmitter } from './emitter.js';
import { ClientErrorCode, TopicastError } from './errors.js';
import { Flag, topicMatches, type HistoryPrefill, type ReplyProperties, type StreamPosition, type SubscribeResult } from './protocol/index.js';

/**
 * Where a subscription is in its life (see the diagram at the top of subscription.ts).
 * @example
 * sub.on('state', (s: SubscriptionState) => { spinner.hidden = s === 'live'; });
 */
export type SubscriptionState = 'subscribing' | 'snapshot' | 'live' | 'closed';

/**
 * What the broker told about one delivery.
 * @example
 * await client.subscribe('devices/+/status', (value, meta) => console.log(meta.topic, meta.retained, meta.payload.length));
 */
export interface MessageMeta {
  /** The concrete topic the message was published on. */
  topic: string;
  /** True when this is a stored (retained) value sent as part of the subscription's snapshot. */
  retained: boolean;
  /** The payload bytes as received, before decoding. */
  payload: Uint8Array;
  /** True when replayed from the broker's history after a resume (it was published while this client was away). */
  replayed: boolean;
  /** The message's history offset (PROTOCOL.md §4.6); undefined for topics without history and for retained values. */
  offset: number | undefined;
  /**
   * The content type the payload arrived with (PROTOCOL.md §8): `application/msgpack` from SDKs,
   * `application/json` or `text/plain` from curl and MQTT 5 clients, undefined when the publisher
   * said nothing (MQTT 3.1.1, `mosquitto_pub`): the value was then read by the untagged rules.
   */
  contentType: string | undefined;
  /**
   * Where the publisher wants an answer (PROTOCOL.md §9, MQTT 5 Response Topic); present only on
   * requests. Answer with `client.reply(meta, value)`.
   */
  responseTopic?: string;
  /** The request's correlation data, copied into the answer by `client.reply`; present only when sent. */
  correlationData?: Uint8Array;
  /** Set on the rows of a `history` prefill (PROTOCOL.md §4.8): the publish time (broker receive time, ms). Undefined otherwise. */
  ts?: number;
}

/**
 * How a subscription came back after a reconnect (or a first subscribe with `resume`).
 * @example
 * sub.on('resumed', ({ recovered, replayed }: ResumeOutcome) => {
 *   if (!recovered) void reloadState(); // a hole: the retained snapshot follows, history was not enough
 *   else console.log(`caught up with ${replayed} missed messages`);
 * });
 */
export interface ResumeOutcome {
  /**
   * true: every message published since the subscription's position is replayed (`meta.replayed`) before
   * live ones, nothing was missed. false: the broker could not (no position, a new epoch, history too
   * short or not kept for these filters): the subscription starts afresh with its retained snapshot, and
   * what was published meanwhile is lost to it — reload your state.
   */
  recovered: boolean;
  /** Number of replayed messages that follow (0 when not recovered). */
  replayed: number;
}

/**
 * Events of a subscription.
 * @example
 * const onResumed: SubscriptionEvents['resumed'] = (o) => console.log(o.recovered);
 */
export interface SubscriptionEvents {
  state: (state: SubscriptionState) => void;
  resumed: (outcome: ResumeOutcome) => void;
}

/**
 * One message, as yielded by async iteration over a subscription.
 * @example
 * for await (const { topic, value, retained } of client.subscribe('devices/#')) console.log(topic, value, retained);
 */
export interface Message<T = unknown> extends MessageMeta {
  /** The decoded payload. */
  value: T;
}

/**
 * A message handler: the decoded value and what the broker said about it.
 * @example
 * const onTemp: Handler<number> = (t, meta) => console.log(meta.topic, t.toFixed(1));
 * await client.subscribe('devices/+/cpu/temperature', onTemp);
 */
export type Handler<T> = (value: T, meta: MessageMeta) => void;

/** What a subscription needs from its client. */
export interface SubscriptionHost {
  unsubscribe(sub: Subscription<unknown>): Promise<void>;
  reportHandlerError(error: unknown, sub: Subscription<unknown>, topic: string): void;
}

/**
 * Key of a subscription's driver: the client's half of its state machine. Exported for
 * client.ts only (not from the package), so applications see just the public surface.
 */
export const driver: unique symbol = Symbol('topicast.subscription.driver');

/** What the client drives: request bookkeeping and the transitions of the state machine. */
export interface SubscriptionDriver<T> {
  /** Id of the SUBSCRIBE in flight, or 0. */
  requestId: number;
  /** The position the SUBSCRIBE in flight resumes from (its `resume` option). */
  resumeFrom: StreamPosition | undefined;
  /** The `history` option, until the first ACK: only the first SUBSCRIBE prefills (later ones resume). */
  prefill: HistoryPrefill | undefined;
  /** The broker acknowledged a SUBSCRIBE; `retained + replayed` deliveries follow. */
  acked(result: SubscribeResult): void;
  /** A delivery at `offset` matched: false if the subscription already has it (skip), else moves the position. */
  advance(offset: number): boolean;
  /** SNAPSHOT_END for this subscription's request. */
  snapshotEnded(): void;
  /** The connection dropped; the client will subscribe again. */
  restoring(): void;
  /** Hands one decoded message to the handler and every iterator; `reply` only on requests, `ts` only for prefill rows. */
  deliver(value: T, topic: string, flags: number, payload: Uint8Array, offset: number | undefined, contentType: string | undefined, reply?: ReplyProperties, ts?: number): void;
  /** Ends the subscription; with `error`, pending promises reject and iterators throw. */
  close(error?: TopicastError): void;
}

/**
 * Default `maxBuffered`: 1024 messages per iterator, seconds of a busy dashboard feed;
 * beyond, the oldest go.
 * @example
 * client.subscribe('logs/#', undefined, { maxBuffered: 4 * DEFAULT_MAX_BUFFERED });
 */
export const DEFAULT_MAX_BUFFERED = 1024;

interface Reader<T> {
  buffer: Message<T>[];
  waiting: { resolve: (r: IteratorResult<Message<T>>) => void; reject: (e: unknown) => void } | undefined;
}

function noop(): void {}

/**
 * A live subscription to one or more filters. Returned (once the broker acknowledged it)
 * by `client.subscribe`; also async-iterable.
 * @example
 * const sub = await client.subscribe('devices/+/cpu/temperature', (t, meta) => console.log(meta.topic, t));
 * await sub.snapshot;        // every retained value has been delivered
 * sub.on('state', (s) => console.log('subscription is', s));
 * await sub.unsubscribe();
 */
export class Subscription<T = unknown> implements AsyncIterable<Message<T>> {
  /** The filters, as given. */
  readonly filters: readonly string[];
  /** The payload codec of this subscription. */
  readonly codec: Codec;
  /** Whether retained values are requested (the broker's snapshot). */
  readonly retained: boolean;
  /** Current state; see `on('state')`. */
  state: SubscriptionState = 'subscribing';
  /** Why the subscription closed, when it did not close by `unsubscribe()` or `client.close()`. */
  error: TopicastError | undefined;
  /** Messages dropped because an iterator fell more than `maxBuffered` behind. */
  dropped = 0;
  /** Outcome of the last resume (see `on('resumed')`); undefined until the first one. */
  recovered: boolean | undefined;
  /**
   * With the `history` option, once acknowledged: false when the prefill may miss messages of the
   * asked window (the broker's history no longer reaches back that far); undefined without it.
   */
  historyComplete: boolean | undefined;
  /** Resolves when the broker acknowledges the first SUBSCRIBE; rejects if it refuses. */
  readonly ready: Promise<void>;
  /** Resolves when the retained snapshot of the first subscribe is complete. */
  readonly snapshot: Promise<void>;
  /** The client's handle on this subscription (see `driver`). */
  readonly [driver]: SubscriptionDriver<T>;

  private readonly handler: Handler<T> | undefined;
  private readonly host: SubscriptionHost;
  private readonly maxBuffered: number;
  private readonly events = createEmitter<SubscriptionEvents>();
  /** History position: epoch (undefined: none) and offset, see the top of this file. */
  private epoch: string | undefined;
  private offset = 0;
  /** The ACK's offset while a replay is in progress: the position once it ends. */
  private replayTo = -1;
  private acks = 0;
  private readonly readers = new Set<Reader<T>>();
  /** Without a handler, messages buffer from the start for the first iterator, so none is lost before `for await` begins. */
  private firstReader: Reader<T> | undefined;
  private settleReady: [() => void, (e: unknown) => void];
  private settleSnapshot: [() => void, (e: unknown) => void];
  private readySettled = false;
  private snapshotSettled = false;

  constructor(
    host: SubscriptionHost,
    filters: readonly string[],
    codec: Codec,
    handler: Handler<T> | undefined,
    options: { retained?: boolean; maxBuffered?: number; resume?: StreamPosition; history?: HistoryPrefill } = {},
  ) {
    this.host = host;
    this.filters = filters;
    this.codec = codec;
    this.handler = handler;
    this.retained = options.retained !== false;
    this.maxBuffered = Math.max(1, options.maxBuffered ?? DEFAULT_MAX_BUFFERED);
    if (options.resume) {
      this.epoch = options.resume.epoch;
      this.offset = options.resume.offset;
    }
    let r: [() => void, (e: unknown) => void] = [noop, noop];
    this.ready = new Promise<void>((resolve, reject) => (r = [resolve, reject]));
    this.settleReady = r;
    this.snapshot = new Promise<void>((resolve, reject) => (r = [resolve, reject]));
    this.settleSnapshot = r;
    // Nobody has to await these: a refusal also reaches the caller of subscribe() and every iterator.
    this.ready.catch(noop);
    this.snapshot.catch(noop);
    this[driver] = {
      requestId: 0,
      resumeFrom: undefined,
      prefill: options.history,
      acked: (r) => this.acked(r),
      advance: (o) => this.advance(o),
      snapshotEnded: () => this.snapshotEnded(),
      restoring: () => this.restoring(),
      deliver: (value, topic, flags, payload, offset, contentType, reply, ts) => this.deliver(value, topic, flags, payload, offset, contentType, reply, ts),
      close: (error) => this.close(error),
    };
    if (!handler) {
      this.firstReader = { buffer: [], waiting: undefined };
      this.readers.add(this.firstReader);
    }
  }

  /**
   * Listens to state changes or resume outcomes; returns the removal.
   * @example
   * sub.on('state', (s) => { if (s === 'live') render(); });
   * sub.on('resumed', ({ recovered }) => { if (!recovered) void reload(); });
   */
  on<K extends keyof SubscriptionEvents>(event: K, listener: SubscriptionEvents[K]): () => void {
    return this.events.on(event, listener);
  }

  /**
   * Where this subscription is in the broker's history (PROTOCOL.md §4.6): the epoch and offset of
   * the last history message it received, or undefined when the broker keeps no history. A reconnect
   * resumes from it; store it (e.g. in `sessionStorage`) and pass it as the `resume` option to resume
   * after a page reload.
   * @example
   * addEventListener('pagehide', () => sessionStorage.setItem('pos', JSON.stringify(sub.position)));
   */
  get position(): StreamPosition | undefined {
    return this.epoch === undefined ? undefined : { epoch: this.epoch, offset: this.offset };
  }

  /**
   * Stops the subscription: no message reaches it afterwards, iterators finish,
   * and the broker is told (unless another subscription of this client still
   * uses the same filter). Never rejects; resolves once the broker acknowledged
   * or there is no connection to tell.
   * @example
   * await sub.unsubscribe();
   */
  unsubscribe(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    return this.host.unsubscribe(this as Subscription<unknown>);
  }

  /** Whether a delivery on `topic` belongs to this subscription. */
  matches(topic: string): boolean {
    for (const filter of this.filters) if (topicMatches(filter, topic)) return true;
    return false;
  }

  /**
   * Iterates over messages from now on, until the subscription closes. Breaking out
   * of the loop unsubscribes.
   * @example
   * for await (const m of sub) { if (m.value > 80) break; }
   */
  [Symbol.asyncIterator](): AsyncIterator<Message<T>> {
    let reader: Reader<T>;
    if (this.firstReader) {
      reader = this.firstReader;
      this.firstReader = undefined;
    } else {
      reader = { buffer: [], waiting: undefined };
      if (this.state !== 'closed') this.readers.add(reader);
    }
    const next = (): Promise<IteratorResult<Message<T>>> => {
      const message = reader.buffer.shift();
      if (message) return Promise.resolve({ value: message, done: false });
      if (this.state === 'closed' || !this.readers.has(reader)) {
        return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
      }
      return new Promise((resolve, reject) => (reader.waiting = { resolve, reject }));
    };
    const finish = async (): Promise<IteratorResult<Message<T>>> => {
      this.readers.delete(reader);
      reader.buffer.length = 0;
      await this.unsubscribe();
      return { value: undefined, done: true };
    };
    return { next, return: finish };
  }

  // ---- driven by the client ------------------------------------------------

  private acked(r: SubscribeResult): void {
    if (this.state === 'closed') return;
    const d = this[driver];
    // A resume: any SUBSCRIBE after the first, or a first one from a stored position.
    const resume = this.acks++ > 0 || d.resumeFrom !== undefined;
    const recovered = d.resumeFrom !== undefined && r.recovered === true;
    const replayed = recovered ? (r.replayed ?? 0) : 0;
    d.requestId = 0;
    d.resumeFrom = undefined;
    d.prefill = undefined;
    if (r.historyComplete !== undefined) this.historyComplete = r.historyComplete;
    if (r.epoch === undefined || r.offset === undefined) this.epoch = undefined;
    else if (recovered) this.replayTo = r.offset; // replayed deliveries move the position from where it was
    else {
      this.epoch = r.epoch;
      this.offset = r.offset;
    }
    if (resume) {
      this.recovered = recovered;
      this.events.emit('resumed', { recovered, replayed });
    }
    if ((this.state as SubscriptionState) === 'closed') return; // a 'resumed' listener unsubscribed
    this.setState('snapshot');
    if (!this.readySettled) {
      this.readySettled = true;
      this.settleReady[0]();
    }
    if (r.retained + (r.replayed ?? 0) + (r.history ?? 0) === 0) this.snapshotEnded();
  }

  private advance(offset: number): boolean {
    if (this.epoch === undefined) return true;
    if (offset <= this.offset) return false;
    this.offset = offset;
    return true;
  }

  private snapshotEnded(): void {
    if (this.state !== 'snapshot') return;
    // Everything up to the ACK's offset was replayed: the position is at least there.
    if (this.replayTo > this.offset) this.offset = this.replayTo;
    this.replayTo = -1;
    this.setState('live');
    if (!this.snapshotSettled) {
      this.snapshotSettled = true;
      this.settleSnapshot[0]();
    }
  }

  private restoring(): void {
    if (this.state === 'closed') return;
    this[driver].requestId = 0;
    this[driver].resumeFrom = undefined;
    this.replayTo = -1;
    this.setState('subscribing');
  }

  private deliver(value: T, topic: string, flags: number, payload: Uint8Array, offset: number | undefined, contentType: string | undefined, reply: ReplyProperties | undefined, ts?: number): void {
    const retained = (flags & Flag.retain) !== 0;
    const replayed = (flags & Flag.replayed) !== 0;
    if (this.handler) {
      const meta: MessageMeta = { topic, retained, payload, replayed, offset, contentType };
      if (reply !== undefined) withReply(meta, reply);
      if (ts !== undefined) meta.ts = ts;
      try {
        this.handler(value, meta);
      } catch (err) {
        this.host.reportHandlerError(err, this as Subscription<unknown>, topic);
      }
    }
    if (this.readers.size === 0) return;
    const message: Message<T> = { topic, value, retained, payload, replayed, offset, contentType };
    if (reply !== undefined) withReply(message, reply);
    if (ts !== undefined) message.ts = ts;
    for (const reader of this.readers) {
      if (reader.waiting) {
        const w = reader.waiting;
        reader.waiting = undefined;
        w.resolve({ value: message, done: false });
      } else {
        if (reader.buffer.length >= this.maxBuffered) {
          reader.buffer.shift();
          this.dropped++;
        }
        reader.buffer.push(message);
      }
    }
  }

  private close(error?: TopicastError): void {
    if (this.state === 'closed') return;
    this.error = error;
    this[driver].requestId = 0;
    const reason = error ?? new TopicastError(ClientErrorCode.closed, 'subscription closed');
    if (!this.readySettled) {
      this.readySettled = true;
      this.settleReady[1](reason);
    }
    if (!this.snapshotSettled) {
      this.snapshotSettled = true;
      this.settleSnapshot[1](error ?? new TopicastError(ClientErrorCode.closed, 'subscription closed before its snapshot completed'));
    }
    this.setState('closed');
    for (const reader of this.readers) {
      const w = reader.waiting;
      reader.waiting = undefined;
      if (w) {
        if (error) w.reject(error);
        else w.resolve({ value: undefined, done: true });
      }
    }
    // Buffered messages stay readable; `next` reports the end once they are consumed.
    this.readers.clear();
  }

  private setState(state: SubscriptionState): void {
    if (this.state === state) return;
    this.state = state;
    this.events.emit('state', state);
  }
}

/** Adds a request's reply properties to its meta, only those present (most messages have none). */
function withReply(meta: MessageMeta, reply: ReplyProperties): void {
  if (reply.responseTopic !== undefined) meta.responseTopic = reply.responseTopic;
  if (reply.correlationData !== undefined) meta.correlationData = reply.correlationData;
}
