/**
 * The client: one logical session with the broker that survives reconnects.
 *
 * State machine (observable through `on('state')`):
 *   connecting ──WELCOME──▶ open ──link lost──▶ reconnecting ──WELCOME──▶ open …
 *   any ──close() / non-retryable close / gave up──▶ closed (terminal)
 *
 * Invariants:
 * - Subscriptions live in the client, not in a connection: every one that is not
 *   closed is subscribed again on each new connection, one SUBSCRIBE per subscription:
 *   from its history position when it has one (`resume`, PROTOCOL.md §4.6), so the
 *   broker replays what it missed, else with a fresh snapshot. Overlapping resumed
 *   subscriptions may each get a replayed message; positions skip the duplicates.
 * - The broker delivers a message once per connection however many filters match
 *   (PROTOCOL.md); the client dispatches it locally to every matching subscription,
 *   decoding once per codec. Retained values (a subscription's snapshot) go only to
 *   the subscriptions whose snapshot is in progress, so an older overlapping
 *   subscription does not see its retained values again.
 * - A filter is unsubscribed at the broker only when no other subscription of this
 *   client uses it (the broker holds one subscription per filter and connection).
 * - Publishes made while no connection is open wait in the bounded publish queue
 *   and are sent, in order, right after the subscriptions on the next connection.
 *   While open, publishes also wait there when the socket holds more than
 *   `queue.maxBufferedBytes` unsent (a poll every FLUSH_POLL_MS sends them as it drains),
 *   so a publisher outrunning the network is bounded by the queue's policy.
 * - DRAIN (PROTOCOL.md §4.7): the node is going away. After `reconnectAfterMs` the client
 *   closes that connection cleanly (no will) and dials at once, the next URL of its list
 *   first; subscriptions resume, the publish queue waits. Acknowledged publishes still in
 *   flight at that moment get their answer first (at most DRAIN_SETTLE_MS, new publishes
 *   queue meanwhile). The broker's own close at the end of its drain window (1001), if it
 *   comes first, is expected: not reported as an error.
 * - No promise the SDK creates for itself can reject unobserved; promises handed to
 *   the application reject only with a `TopicastError` (or TypeError for misuse).
 */
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { resolveCodec, type Codec, type CodecName, type CodecTable } from './codec.js';
import { Connection } from './connection.js';
import { createEmitter } from './emitter.js';
import {
  ClientErrorCode,
  CodecError,
  ConnectionError,
  ErrorCode,
  errorFromCode,
  QueueFullError,
  RequestError,
  TopicastError,
} from './errors.js';
import {
  CloseCode,
  contentTypeProblem,
  filterProblem,
  Flag,
  isRetryable,
  MAX_CORRELATION_BYTES,
  Op,
  topicProblem,
  type SubscribeOptions as WireSubscribeOptions,
  type SubscribeResult as AckResult,
  type ReplyProperties,
  type ServerFrame,
  type HistoryPrefill,
  type HistoryRequest,
  type StreamPosition,
  type WelcomeInfo,
  type WillMessage,
} from './protocol/index.js';
import { checkHistoryOptions, historyPages, type HistoryMessage, type HistoryOptions, type HistoryPage, type HistoryResult } from './history.js';
import { DEFAULT_MAX_BUFFERED_BYTES, OfflineQueue, type QueueOptions } from './queue.js';
import { driver, Subscription, type Handler, type Message, type MessageMeta } from './subscription.js';
import type { CodecValue, FiltersValue, PublishValue, TopicMap } from './topics.js';
import type { Transport } from './transport/types.js';
import { httpTransport } from './transport/http.js';
import { DEFAULT_WEBSOCKET_RETRY_MS, TransportChoice, type TransportKind, type Via } from './fallback.js';

/**
 * The client's connection state.
 * @example
 * client.on('state', (s: ClientState) => { banner.hidden = s === 'open'; });
 */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * Options of `connect`.
 * @example
 * const client = await connect('ws://localhost:8080/ws', { codec: 'json', reconnect: { maxDelayMs: 5000 } });
 */
export interface ConnectOptions {
  /**
   * Auth token, offered as a `Sec-WebSocket-Protocol` entry `topicast.token.<base64url>`.
   * A function is called before every connection attempt (fresh credentials after a 4001 close).
   */
  token?: string | (() => string | Promise<string>);
  /** Reconnect with exponential backoff and full jitter (default true). */
  reconnect?: boolean | BackoffOptions;
  /** Payload codec for publishes and subscriptions (default 'msgpack'; 'json' in topicast-core). */
  codec?: CodecName | Codec;
  /** Published by the broker if this client's connection drops without a clean close. */
  will?: { topic: string; value: unknown; retain?: boolean };
  /** Ping interval; a dead connection is detected within 2 × heartbeatMs (default 15 000; 0: only as often as the broker's idle timeout requires). */
  heartbeatMs?: number;
  /** Queue for publishes made while disconnected or while the socket is backed up. */
  queue?: QueueOptions;
  /**
   * true (default): resolve once the first connection is open; reject if every URL fails once.
   * false: resolve at once with the client in 'connecting', retrying in the background.
   */
  wait?: boolean;
  /** Longest wait for a connection to open (socket plus WELCOME) before it counts as failed (default 10 000). */
  connectTimeoutMs?: number;
  /** A custom WebSocket factory (tests, proxies). Default: native WebSocket in browsers, `ws` in Node. */
  transport?: Transport;
  /**
   * The topic answers to this client's `request`s come back on (PROTOCOL.md §9). Default
   * `replies/<16 random hex digits>`, unique per client. With permissions, let each user subscribe to
   * their own (e.g. `replies/{sub}/#`) and pass `replyTopic: 'replies/alice/' + crypto.randomUUID()`.
   */
  replyTopic?: string;
  /**
   * 'auto' (default): WebSocket, falling back to HTTP streaming (Server-Sent Events for deliveries,
   * POSTs for requests) when a WebSocket cannot be opened, and back to WebSocket once it can
   * (`client.transport` tells which). 'websocket' or 'sse' forces one. With a custom `transport`
   * the default is 'websocket'.
   */
  via?: Via;
  /** While on HTTP streaming, how often WebSocket is tried again (default 60 000). */
  webSocketRetryMs?: number;
}

/**
 * Options of `publish`.
 * @example
 * await client.publish('devices/pi-01/status', 'online', { retain: true, ack: true });
 */
export interface PublishOptions {
  /** Keep as the topic's retained value (delivered first to every new subscription). */
  retain?: boolean;
  /** Resolve only once the broker has routed the message; reject with a typed error if it refuses. */
  ack?: boolean;
  /** Codec for this message (default: the client's). */
  codec?: CodecName | Codec;
  /** Content type sent with the message (default: the codec's, e.g. `application/msgpack`); PROTOCOL.md §8. */
  contentType?: string;
  /** Where an answer should go (PROTOCOL.md §9, MQTT 5 Response Topic); `request` sets it for you. */
  responseTopic?: string;
  /** Opaque bytes an answer carries back (MQTT 5 Correlation Data, at most 65,535 bytes). */
  correlationData?: Uint8Array;
}

/**
 * Options of `request`.
 * @example
 * const state = await client.request('devices/pi-01/set/fan', 60, { timeoutMs: 5000 });
 */
export interface RequestOptions {
  /** Longest wait for the answer; the promise then rejects with a `RequestError` of code `ClientErrorCode.timeout` (default 10 000). */
  timeoutMs?: number;
  /** Codec of the request's value (default: the client's); the answer is decoded by its content type (the `auto` rule). */
  codec?: CodecName | Codec;
}

/**
 * Options of `subscribe`.
 * @example
 * await client.subscribe('logs/#', (line) => console.log(line), { codec: 'text', retained: false });
 */
export interface SubscribeOptions {
  /** Codec for this subscription's payloads (default: the client's). */
  codec?: CodecName | Codec;
  /** Receive the retained values first (default true). */
  retained?: boolean;
  /** Most messages an async iterator buffers before dropping the oldest (default 1024). */
  maxBuffered?: number;
  /**
   * Resume from a stored position (`sub.position`, e.g. saved before a page reload): the broker replays
   * what was published since, and `sub.recovered` says whether that was everything (PROTOCOL.md §4.6).
   */
  resume?: StreamPosition;
  /**
   * Prefill from the broker's history before going live (PROTOCOL.md §4.8): the newest `limit`
   * messages published since `sinceMs` on matching topics reach the handler first, oldest first, with
   * `meta.ts`, then live ones, with no gap and no duplicate (the broker takes both in one step).
   * Topics in the prefill skip their retained value. `sub.historyComplete` says whether history
   * reached back that far. Only the first subscribe prefills; a reconnect resumes instead.
   * @example
   * await client.subscribe('devices/pi-01/cpu/temperature', draw, { history: { sinceMs: Date.now() - 3_600_000 } });
   */
  history?: HistoryPrefill;
}

/**
 * What a DRAIN from the broker says: its node is shutting down (PROTOCOL.md §4.7).
 * @example
 * client.on('drain', ({ url, reconnectAfterMs }: DrainNotice) => console.log(`${url} drains, moving in ${reconnectAfterMs} ms`));
 */
export interface DrainNotice {
  /** The URL of the draining connection. */
  url: string;
  /** When the client moves to another node (its subscriptions and queued publishes go along). */
  reconnectAfterMs: number;
}

/**
 * Events of a client.
 * @example
 * client.on('state', (s) => console.log(s)); client.on('error', (e) => console.warn(e.code, e.message));
 */
export interface ClientEvents {
  state: (state: ClientState) => void;
  error: (error: TopicastError) => void;
  /** The node is draining; the client reconnects elsewhere after `reconnectAfterMs` ('state' shows it). */
  drain: (notice: DrainNotice) => void;
}

type OptionCodec<O> = O extends { codec: infer C } ? C : undefined;

/** History rows of a filter of the map have its type; of a concrete topic, the type its matching filters give a publish. */
type HistoryValue<Topics extends TopicMap, F extends string> = F extends keyof Topics ? Topics[F] : PublishValue<Topics, F>;

/**
 * What `subscribe` returns: a promise of the subscription (resolved at the broker's
 * acknowledgement) that is also async-iterable over the messages.
 * @example
 * const sub = await client.subscribe('a/#');                 // as a promise
 * for await (const m of client.subscribe('a/#')) break;      // as an iterable
 */
export type SubscribeResult<T> = Promise<Subscription<T>> & AsyncIterable<Message<T>>;

/**
 * A connected (or reconnecting) Topicast client. `Topics` maps filters to payload
 * types (see topics.ts) and types `subscribe` and `publish`.
 * @example
 * interface Topics { 'devices/+/cpu/temperature': number }
 * const client: Client<Topics> = await connect<Topics>('ws://localhost:8080/ws');
 * await client.publish('devices/pi-01/cpu/temperature', 48.2);
 */
export interface Client<Topics extends TopicMap = {}> {
  /** 'connecting' | 'open' | 'reconnecting' | 'closed'. */
  readonly state: ClientState;
  /** URL of the current (or last) connection attempt. */
  readonly url: string;
  /** The broker's WELCOME on the current connection, while open. */
  readonly server: WelcomeInfo | undefined;
  /** 'websocket', or 'sse' when the client fell back to HTTP streaming (or was told to use it: `via`). */
  readonly transport: TransportKind;
  /** Listens to 'state', 'error' or 'drain'; returns the removal. */
  on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): () => void;
  /**
   * Subscribes to one or several filters. The result is awaitable (the broker's
   * acknowledgement; rejects with a `RequestError` if refused) and async-iterable.
   */
  subscribe<const F extends string, O extends SubscribeOptions = {}>(
    filter: F | readonly F[],
    handler?: Handler<CodecValue<OptionCodec<O>, FiltersValue<Topics, F>>>,
    options?: O,
  ): SubscribeResult<CodecValue<OptionCodec<O>, FiltersValue<Topics, F>>>;
  /** Publishes `value` on `topic`, encoded with the codec. See `PublishOptions`. */
  publish<const T extends string>(topic: T, value: PublishValue<Topics, T>, options?: PublishOptions): Promise<void>;
  /**
   * Reads the broker's history of a topic or filter (PROTOCOL.md §4.8; the broker keeps history for
   * `--history-filters`). Awaited: one page of rows, oldest first unless `newestFirst`, at most
   * `limit` (default and ceiling: the broker's `historyMaxRows`), with `complete` (false when
   * history no longer reaches back that far) and `more`. Iterated: every row of the window, paged.
   * Values are decoded like deliveries. Needs an open connection (else a `ConnectionError`); a
   * connection lost before the answer rejects it too: query again once the client is 'open'.
   * @example
   * const hour = await client.history('devices/pi-01/cpu/temperature', { sinceMs: Date.now() - 3_600_000 });
   * chart.setData(hour.map((r) => [r.ts, r.value]));
   * for await (const r of client.history('devices/#', { sinceMs: 0 })) out.write(`${r.ts},${r.topic},${r.value}\n`);
   */
  history<const F extends string, O extends HistoryOptions = {}>(filter: F, options?: O): HistoryResult<CodecValue<OptionCodec<O>, HistoryValue<Topics, F>>>;
  /** Deletes the retained value of `topic` (publishes an empty retained payload). */
  clearRetained(topic: string, options?: { ack?: boolean }): Promise<void>;
  /**
   * Publishes `value` on `topic` as a request and resolves with the first answer (PROTOCOL.md §9):
   * the message carries this client's reply topic and fresh correlation data, and a responder (an
   * agent's actuator, an MQTT 5 client, `client.reply`) publishes its answer there. One subscription
   * to the reply topic serves every request of the client. Rejects with the broker's `RequestError`
   * when the publish is refused (e.g. not authorized), or with code `ClientErrorCode.timeout`.
   * @example
   * const result = await client.request('devices/pi-01/set/led', true, { timeoutMs: 5000 });
   * // from a topicast-agent actuator: { ok: true, state: true } or { ok: false, error: '...' }
   */
  request<R = unknown>(topic: string, value: unknown, options?: RequestOptions): Promise<R>;
  /**
   * Answers a request received by a subscription: publishes `value` to its `meta.responseTopic` with
   * its correlation data. Throws a TypeError when the message asked for no answer.
   * @example
   * await client.subscribe('calc/double', (n: number, meta) => { if (meta.responseTopic) void client.reply(meta, n * 2); });
   */
  reply(meta: Pick<MessageMeta, 'responseTopic' | 'correlationData'>, value: unknown, options?: Omit<PublishOptions, 'responseTopic' | 'correlationData'>): Promise<void>;
  /** Closes cleanly (the broker discards the will); subscriptions end, pending requests reject. */
  close(): Promise<void>;
}

/** What a build (full or core) provides to the client. */
export interface ClientBuild {
  codecs: CodecTable;
  defaultCodec: Codec;
  transport: Transport;
}

/**
 * Default `heartbeatMs`. 15 s: dead links are found within 30 s, well inside common
 * 60 s proxy idle timeouts, for one tiny frame per interval.
 * @example
 * await connect(url, { heartbeatMs: DEFAULT_HEARTBEAT_MS / 3 }); // detect within 10 s
 */
export const DEFAULT_HEARTBEAT_MS = 15_000;
/**
 * Default `connectTimeoutMs`. 10 s: a handshake plus WELCOME takes milliseconds on a
 * LAN and rarely seconds over mobile links.
 * @example
 * await connect(url, { connectTimeoutMs: 2 * DEFAULT_CONNECT_TIMEOUT_MS }); // satellite link
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

type Pending =
  | { kind: 'subscribe'; sub: Subscription<unknown> }
  | { kind: 'unsubscribe'; resolve: () => void }
  | { kind: 'publish'; topic: string; resolve: () => void; reject: (e: unknown) => void }
  | { kind: 'will' }
  | { kind: 'history'; codec: Codec; rows: HistoryMessage[]; resolve: (page: HistoryPage<unknown>) => void; reject: (e: unknown) => void };

interface Queued {
  topic: string;
  payload: Uint8Array;
  flags: number;
  contentType: string | undefined;
  reply: ReplyProperties | undefined;
  ack: { resolve: () => void; reject: (e: unknown) => void } | undefined;
}

function noop(): void {}

function base64url(text: string): string {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const EMPTY = new Uint8Array(0);
/** The page's `window` in browsers; in Node these methods do not exist. */
const windowLike = globalThis as {
  addEventListener?: (type: 'online', listener: () => void) => void;
  removeEventListener?: (type: 'online', listener: () => void) => void;
};
/** 10 000 topics: a large fleet's worth of device topics, a few hundred KB of cache at most. */
const MATCH_CACHE_TOPICS = 10_000;
/** 1 s: the longest a departure from a draining node waits for acknowledgements in flight; an ACK is one round trip. */
const DRAIN_SETTLE_MS = 1000;
/** 10 ms: a backed-up socket drains in milliseconds on a LAN; polling faster only burns CPU. */
const FLUSH_POLL_MS = 10;
/** 10 s: a device program answers in milliseconds; a request still unanswered after 10 s is lost, not slow. */
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/** A request waiting for its answer, by the hex of its correlation data. */
interface PendingReply {
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
}

function hexOf(bytes: Uint8Array): string {
  let out = '';
  for (const x of bytes) out += x.toString(16).padStart(2, '0');
  return out;
}

class TopicastClient {
  state: ClientState = 'connecting';
  private readonly urls: string[];
  private urlIndex = 0;
  private readonly options: ConnectOptions;
  private readonly build: ClientBuild;
  private readonly codec: Codec;
  private readonly backoff: BackoffOptions | undefined; // undefined: reconnect off
  private readonly events = createEmitter<ClientEvents>();
  private readonly subs = new Set<Subscription<unknown>>();
  /**
   * Subscriptions matching a topic, whatever their state, by topic. Device topics repeat,
   * so dispatch costs a map lookup instead of matching every filter. Cleared whenever the
   * set of subscriptions changes, and when it reaches MATCH_CACHE_TOPICS entries.
   */
  private readonly matchCache = new Map<string, Subscription<unknown>[]>();
  /** Subscriptions by the id of their SUBSCRIBE, from ACK until SNAPSHOT_END. */
  private readonly snapshots = new Map<number, Subscription<unknown>>();
  private readonly pending = new Map<number, Pending>();
  private readonly queue: OfflineQueue<Queued>;
  private readonly maxBufferedBytes: number;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly will: WillMessage | null;
  private conn: Connection | undefined;
  private open: Connection | undefined;
  private lastId = 0;
  private failures = 0; // consecutive failed attempts, for the backoff
  private everOpened = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** The connection that received DRAIN, and the timer that leaves it. */
  private drained: Connection | undefined;
  private drainTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set once the departure is due but acknowledged publishes still wait for their answer. */
  private leaving: Connection | undefined;
  private closing: Promise<void> | undefined;
  private firstOpen: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  /** Browsers: the 'online' event ends a backoff wait at once (the network just came back). */
  private readonly onOnline: (() => void) | undefined;
  /** Request/reply (PROTOCOL.md §9): this client's reply topic, its one subscription (made on the first request), the requests waiting. */
  private readonly replyTopic: string;
  private replySub: Promise<unknown> | undefined;
  private readonly replies = new Map<string, PendingReply>();
  private lastCorrelation = 0;
  /** WebSocket or HTTP streaming (fallback.ts); while on the latter, a timer probes WebSocket. */
  private readonly choice: TransportChoice;
  private probeTimer: ReturnType<typeof setTimeout> | undefined;
  /** The token of the last attempt, for WebSocket probes. */
  private lastToken: string | undefined;
  /** The HTTP-streaming connection left for WebSocket: its loss is a planned reconnect. */
  private switching: Connection | undefined;
  /** Why the WebSocket attempt before the current HTTP-streaming one failed: told if that fails too. */
  private webSocketError: ConnectionError | undefined;

  constructor(urls: string[], options: ConnectOptions, build: ClientBuild) {
    this.urls = urls;
    this.options = options;
    this.build = build;
    this.codec = resolveCodec(options.codec, build.codecs, build.defaultCodec);
    this.backoff = options.reconnect === false ? undefined : options.reconnect === true || options.reconnect === undefined ? {} : options.reconnect;
    this.queue = new OfflineQueue(options.queue);
    this.maxBufferedBytes = options.queue?.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    // A custom WebSocket factory (tests, a proxy of the application's own) is used as given, without fallback.
    this.choice = new TransportChoice(options.via ?? (options.transport ? 'websocket' : 'auto'));
    this.will = null;
    this.replyTopic = options.replyTopic ?? `replies/${hexOf(globalThis.crypto.getRandomValues(new Uint8Array(8)))}`;
    const replyProblem = topicProblem(this.replyTopic);
    if (replyProblem) throw new RequestError(ErrorCode.invalidTopic, `reply topic ${JSON.stringify(this.replyTopic)} ${replyProblem}`);
    if (options.will) {
      const problem = topicProblem(options.will.topic);
      if (problem) throw new RequestError(ErrorCode.invalidTopic, `will topic ${JSON.stringify(options.will.topic)} ${problem}`);
      this.will = { topic: options.will.topic, payload: this.encode(this.codec, options.will.topic, options.will.value), retain: options.will.retain === true };
      if (this.codec.contentType !== undefined) this.will.contentType = this.codec.contentType; // PROTOCOL.md §8
    }
    if (typeof windowLike.addEventListener === 'function' && typeof windowLike.removeEventListener === 'function') {
      this.onOnline = () => this.retryNow();
      windowLike.addEventListener('online', this.onOnline);
    }
  }

  get url(): string {
    return this.urls[this.urlIndex]!;
  }

  get server(): WelcomeInfo | undefined {
    return this.open?.info;
  }

  get transport(): TransportKind {
    return this.choice.current;
  }

  /** Starts connecting; with `wait`, the promise settles at the first open or when giving up. */
  start(wait: boolean): Promise<void> {
    const first = wait ? new Promise<void>((resolve, reject) => (this.firstOpen = { resolve, reject })) : Promise.resolve();
    this.attempt();
    return first;
  }

  on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): () => void {
    return this.events.on(event, listener);
  }

  // ---- connection lifecycle -----------------------------------------------

  private attempt(): void {
    this.reconnectTimer = undefined;
    if (this.state === 'closed') return;
    const token = this.options.token;
    if (typeof token === 'function') {
      // Any failure of the token callback counts as a failed attempt; nothing escapes.
      Promise.resolve()
        .then(token)
        .then(
          (value) => this.dial(value),
          (err: unknown) => this.lost(undefined, new ConnectionError(ClientErrorCode.connectFailed, `token callback failed: ${String((err as Error)?.message ?? err)}`, undefined, { cause: err })),
        );
    } else {
      this.dial(token);
    }
  }

  /** Skips the rest of a backoff wait. */
  private retryNow(): void {
    if (this.reconnectTimer === undefined) return;
    clearTimeout(this.reconnectTimer);
    this.attempt();
  }

  private dial(token: string | undefined): void {
    if (this.state === 'closed') return;
    this.lastToken = token;
    const kind = this.choice.next();
    let conn: Connection | undefined;
    try {
      conn = new Connection(
        this.connectionOptions(token, kind === 'sse' ? httpTransport : this.webSocket(), this.options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS),
        {
          open: () => this.opened(conn!),
          frame: (frame) => {
            if (conn === this.open) this.onFrame(frame);
          },
          lost: (error) => this.lost(conn, error),
        },
      );
    } catch (err) {
      // A WebSocket constructor throws synchronously on a malformed URL: that never gets better.
      this.conn = undefined;
      this.giveUp(new ConnectionError(ClientErrorCode.connectFailed, `cannot open ${this.url}: ${(err as Error).message}`, undefined, { cause: err }));
      return;
    }
    this.conn = conn;
  }

  private connectionOptions(token: string | undefined, transport: Transport, heartbeatMs: number): ConstructorParameters<typeof Connection>[0] {
    return {
      url: this.url,
      extraProtocols: token ? [`topicast.token.${base64url(token)}`] : [],
      transport,
      heartbeatMs,
      connectTimeoutMs: this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      nextId: () => this.nextId(),
    };
  }

  private webSocket(): Transport {
    return this.options.transport ?? this.build.transport;
  }

  private opened(conn: Connection): void {
    if (conn !== this.conn || this.state === 'closed') return;
    this.open = conn;
    this.failures = 0;
    this.everOpened = true;
    this.choice.opened();
    this.webSocketError = undefined;
    if (this.choice.probing) this.probeTimer = setTimeout(() => this.probe(conn), this.options.webSocketRetryMs ?? DEFAULT_WEBSOCKET_RETRY_MS);
    try {
      // Order matters and the broker keeps it: will, then subscriptions, then queued publishes.
      if (this.will) this.send({ op: Op.will, id: this.requestId({ kind: 'will' }), will: this.will });
      for (const sub of this.subs) this.sendSubscribe(sub);
      this.flushQueue();
    } catch (err) {
      // The socket refused a write: the transport reports the close next and `lost` takes over.
      this.report(new ConnectionError(ClientErrorCode.connectionLost, `send failed: ${(err as Error).message}`, undefined, { cause: err }));
    }
    this.setState('open');
    const first = this.firstOpen;
    this.firstOpen = undefined;
    first?.resolve();
  }

  /**
   * While open over HTTP streaming: tries a WebSocket beside it; when one opens, it is closed and
   * the client moves over (a planned reconnect: subscriptions resume as after any reconnect).
   */
  private probe(over: Connection): void {
    this.probeTimer = undefined;
    if (this.open !== over || this.state === 'closed') return;
    let probe: Connection | undefined;
    try {
      probe = new Connection(
        this.connectionOptions(this.lastToken, this.webSocket(), 0),
        {
          open: () => {
            void probe!.close(CloseCode.normal, 'probe');
            if (this.open !== over || this.state === 'closed') return;
            this.choice.webSocketWorks();
            this.switching = over;
            void over.close(CloseCode.normal, 'moving to WebSocket');
            this.lost(over, new ConnectionError(ClientErrorCode.connectionLost, 'moving to WebSocket', CloseCode.goingAway));
          },
          frame: () => {},
          lost: () => {
            if (this.open === over) this.probeTimer = setTimeout(() => this.probe(over), this.options.webSocketRetryMs ?? DEFAULT_WEBSOCKET_RETRY_MS);
          },
        },
      );
    } catch {
      // A URL the WebSocket factory refuses: stay on HTTP streaming.
    }
  }

  private lost(conn: Connection | undefined, error: ConnectionError): void {
    if (conn !== this.conn || this.state === 'closed') return;
    this.conn = undefined;
    this.open = undefined;
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    this.leaving = undefined;
    this.settleInFlight(new ConnectionError(ClientErrorCode.connectionLost, `connection lost before the broker answered (${error.message})`, error.closeCode, { cause: error }));
    if (conn !== undefined && conn === this.switching) {
      // Leaving HTTP streaming for a WebSocket that a probe just opened: planned, at once.
      this.switching = undefined;
      this.setState('reconnecting');
      this.reconnectTimer = setTimeout(() => this.attempt(), 0);
      return;
    }
    if (error.code === ClientErrorCode.connectFailed && this.choice.failedToOpen()) {
      if (this.choice.next() === 'sse' && error.closeCode !== CloseCode.unauthenticated) {
        // The WebSocket could not be opened (a proxy refused the upgrade?): HTTP streaming, now (fallback.ts).
        this.webSocketError = error;
        this.reconnectTimer = setTimeout(() => this.attempt(), 0);
        return;
      }
      // HTTP streaming failed too: the WebSocket's failure, the transport asked for, is the one told.
      error = this.webSocketError ?? error;
    }
    this.webSocketError = undefined;
    const closeCode = error.closeCode ?? 1006;
    if (conn !== undefined && conn === this.drained && this.backoff !== undefined && isRetryable(closeCode)) {
      // Leaving a draining node (or its close at the end of the window) is planned: no error, no backoff.
      this.drained = undefined;
      this.failures = 0;
      this.setState('reconnecting');
      this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      this.reconnectTimer = setTimeout(() => this.attempt(), 0);
      return;
    }
    this.report(error);
    const retryable =
      this.backoff !== undefined &&
      (isRetryable(closeCode) || (closeCode === CloseCode.unauthenticated && typeof this.options.token === 'function'));
    this.failures++;
    // `wait: true` gives up after one failed round over every URL, so a wrong URL fails fast.
    const firstRoundOver = this.firstOpen !== undefined && !this.everOpened && this.failures >= this.urls.length;
    if (!retryable || firstRoundOver) {
      this.giveUp(error);
      return;
    }
    this.setState(this.everOpened ? 'reconnecting' : 'connecting');
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    // Trying the next URL of a failover list right away costs nothing; a full round backs off.
    const delay = this.urls.length > 1 && this.failures % this.urls.length !== 0 ? 0 : backoffDelay(this.failures - 1, this.backoff);
    this.reconnectTimer = setTimeout(() => this.attempt(), delay);
  }

  /** Requests in flight on a lost connection: subscriptions are re-sent later, acked publishes fail. */
  private settleInFlight(error: ConnectionError): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.snapshots.clear();
    for (const p of pending) {
      if (p.kind === 'publish') p.reject(error);
      else if (p.kind === 'history') p.reject(error);
      else if (p.kind === 'unsubscribe') p.resolve(); // the broker forgot the subscription with the connection
    }
    for (const sub of this.subs) sub[driver].restoring();
  }

  private giveUp(error: ConnectionError): void {
    const retrying = this.backoff !== undefined;
    const reason = new ConnectionError(
      error.code === ClientErrorCode.connectionLost && retrying ? ClientErrorCode.connectFailed : error.code,
      this.everOpened ? `${retrying ? 'gave up reconnecting' : 'connection lost (reconnect is off)'}: ${error.message}` : error.message,
      error.closeCode,
      { cause: error },
    );
    this.shutdown(reason);
  }

  /** Ends everything the client holds; `error` is what pending work rejects with. */
  private shutdown(error: TopicastError): void {
    if (this.state === 'closed') return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    if (this.onOnline) windowLike.removeEventListener?.('online', this.onOnline);
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.snapshots.clear();
    for (const p of pending) {
      if (p.kind === 'publish') p.reject(error);
      else if (p.kind === 'history') p.reject(error);
      else if (p.kind === 'unsubscribe') p.resolve();
    }
    for (const item of this.queue.drain()) item.ack?.reject(error);
    const replies = [...this.replies.values()];
    this.replies.clear();
    for (const r of replies) {
      clearTimeout(r.timer);
      r.reject(error);
    }
    const subs = [...this.subs];
    this.subs.clear();
    this.matchCache.clear();
    const closedByUser = error.code === ClientErrorCode.closed;
    for (const sub of subs) sub[driver].close(closedByUser ? undefined : error);
    const first = this.firstOpen;
    this.firstOpen = undefined;
    first?.reject(error);
    this.open = undefined;
    this.setState('closed');
  }

  /**
   * Closes the client.
   * @example
   * await client.close();
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const conn = this.conn;
    this.conn = undefined;
    this.shutdown(new ConnectionError(ClientErrorCode.closed, 'client closed'));
    this.closing = conn ? conn.close(CloseCode.normal, '') : Promise.resolve();
    return this.closing;
  }

  // ---- requests -----------------------------------------------------------

  private nextId(): number {
    // 1 .. 2^32-1; 0 means "no acknowledgement" for PUBLISH.
    this.lastId = this.lastId >= 0xffffffff ? 1 : this.lastId + 1;
    return this.lastId;
  }

  private requestId(p: Pending): number {
    const id = this.nextId();
    this.pending.set(id, p);
    return id;
  }

  private send(frame: Parameters<Connection['send']>[0]): void {
    this.open!.send(frame);
  }

  private encode(codec: Codec, topic: string, value: unknown): Uint8Array {
    try {
      return codec.encode(value);
    } catch (err) {
      throw new CodecError(topic, `cannot encode the value for ${topic} with ${codec.name}: ${(err as Error)?.message ?? String(err)}`, err);
    }
  }

  subscribe(filter: string | readonly string[], handler?: Handler<unknown>, options: SubscribeOptions = {}): SubscribeResult<unknown> {
    const filters = typeof filter === 'string' ? [filter] : [...filter];
    let sub: Subscription<unknown> | undefined;
    let failure: unknown;
    try {
      if (filters.length === 0) throw new RequestError(ErrorCode.invalidFilter, 'subscribe needs at least one filter');
      for (const f of filters) {
        const problem = filterProblem(f);
        if (problem) throw new RequestError(ErrorCode.invalidFilter, `filter ${JSON.stringify(f)} ${problem}`);
      }
      if (this.state === 'closed') throw new ConnectionError(ClientErrorCode.closed, 'client closed');
      const codec = resolveCodec(options.codec, this.build.codecs, this.codec);
      if (options.resume) {
        const { epoch, offset } = options.resume;
        if (typeof epoch !== 'string' || epoch.length === 0 || epoch.length > 64 || !Number.isSafeInteger(offset) || offset < 0) {
          throw new TypeError('resume must be a position { epoch: string of 1..64 chars, offset: integer ≥ 0 } (sub.position)');
        }
      }
      if (options.history) checkHistoryOptions(options.history); // with `resume` too: the broker refuses the pair
      sub = new Subscription<unknown>(this, filters, codec, handler, options);
      this.subs.add(sub);
      this.matchCache.clear();
      if (this.open) this.sendSubscribe(sub);
    } catch (err) {
      failure = err;
    }
    const promise = (sub ? sub.ready.then(() => sub) : Promise.reject(failure)) as SubscribeResult<unknown>;
    promise.catch(noop); // the caller may only iterate; the iterator reports the failure too
    promise[Symbol.asyncIterator] = sub ? () => sub[Symbol.asyncIterator]() : () => ({ next: () => Promise.reject(failure) });
    return promise;
  }

  private sendSubscribe(sub: Subscription<unknown>): void {
    const id = this.requestId({ kind: 'subscribe', sub });
    const options: WireSubscribeOptions = {};
    if (!sub.retained) options.retained = false;
    options.resume = sub[driver].resumeFrom = sub.position;
    if (sub[driver].prefill !== undefined && options.resume === undefined) options.history = sub[driver].prefill;
    sub[driver].requestId = id;
    this.send({ op: Op.subscribe, id, filters: [...sub.filters], options });
  }

  /** @internal Called by Subscription.unsubscribe. */
  unsubscribe(sub: Subscription<unknown>): Promise<void> {
    this.matchCache.clear();
    if (!this.subs.delete(sub)) {
      sub[driver].close();
      return Promise.resolve();
    }
    if (sub[driver].requestId) this.snapshots.delete(sub[driver].requestId);
    sub[driver].close();
    return this.release(sub.filters);
  }

  /** Unsubscribes at the broker the filters that no remaining subscription uses. */
  private release(filters: readonly string[]): Promise<void> {
    const stillUsed = new Set<string>();
    for (const other of this.subs) for (const f of other.filters) stillUsed.add(f);
    const unused = filters.filter((f) => !stillUsed.has(f));
    if (unused.length === 0 || !this.open) return Promise.resolve();
    return new Promise<void>((resolve) => {
      try {
        this.send({ op: Op.unsubscribe, id: this.requestId({ kind: 'unsubscribe', resolve }), filters: unused });
      } catch {
        resolve(); // the connection is failing; the broker drops its subscriptions with it
      }
    });
  }

  /** @internal Called by Subscription when a handler throws. */
  reportHandlerError(error: unknown, sub: Subscription<unknown>, topic: string): void {
    this.report(new TopicastError(ClientErrorCode.handler, `handler of ${sub.filters.join(', ')} threw on ${topic}: ${(error as Error)?.message ?? String(error)}`, { cause: error }));
  }

  history(filter: string, options: HistoryOptions = {}): HistoryResult<unknown> {
    // One request now (the awaited page, also the iteration's first); iterating pages on from it.
    const fetch = async (request: HistoryRequest): Promise<HistoryPage<unknown>> => {
      const problem = filterProblem(filter);
      if (problem) throw new RequestError(ErrorCode.invalidFilter, `filter ${JSON.stringify(filter)} ${problem}`);
      checkHistoryOptions(options);
      const codec = resolveCodec(options.codec, this.build.codecs, this.codec);
      // Not queued while offline (unlike publishes): an answer from a broker reached later may be stale.
      if (!this.open) throw new ConnectionError(ClientErrorCode.connectionLost, 'not connected');
      return new Promise<HistoryPage<unknown>>((resolve, reject) => {
        const id = this.requestId({ kind: 'history', codec, rows: [], resolve, reject });
        this.send({ op: Op.history, id, filter, options: request });
      });
    };
    const first = fetch({ ...options, codec: undefined, pageSize: undefined } as HistoryRequest);
    first.catch(noop); // the caller may only iterate; the iterator reports the failure too
    return Object.assign(first, { [Symbol.asyncIterator]: () => historyPages(fetch, options, first) }) as HistoryResult<unknown>;
  }

  publish(topic: string, value: unknown, options: PublishOptions = {}): Promise<void> {
    try {
      const problem = topicProblem(topic);
      if (problem) throw new RequestError(ErrorCode.invalidTopic, `topic ${JSON.stringify(topic)} ${problem}`);
      const codec = resolveCodec(options.codec, this.build.codecs, this.codec);
      const contentType = options.contentType ?? codec.contentType;
      if (contentType !== undefined) {
        const problem = contentTypeProblem(contentType);
        if (problem) throw new TypeError(`content type ${JSON.stringify(contentType.slice(0, 64))} ${problem}`);
      }
      return this.publishBytes(topic, this.encode(codec, topic, value), options, contentType, replyProperties(options));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  request(topic: string, value: unknown, options: RequestOptions = {}): Promise<unknown> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!(timeoutMs > 0)) return Promise.reject(new TypeError('timeoutMs must be > 0'));
    if (this.state === 'closed') return Promise.reject(new ConnectionError(ClientErrorCode.closed, 'client closed'));
    // A 32-bit counter: unique among this client's requests in flight, and its reply topic is its own.
    this.lastCorrelation = (this.lastCorrelation + 1) >>> 0;
    const correlationData = new Uint8Array(4);
    new DataView(correlationData.buffer).setUint32(0, this.lastCorrelation);
    const key = hexOf(correlationData);
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(key);
        reject(new RequestError(ClientErrorCode.timeout, `no answer to the request on ${topic} within ${timeoutMs} ms`));
      }, timeoutMs);
      const entry: PendingReply = { resolve, reject, timer };
      this.replies.set(key, entry);
      const fail = (err: unknown) => {
        if (this.replies.get(key) !== entry) return;
        this.replies.delete(key);
        clearTimeout(timer);
        reject(err);
      };
      // No wait for the reply subscription's ACK: the broker takes a connection's frames in order, so it
      // is in place before the request is routed. A refused request reports the publish's refusal
      // (the command), else the subscription's (the answer could not come back).
      const subscribed = this.replySubscription();
      this.publish(topic, value, { codec: options.codec, ack: true, responseTopic: this.replyTopic, correlationData }).then(
        () => subscribed.then(undefined, fail),
        fail,
      );
    });
  }

  /** The one subscription every request's answer arrives on; made again after a refusal. */
  private replySubscription(): Promise<unknown> {
    if (this.replySub === undefined) {
      // Answers are decoded by the content type they carry, whatever the client's codec ('raw' pages too).
      const sub = this.subscribe(this.replyTopic, (value, meta) => this.onReply(value, meta), { retained: false, codec: this.build.codecs.auto ?? this.codec });
      this.replySub = sub;
      sub.catch(() => {
        if (this.replySub === sub) this.replySub = undefined;
      });
    }
    return this.replySub;
  }

  private onReply(value: unknown, meta: MessageMeta): void {
    if (meta.correlationData === undefined) return; // not an answer to one of ours
    const key = hexOf(meta.correlationData);
    const entry = this.replies.get(key);
    if (entry === undefined) return; // timed out already, or answered twice
    this.replies.delete(key);
    clearTimeout(entry.timer);
    entry.resolve(value);
  }

  reply(meta: Pick<MessageMeta, 'responseTopic' | 'correlationData'>, value: unknown, options: Omit<PublishOptions, 'responseTopic' | 'correlationData'> = {}): Promise<void> {
    if (meta.responseTopic === undefined) return Promise.reject(new TypeError('the message has no response topic: no answer was asked for'));
    return this.publish(meta.responseTopic, value, { ...options, correlationData: meta.correlationData });
  }

  clearRetained(topic: string, options: { ack?: boolean } = {}): Promise<void> {
    const problem = topicProblem(topic);
    if (problem) return Promise.reject(new RequestError(ErrorCode.invalidTopic, `topic ${JSON.stringify(topic)} ${problem}`));
    return this.publishBytes(topic, EMPTY, { retain: true, ack: options.ack }, undefined, undefined);
  }

  private publishBytes(topic: string, payload: Uint8Array, options: { retain?: boolean; ack?: boolean }, contentType: string | undefined, reply: ReplyProperties | undefined): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new ConnectionError(ClientErrorCode.closed, 'client closed'));
    const max = this.open?.info?.maxPayloadBytes;
    if (max !== undefined && max > 0 && payload.length > max) {
      return Promise.reject(new RequestError(ErrorCode.payloadTooLarge, `payload of ${payload.length} bytes exceeds the broker's ${max}`));
    }
    const flags = options.retain ? Flag.retain : 0;
    const open = this.leaving ? undefined : this.open;
    if (open && this.queue.length === 0 && open.bufferedAmount <= this.maxBufferedBytes) {
      if (!options.ack) {
        this.sendPublish(topic, payload, flags, contentType, reply, undefined);
        return Promise.resolve();
      }
      return new Promise<void>((resolve, reject) => this.sendPublish(topic, payload, flags, contentType, reply, { resolve, reject }));
    }
    const queued = this.enqueue(topic, payload, flags, contentType, reply, options.ack === true);
    if (open) this.scheduleFlush();
    return queued;
  }

  /** Sends queued publishes, in order, while the socket has room; polls again if some remain. */
  private flushQueue(): void {
    this.flushTimer = undefined;
    const open = this.leaving ? undefined : this.open;
    if (!open) return;
    while (this.queue.length > 0 && open.bufferedAmount <= this.maxBufferedBytes) {
      const item = this.queue.shift()!;
      this.sendPublish(item.topic, item.payload, item.flags, item.contentType, item.reply, item.ack);
    }
    if (this.queue.length > 0) this.scheduleFlush();
  }

  private scheduleFlush(): void {
    // Browsers give no drain event on WebSocket: poll bufferedAmount.
    this.flushTimer ??= setTimeout(() => {
      try {
        this.flushQueue();
      } catch (err) {
        this.report(new ConnectionError(ClientErrorCode.connectionLost, `send failed: ${(err as Error).message}`, undefined, { cause: err }));
      }
    }, FLUSH_POLL_MS);
  }

  private sendPublish(topic: string, payload: Uint8Array, flags: number, contentType: string | undefined, reply: ReplyProperties | undefined, ack: Queued['ack']): void {
    const id = ack ? this.requestId({ kind: 'publish', topic, ...ack }) : 0;
    const frame: Parameters<Connection['send']>[0] = contentType === undefined ? { op: Op.publish, id, topic, payload, flags } : { op: Op.publish, id, topic, payload, flags, contentType };
    if (reply !== undefined) frame.reply = reply;
    this.send(frame);
  }

  private enqueue(topic: string, payload: Uint8Array, flags: number, contentType: string | undefined, reply: ReplyProperties | undefined, wantAck: boolean): Promise<void> {
    let ack: Queued['ack'];
    const promise = wantAck ? new Promise<void>((resolve, reject) => (ack = { resolve, reject })) : Promise.resolve();
    const result = this.queue.push({ topic, payload, flags, contentType, reply, ack });
    if (result.kind === 'queued') return promise;
    if (result.kind === 'queued-dropped') {
      const dropped = result.dropped;
      const error = new QueueFullError(dropped.topic, `publish queue full (${this.queue.maxMessages}): dropped the oldest message, for ${dropped.topic}`);
      if (dropped.ack) dropped.ack.reject(error);
      else this.report(error);
      return promise;
    }
    const error = new QueueFullError(topic, `publish queue full (${this.queue.maxMessages}): message for ${topic} ${this.queue.overflow === 'error' ? 'refused' : 'dropped'}`);
    if (this.queue.overflow === 'error' || wantAck) {
      ack?.reject(error);
      return ack ? promise : Promise.reject(error);
    }
    this.report(error);
    return promise;
  }

  // ---- frames from the broker ---------------------------------------------

  private onFrame(frame: ServerFrame): void {
    switch (frame.op) {
      case Op.delivery:
        return this.dispatch(frame.topic, frame.payload, frame.flags, frame.offset, frame.contentType, frame.reply);
      case Op.ack:
        this.onAck(frame.id, frame.result ?? { retained: 0 });
        return this.leaveIfSettled();
      case Op.error:
        this.onError(frame.id, frame.code, frame.message);
        return this.leaveIfSettled();
      case Op.snapshotEnd: {
        const sub = this.snapshots.get(frame.id);
        this.snapshots.delete(frame.id);
        sub?.[driver].snapshotEnded();
        return;
      }
      case Op.drain:
        return this.onDrain(this.open!, frame.info.reconnectAfterMs);
      case Op.historyMessage:
        return this.onHistoryMessage(frame.id, frame.topic, frame.payload, frame.offset, frame.ts, frame.contentType);
      case Op.historyEnd: {
        const p = this.pending.get(frame.id);
        if (p?.kind !== 'history') return;
        this.pending.delete(frame.id);
        return p.resolve(Object.assign(p.rows, frame.info));
      }
      default:
        return; // welcome and pong are the connection's
    }
  }

  /**
   * The node drains: leave after `ms` (PROTOCOL.md §4.7); meanwhile it keeps serving. With
   * reconnect off there is nowhere to go: the application hears 'drain' and the broker's close ends it.
   */
  private onDrain(conn: Connection, ms: number): void {
    if (this.drained === conn) return; // a repeated DRAIN does not move the departure
    this.drained = conn;
    if (this.backoff) this.drainTimer = setTimeout(() => this.leave(conn), ms);
    this.events.emit('drain', { url: conn.url, reconnectAfterMs: ms });
  }

  /** Leaves a draining connection: a clean close (no will: this client is not going offline), then the planned reconnect. */
  private leave(conn: Connection): void {
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    if (this.leaving !== conn && this.awaitingAcks()) {
      // Acknowledged publishes in flight get their answer first (bounded); new ones wait in the queue.
      this.leaving = conn;
      this.drainTimer = setTimeout(() => this.leave(conn), DRAIN_SETTLE_MS);
      return;
    }
    void conn.close(CloseCode.normal, 'drain');
    this.lost(conn, new ConnectionError(ClientErrorCode.connectionLost, `left draining ${conn.url}`, CloseCode.goingAway));
  }

  private leaveIfSettled(): void {
    if (this.leaving && !this.awaitingAcks()) this.leave(this.leaving);
  }

  private awaitingAcks(): boolean {
    for (const p of this.pending.values()) if (p.kind === 'publish') return true;
    return false;
  }

  private onAck(id: number, result: AckResult): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    switch (p.kind) {
      case 'subscribe':
        if (p.sub.state === 'closed' || p.sub[driver].requestId !== id) return;
        if (result.retained + (result.replayed ?? 0) + (result.history ?? 0) > 0) this.snapshots.set(id, p.sub);
        p.sub[driver].acked(result);
        return;
      case 'publish':
      case 'unsubscribe':
        return p.resolve();
      case 'will':
        return;
    }
  }

  /** A row of a history answer (to its request) or of a subscribe prefill (to that subscription only). */
  private onHistoryMessage(id: number, topic: string, payload: Uint8Array, offset: number, ts: number, contentType: string | undefined): void {
    const p = this.pending.get(id);
    if (p?.kind === 'history') {
      const value = this.decode(p.codec, topic, payload, contentType);
      if (value !== UNDECODABLE) p.rows.push({ topic, value, ts, offset, payload, contentType });
      return;
    }
    const sub = this.snapshots.get(id);
    if (sub === undefined || sub.state !== 'snapshot') return;
    const value = this.decode(sub.codec, topic, payload, contentType);
    // Below the subscription's position (the ACK's offset): not `advance`d, they precede it.
    if (value !== UNDECODABLE) sub[driver].deliver(value, topic, 0, payload, offset, contentType, undefined, ts);
  }

  private onError(id: number, code: number, message: string): void {
    const error = errorFromCode(code, message);
    const p = this.pending.get(id);
    if (!p) {
      // id 0 or unknown: about a publish without ack, or the connection itself.
      this.report(error);
      return;
    }
    this.pending.delete(id);
    switch (p.kind) {
      case 'subscribe':
        // The refusal is atomic: none of the filters is subscribed by this request.
        if (p.sub.state === 'closed') return;
        this.subs.delete(p.sub);
        this.matchCache.clear();
        p.sub[driver].close(error);
        void this.release(p.sub.filters);
        return;
      case 'publish':
        return p.reject(error);
      case 'unsubscribe':
        this.report(error);
        return p.resolve();
      case 'will':
        this.report(error);
        return;
      case 'history':
        return p.reject(error);
    }
  }

  private dispatch(topic: string, payload: Uint8Array, flags: number, offset: number | undefined, contentType: string | undefined, reply: ReplyProperties | undefined): void {
    const retained = (flags & Flag.retain) !== 0;
    let matching = this.matchCache.get(topic);
    if (matching === undefined) {
      matching = [];
      for (const sub of this.subs) if (sub.matches(topic)) matching.push(sub);
      if (this.matchCache.size >= MATCH_CACHE_TOPICS) this.matchCache.clear();
      this.matchCache.set(topic, matching);
    }
    if (matching.length === 0) return;
    // Collect first: a handler may subscribe or unsubscribe while we deliver.
    let targets: Subscription<unknown>[] = [];
    let snapshotting = false;
    for (const sub of matching) {
      // A history delivery reaches a subscription once: not at or below its position (PROTOCOL.md §4.6).
      if ((sub.state === 'snapshot' || sub.state === 'live') && (offset === undefined || sub[driver].advance(offset))) {
        targets.push(sub);
        if (sub.state === 'snapshot') snapshotting = true;
      }
    }
    if (targets.length === 0) return;
    if (retained && snapshotting) targets = targets.filter((s) => s.state === 'snapshot');
    let codec: Codec | undefined;
    let value: unknown;
    let decoded: Map<Codec, unknown> | undefined; // only when subscriptions use different codecs
    for (const sub of targets) {
      if (sub.state === 'closed') continue;
      let v: unknown;
      if (codec === undefined || sub.codec === codec) {
        if (codec === undefined) {
          codec = sub.codec;
          value = this.decode(codec, topic, payload, contentType);
        }
        v = value;
      } else {
        decoded ??= new Map();
        if (!decoded.has(sub.codec)) decoded.set(sub.codec, this.decode(sub.codec, topic, payload, contentType));
        v = decoded.get(sub.codec);
      }
      if (v !== UNDECODABLE) sub[driver].deliver(v, topic, flags, payload, offset, contentType, reply);
    }
  }

  private decode(codec: Codec, topic: string, payload: Uint8Array, contentType: string | undefined): unknown {
    try {
      return codec.decode(payload, contentType);
    } catch (err) {
      this.report(new CodecError(topic, `cannot decode a message on ${topic} with ${codec.name}: ${(err as Error)?.message ?? String(err)}`, err));
      return UNDECODABLE;
    }
  }

  // ---- events ---------------------------------------------------------------

  private setState(state: ClientState): void {
    if (this.state === state) return;
    this.state = state;
    this.events.emit('state', state);
  }

  /** Emits 'error'. Without a listener, mistakes in application code (handlers, payloads) still get logged. */
  private report(error: TopicastError): void {
    if (this.events.count('error') > 0) {
      this.events.emit('error', error);
    } else if (error.code === ClientErrorCode.handler || error.code === ClientErrorCode.codec) {
      console.error('topicast:', error);
    }
  }
}

const UNDECODABLE: unknown = Symbol('undecodable');


/**
 * Creates a client for `url` (or a failover list) with the given build's codecs and transport.
 * Used by `connect` in index.ts (msgpackr) and core.ts (no msgpackr).
 */
export function openClient<Topics extends TopicMap>(url: string | readonly string[], options: ConnectOptions, build: ClientBuild): Promise<Client<Topics>> {
  try {
    const urls = typeof url === 'string' ? [url] : [...url];
    if (urls.length === 0) throw new TypeError('connect needs at least one URL');
    const client = new TopicastClient(urls, options, build);
    const wait = options.wait !== false;
    return client.start(wait).then(() => client as unknown as Client<Topics>);
  } catch (err) {
    return Promise.reject(err);
  }
}

export type { MessageMeta };

/**
 * The request/reply properties of a publish's options, checked here so a bad one fails this publish
 * instead of the connection (the broker closes on a malformed frame); undefined when there are none.
 */
function replyProperties({ responseTopic, correlationData }: PublishOptions): ReplyProperties | undefined {
  if (responseTopic === undefined && correlationData === undefined) return undefined;
  const problem = responseTopic === undefined ? undefined : topicProblem(responseTopic);
  if (problem) throw new RequestError(ErrorCode.invalidTopic, `response topic ${problem}`);
  if (correlationData !== undefined && !(correlationData instanceof Uint8Array && correlationData.length <= MAX_CORRELATION_BYTES)) {
    throw new TypeError(`correlationData: a Uint8Array of at most ${MAX_CORRELATION_BYTES} bytes`);
  }
  return { responseTopic, correlationData };
}
