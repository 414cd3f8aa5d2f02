/**
 * A subscription's own state machine, kept apart from the client's (STYLE.md #13):
 *
 *   subscribing ──ACK──▶ snapshot ──SNAPSHOT_END──▶ live
 *        ▲                  │                        │
 *        └──── connection lost (the client re-sends SUBSCRIBE on the next connection)
 *   any ──unsubscribe / refused / client closed──▶ closed
 *
 * `ready` settles at the first ACK or refusal, `snapshot` at the first SNAPSHOT_END;
 * later snapshots (after a reconnect) are visible as 'state' events. Messages reach the
 * handler and every open iterator (without a handler, the first iterator also gets what
 * arrived before it was created); each iterator buffers at most `maxBuffered` messages
 * (oldest dropped first, counted in `dropped`) so a stalled `for await` cannot grow memory
 * without bound. The client owns routing; this file only receives decoded messages.
 */
import type { Codec } from './codec.js';
import { createEmitter } from './emitter.js';
import { ClientErrorCode, TopicastError } from './errors.js';
import { topicMatches } from './protocol/index.js';

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
  /** The broker acknowledged a SUBSCRIBE; `retainedCount` values follow. */
  acked(retainedCount: number): void;
  /** SNAPSHOT_END for this subscription's request. */
  snapshotEnded(): void;
  /** The connection dropped; the client will subscribe again. */
  restoring(): void;
  /** Hands one decoded message to the handler and every iterator. */
  deliver(value: T, topic: string, retained: boolean, payload: Uint8Array): void;
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
  /** Resolves when the broker acknowledges the first SUBSCRIBE; rejects if it refuses. */
  readonly ready: Promise<void>;
  /** Resolves when the retained snapshot of the first subscribe is complete. */
  readonly snapshot: Promise<void>;
  /** The client's handle on this subscription (see `driver`). */
  readonly [driver]: SubscriptionDriver<T>;

  private readonly handler: Handler<T> | undefined;
  private readonly host: SubscriptionHost;
  private readonly maxBuffered: number;
  private readonly events = createEmitter<{ state: (state: SubscriptionState) => void }>();
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
    options: { retained?: boolean; maxBuffered?: number } = {},
  ) {
    this.host = host;
    this.filters = filters;
    this.codec = codec;
    this.handler = handler;
    this.retained = options.retained !== false;
    this.maxBuffered = Math.max(1, options.maxBuffered ?? DEFAULT_MAX_BUFFERED);
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
      acked: (n) => this.acked(n),
      snapshotEnded: () => this.snapshotEnded(),
      restoring: () => this.restoring(),
      deliver: (value, topic, retained, payload) => this.deliver(value, topic, retained, payload),
      close: (error) => this.close(error),
    };
    if (!handler) {
      this.firstReader = { buffer: [], waiting: undefined };
      this.readers.add(this.firstReader);
    }
  }

  /**
   * Listens to state changes; returns the removal.
   * @example
   * sub.on('state', (s) => { if (s === 'live') render(); });
   */
  on(event: 'state', listener: (state: SubscriptionState) => void): () => void {
    return this.events.on(event, listener);
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

  private acked(retainedCount: number): void {
    if (this.state === 'closed') return;
    this[driver].requestId = 0;
    this.setState('snapshot');
    if (!this.readySettled) {
      this.readySettled = true;
      this.settleReady[0]();
    }
    if (retainedCount === 0) this.snapshotEnded();
  }

  private snapshotEnded(): void {
    if (this.state !== 'snapshot') return;
    this.setState('live');
    if (!this.snapshotSettled) {
      this.snapshotSettled = true;
      this.settleSnapshot[0]();
    }
  }

  private restoring(): void {
    if (this.state === 'closed') return;
    this[driver].requestId = 0;
    this.setState('subscribing');
  }

  private deliver(value: T, topic: string, retained: boolean, payload: Uint8Array): void {
    if (this.handler) {
      try {
        this.handler(value, { topic, retained, payload });
      } catch (err) {
        this.host.reportHandlerError(err, this as Subscription<unknown>, topic);
      }
    }
    if (this.readers.size === 0) return;
    const message: Message<T> = { topic, value, retained, payload };
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
