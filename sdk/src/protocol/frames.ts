/**
 * Native protocol v1 frames (PROTOCOL.md §3): each WebSocket binary message is
 * one MessagePack array whose first element is the op code. This file is the
 * only place that knows the array layout; everything else sees typed frames.
 *
 * Decoders validate the full shape and throw only `DecodeError`; encoders trust
 * their (typed) input. `bin` payloads are copied out of the input (see msgpack.ts).
 */
import { DecodeError } from './errors.js';
import { decode, encode, type Value } from './msgpack.js';
import { contentTypeFromWire, contentTypeToWire } from './payload.js';

export const PROTOCOL_VERSION = 1;
/** WebSocket subprotocol negotiated at the upgrade (PROTOCOL.md §1). */
export const SUBPROTOCOL = 'topicast.v1';

/** Op codes: client → broker below 16, broker → client from 16 (PROTOCOL.md §3). */
export const Op = {
  subscribe: 1,
  unsubscribe: 2,
  publish: 3,
  ping: 4,
  will: 5,
  history: 6,
  ack: 16,
  error: 17,
  delivery: 18,
  snapshotEnd: 19,
  pong: 20,
  welcome: 21,
  drain: 22,
  historyMessage: 23,
  historyEnd: 24,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

/** Bits of the publish and delivery `flags` field (PROTOCOL.md §3.3). */
export const Flag = {
  /** publish: keep as the topic's retained value; delivery: this is a retained value. */
  retain: 1,
  /** delivery: replayed from history after a resume (PROTOCOL.md §4.6), not live. */
  replayed: 2,
} as const;

/**
 * A point in the broker's history stream (PROTOCOL.md §4.6): `offset` of the last message seen,
 * in the stream named by `epoch`. Offsets increase by one per history-enabled message, broker-wide.
 */
export interface StreamPosition {
  epoch: string;
  offset: number;
}

export interface SubscribeOptions {
  /** Deliver retained values first (default true). */
  retained?: boolean;
  /** Replay what was missed since this position, then go live (PROTOCOL.md §4.6). */
  resume?: StreamPosition;
  /** Prefill from history before going live (PROTOCOL.md §4.8): the newest `limit` messages published since `sinceMs`. */
  history?: HistoryPrefill;
}

/**
 * What a SUBSCRIBE prefills from history (PROTOCOL.md §4.8); absent fields are open.
 * @example
 * const prefill: HistoryPrefill = { sinceMs: Date.now() - 3_600_000, limit: 600 };
 */
export interface HistoryPrefill {
  limit?: number;
  sinceMs?: number;
}

/**
 * A HISTORY request's window and order (PROTOCOL.md §4.8); every bound inclusive, absent ones open.
 * @example
 * const lastHour: HistoryRequest = { sinceMs: Date.now() - 3_600_000, newestFirst: true, limit: 100 };
 */
export interface HistoryRequest {
  /** Most rows (default and ceiling: the broker's `historyMaxRows`). */
  limit?: number;
  /** Publish times (broker receive time, ms since the epoch). */
  sinceMs?: number;
  untilMs?: number;
  /** History offsets (PROTOCOL.md §4.6). */
  fromOffset?: number;
  toOffset?: number;
  /** The `limit` newest of the window, newest first; default: the `limit` oldest, oldest first. */
  newestFirst?: boolean;
  /** The epoch the offsets belong to: the broker refuses the request (invalidRequest) when its stream has another. */
  epoch?: string;
}

/**
 * HISTORY_END: how a history answer ended (PROTOCOL.md §4.8).
 * @example
 * const page = await client.history('devices/#', { limit: 100 });
 * if (page.more) console.log('more after offset', page.at(-1)?.offset, 'in epoch', page.epoch);
 */
export interface HistoryEndInfo {
  /** Rows sent for the request. */
  count: number;
  /** False when a message that belongs in the answer may be gone (history bounds, or topics without history). */
  complete: boolean;
  /** The window holds more messages than the limit let through (page on with the offsets). */
  more: boolean;
  /** The stream's epoch and last offset when the request was processed. */
  epoch: string;
  offset: number;
}

/**
 * Request/reply properties of a PUBLISH or DELIVERY (PROTOCOL.md §9), MQTT 5's Response Topic and
 * Correlation Data (MQTT 5 §4.10): a responder publishes its answer to `responseTopic`, carrying the
 * same `correlationData`, so the requester can tell which request it answers.
 * @example
 * encodeFrame({ op: Op.publish, id: 1, topic: 'svc/double', payload, flags: 0, reply: { responseTopic: 'replies/me', correlationData: Uint8Array.of(1) } });
 */
export interface ReplyProperties {
  /** The topic the answer goes to (a topic name: no wildcards). */
  responseTopic?: string;
  /** Opaque bytes the responder copies into its answer. */
  correlationData?: Uint8Array;
}

/**
 * Longest correlation data accepted: MQTT 5's binary data limit, so it can always be written to MQTT.
 * @example
 * if (data.length > MAX_CORRELATION_BYTES) throw new RangeError('too long');
 */
export const MAX_CORRELATION_BYTES = 0xffff;

export interface WillMessage {
  topic: string;
  payload: Uint8Array;
  retain: boolean;
  /** The payload's content type (PROTOCOL.md §8); undefined = unknown. */
  contentType?: string;
}

export type ClientFrame =
  | { op: typeof Op.subscribe; id: number; filters: string[]; options: SubscribeOptions }
  | { op: typeof Op.unsubscribe; id: number; filters: string[] }
  | { op: typeof Op.publish; id: number; topic: string; payload: Uint8Array; flags: number; contentType?: string; reply?: ReplyProperties }
  | { op: typeof Op.ping; id: number }
  | { op: typeof Op.will; id: number; will: WillMessage | null }
  | { op: typeof Op.history; id: number; filter: string; options: HistoryRequest };

export interface SubscribeResult {
  /** Number of retained messages that follow before the SNAPSHOT_END frame for this request. */
  retained: number;
  /** Number of replayed messages that follow (after the retained ones) before SNAPSHOT_END; present with `resume`. */
  replayed?: number;
  /** The history stream's epoch; present when the broker keeps history (PROTOCOL.md §4.6). */
  epoch?: string;
  /** The stream's last offset when the SUBSCRIBE was processed; every later delivery has a larger one. */
  offset?: number;
  /** Present with `resume`: true when every message missed since the position is replayed (PROTOCOL.md §4.6). */
  recovered?: boolean;
  /** Present with the `history` option: HISTORY_MESSAGE frames that follow before SNAPSHOT_END (PROTOCOL.md §4.8). */
  history?: number;
  /** Present with the `history` option: false when the prefill may miss messages (see HistoryEndInfo.complete). */
  historyComplete?: boolean;
}

export interface DrainInfo {
  /** Reconnect after this delay, preferably to another node (spread per connection by the broker). */
  reconnectAfterMs: number;
}

export interface WelcomeInfo {
  /** Protocol version spoken by the broker. */
  version: number;
  /** Broker software and version, e.g. `topicast/0.1.0`. */
  server: string;
  /** Largest payload the broker accepts. */
  maxPayloadBytes: number;
  /** The broker closes a connection silent for this long; clients ping well within it. */
  idleTimeoutSec: number;
}

export type ServerFrame =
  | { op: typeof Op.ack; id: number; result: SubscribeResult | null }
  | { op: typeof Op.error; id: number; code: number; message: string }
  | { op: typeof Op.delivery; topic: string; payload: Uint8Array; flags: number; offset?: number; contentType?: string; reply?: ReplyProperties }
  | { op: typeof Op.snapshotEnd; id: number }
  | { op: typeof Op.pong; id: number }
  | { op: typeof Op.welcome; info: WelcomeInfo }
  | { op: typeof Op.drain; info: DrainInfo }
  | { op: typeof Op.historyMessage; id: number; topic: string; payload: Uint8Array; offset: number; ts: number; contentType?: string }
  | { op: typeof Op.historyEnd; id: number; info: HistoryEndInfo };

export type Frame = ClientFrame | ServerFrame;

// ---- encoding -------------------------------------------------------------

/**
 * Encodes any frame but a history answer's (`encodeHistoryMessage`, `encodeHistoryEnd`: the broker's
 * alone, kept out of this switch so browser builds do not carry them). Deliveries have a fast path: `encodeDelivery`.
 */
export function encodeFrame(frame: Exclude<Frame, { op: typeof Op.historyMessage | typeof Op.historyEnd }>): Uint8Array {
  switch (frame.op) {
    case Op.subscribe: {
      const opts: { [k: string]: Value } = {};
      if (frame.options.retained === false) opts.retained = false;
      if (frame.options.resume) opts.resume = [frame.options.resume.epoch, frame.options.resume.offset];
      if (frame.options.history) opts.history = { ...frame.options.history } as { [k: string]: Value };
      return encode([frame.op, frame.id, frame.filters, opts]);
    }
    case Op.unsubscribe: return encode([frame.op, frame.id, frame.filters]);
    case Op.publish: {
      const reply = replyToWire(frame.reply);
      if (reply !== undefined) return encode([frame.op, frame.id, frame.topic, frame.payload, frame.flags, frame.contentType === undefined ? null : contentTypeToWire(frame.contentType), reply]);
      return encode(frame.contentType === undefined
        ? [frame.op, frame.id, frame.topic, frame.payload, frame.flags]
        : [frame.op, frame.id, frame.topic, frame.payload, frame.flags, contentTypeToWire(frame.contentType)]);
    }
    case Op.ping: return encode([frame.op, frame.id]);
    case Op.will: {
      const w = frame.will;
      const will = w ? (w.contentType === undefined ? [w.topic, w.payload, w.retain] : [w.topic, w.payload, w.retain, contentTypeToWire(w.contentType)]) : null;
      return encode([frame.op, frame.id, will]);
    }
    case Op.ack: return encode([frame.op, frame.id, frame.result ? { ...frame.result } : null]); // undefined fields are left out
    case Op.error: return encode([frame.op, frame.id, frame.code, frame.message]);
    case Op.delivery: return encodeDelivery(frame.topic, frame.payload, frame.flags, frame.offset, frame.contentType, frame.reply);
    case Op.snapshotEnd: return encode([frame.op, frame.id]);
    case Op.pong: return encode([frame.op, frame.id]);
    case Op.welcome: return encode([frame.op, { ...frame.info }]);
    case Op.drain: return encode([frame.op, { reconnectAfterMs: frame.info.reconnectAfterMs }]);
    case Op.history: return encode([frame.op, frame.id, frame.filter, { ...frame.options } as { [k: string]: Value }]);
  }
}

/** Encodes any frame, a history answer's included (brokers and tests; browser builds use `encodeFrame`). */
export function encodeAnyFrame(frame: Frame): Uint8Array {
  if (frame.op === Op.historyMessage) return encodeHistoryMessage(frame.id, frame.topic, frame.payload, frame.offset, frame.ts, frame.contentType);
  if (frame.op === Op.historyEnd) return encodeHistoryEnd(frame.id, frame.info);
  return encodeFrame(frame);
}

/** HISTORY_END (PROTOCOL.md §4.8). */
export function encodeHistoryEnd(id: number, info: HistoryEndInfo): Uint8Array {
  return encode([Op.historyEnd, id, { ...info }]);
}

/**
 * One row of a history answer (PROTOCOL.md §4.8): encoded per row as the outbox paces the answer;
 * the content type (PROTOCOL.md §5) last when known, as in DELIVERY.
 */
export function encodeHistoryMessage(id: number, topic: string, payload: Uint8Array, offset: number, ts: number, contentType?: string): Uint8Array {
  return encode(contentType === undefined
    ? [Op.historyMessage, id, topic, payload, offset, ts]
    : [Op.historyMessage, id, topic, payload, offset, ts, contentTypeToWire(contentType)]);
}


/**
 * The hot path: one delivery frame, encoded once per publish and sent to every native subscriber.
 * `offset` is the message's history position, for history-enabled topics only (PROTOCOL.md §4.6);
 * `contentType` the payload's format (PROTOCOL.md §8), after the offset (nil when there is none);
 * `reply` the request/reply properties (PROTOCOL.md §9), seventh, only when there are some.
 */
export function encodeDelivery(topic: string, payload: Uint8Array, flags: number, offset?: number, contentType?: string, reply?: ReplyProperties): Uint8Array {
  const wireReply = replyToWire(reply);
  if (wireReply !== undefined) return encode([Op.delivery, topic, payload, flags, offset ?? null, contentType === undefined ? null : contentTypeToWire(contentType), wireReply]);
  if (contentType !== undefined) return encode([Op.delivery, topic, payload, flags, offset ?? null, contentTypeToWire(contentType)]);
  return encode(offset === undefined ? [Op.delivery, topic, payload, flags] : [Op.delivery, topic, payload, flags, offset]);
}

/** The wire map of request/reply properties (PROTOCOL.md §9), or undefined when there are none. */
function replyToWire(reply: ReplyProperties | undefined): { [k: string]: Value } | undefined {
  const out: { [k: string]: Value } = {};
  if (reply?.responseTopic !== undefined) out.responseTopic = reply.responseTopic;
  if (reply?.correlationData !== undefined) out.correlationData = reply.correlationData;
  return reply?.responseTopic ?? reply?.correlationData ? out : undefined;
}

// ---- decoding -------------------------------------------------------------

function fail(what: string): never {
  throw new DecodeError(what);
}

function arrayOf(bytes: Uint8Array): Value[] {
  const v = decode(bytes);
  if (!Array.isArray(v) || v.length === 0) fail('frame must be a non-empty array');
  return v;
}

function id(v: Value | undefined): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) fail('request id must be an integer in 0..2^32-1');
  return v;
}

function str(v: Value | undefined, what: string): string {
  if (typeof v !== 'string') fail(`${what} must be a string`);
  return v;
}

function bin(v: Value | undefined, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(`${what} must be bin`);
  return v;
}

function flags(v: Value | undefined): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff) fail('flags must be an integer in 0..255');
  return v;
}

/** PUBLISH knows only *retain*; every other bit is reserved and must be 0 (PROTOCOL.md §3.3). */
function publishFlags(v: Value | undefined): number {
  const f = flags(v);
  if ((f & ~Flag.retain) !== 0) fail(`publish flags ${f}: reserved bits must be 0`);
  return f;
}

function strings(v: Value | undefined, what: string): string[] {
  if (!Array.isArray(v) || v.length === 0) fail(`${what} must be a non-empty array of strings`);
  for (const s of v) if (typeof s !== 'string') fail(`${what} must be a non-empty array of strings`);
  return v as string[];
}

function offset(v: Value | undefined, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`${what} must be a non-negative integer`);
  return v;
}

/** An epoch is a string of 1..64 chars, in ACKs too: a client must be able to send back every epoch it is given. */
function isEpoch(v: Value | undefined): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= 64;
}

function position(v: Value | undefined): StreamPosition {
  if (!Array.isArray(v) || v.length !== 2 || !isEpoch(v[0])) {
    fail('subscribe option resume must be [epoch: string of 1..64 chars, offset]');
  }
  return { epoch: v[0], offset: offset(v[1], 'resume offset') };
}

function arity(a: Value[], min: number, max: number): void {
  if (a.length < min || a.length > max) fail(`op ${String(a[0])} takes ${max === Infinity ? `at least ${min - 1}` : `${min - 1}..${max - 1}`} fields, got ${a.length - 1}`);
}

/**
 * Reads the request/reply map of a frame (PROTOCOL.md §9). Clients' maps are checked strictly
 * (unknown keys are malformed, §7); a broker's map may carry keys a later v1 adds.
 */
function replyFromWire(v: Value | undefined, strict: boolean): ReplyProperties | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) fail('reply properties must be a map');
  const out: ReplyProperties = {};
  for (const key of Object.keys(v)) {
    const x = v[key];
    if (key === 'responseTopic') {
      if (typeof x !== 'string' || x.length === 0) fail('responseTopic must be a non-empty string');
      out.responseTopic = x;
    } else if (key === 'correlationData') {
      if (!(x instanceof Uint8Array && x.length <= MAX_CORRELATION_BYTES)) fail(`correlationData must be bin of at most ${MAX_CORRELATION_BYTES} bytes`);
      out.correlationData = x;
    } else if (strict) fail(`unknown reply property ${JSON.stringify(key.slice(0, 32))}`);
  }
  return out.responseTopic === undefined && out.correlationData === undefined ? undefined : out;
}

/** Decodes a frame sent by a client; throws `DecodeError` on anything malformed. */
export function decodeClientFrame(bytes: Uint8Array): ClientFrame {
  const a = arrayOf(bytes);
  switch (a[0]) {
    case Op.subscribe: {
      arity(a, 3, 4);
      const o = a[3];
      if (o !== undefined && o !== null && (typeof o !== 'object' || Array.isArray(o) || o instanceof Uint8Array)) fail('subscribe options must be a map');
      const options: SubscribeOptions = {};
      if (o && typeof o === 'object') {
        for (const key of Object.keys(o)) if (key !== 'retained' && key !== 'resume' && key !== 'history') fail(`unknown subscribe option ${JSON.stringify(key.slice(0, 32))}`);
        const m = o as { [k: string]: Value };
        if ('retained' in m) {
          if (typeof m.retained !== 'boolean') fail('subscribe option retained must be a boolean');
          options.retained = m.retained;
        }
        if ('resume' in m) options.resume = position(m.resume);
        if ('history' in m) options.history = historyFields(m.history, ['limit', 'sinceMs'], 'subscribe option history') as HistoryPrefill;
      }
      return { op: Op.subscribe, id: id(a[1]), filters: strings(a[2], 'filters'), options };
    }
    case Op.unsubscribe:
      arity(a, 3, 3);
      return { op: Op.unsubscribe, id: id(a[1]), filters: strings(a[2], 'filters') };
    case Op.publish: {
      arity(a, 5, 7); // PROTOCOL.md §8.1, §9: content type sixth, request/reply properties seventh
      const frame: ClientFrame = { op: Op.publish, id: id(a[1]), topic: str(a[2], 'topic'), payload: bin(a[3], 'payload'), flags: publishFlags(a[4]) };
      const contentType = contentTypeFromWire(a[5]);
      if (contentType !== undefined) frame.contentType = contentType;
      const reply = replyFromWire(a[6], true);
      if (reply !== undefined) frame.reply = reply;
      return frame;
    }
    case Op.ping:
      arity(a, 2, 2);
      return { op: Op.ping, id: id(a[1]) };
    case Op.will: {
      arity(a, 3, 3);
      const w = a[2];
      if (w === null) return { op: Op.will, id: id(a[1]), will: null };
      if (!Array.isArray(w) || w.length < 3 || w.length > 4 || typeof w[2] !== 'boolean') fail('will must be [topic, payload, retain, content type?] or nil');
      const will: WillMessage = { topic: str(w[0], 'will topic'), payload: bin(w[1], 'will payload'), retain: w[2] };
      const contentType = contentTypeFromWire(w[3]);
      if (contentType !== undefined) will.contentType = contentType;
      return { op: Op.will, id: id(a[1]), will };
    }
    case Op.history:
      arity(a, 4, 4);
      return { op: Op.history, id: id(a[1]), filter: str(a[2], 'history filter'), options: historyFields(a[3], HISTORY_KEYS, 'history options') };
    default:
      return fail(`unknown client op ${JSON.stringify(a[0])}`);
  }
}

const HISTORY_KEYS = ['limit', 'sinceMs', 'untilMs', 'fromOffset', 'toOffset', 'newestFirst', 'epoch'] as const;

/** A HISTORY request's (or a prefill's) option map: known keys only, integers ≥ 0 (limit ≥ 1), newestFirst a boolean, epoch an epoch. */
function historyFields(v: Value | undefined, keys: readonly string[], what: string): HistoryRequest {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) fail(`${what} must be a map`);
  const out: { [k: string]: number | boolean | string } = {};
  for (const key of Object.keys(v)) {
    if (!keys.includes(key)) fail(`unknown ${what} key ${JSON.stringify(key.slice(0, 32))}`);
    const x = v[key];
    if (key === 'epoch') {
      if (!isEpoch(x)) fail(`${what} epoch must be a string of 1..64 chars`);
      out[key] = x;
    } else if (key === 'newestFirst') {
      if (typeof x !== 'boolean') fail(`${what} newestFirst must be a boolean`);
      out[key] = x;
    } else {
      out[key] = offset(x, `${what} ${key}`);
      if (key === 'limit' && x === 0) fail(`${what} limit must be at least 1`);
    }
  }
  return out as HistoryRequest;
}

function num(v: Value | undefined, what: string): number {
  if (typeof v !== 'number') fail(`${what} must be a number`);
  return v;
}

/** Decodes a frame sent by the broker; throws `DecodeError` on anything malformed. */
export function decodeServerFrame(bytes: Uint8Array): ServerFrame {
  const a = arrayOf(bytes);
  switch (a[0]) {
    case Op.delivery: {
      arity(a, 4, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      const frame: ServerFrame = { op: Op.delivery, topic: str(a[1], 'topic'), payload: bin(a[2], 'payload'), flags: flags(a[3]) };
      if (a[4] !== undefined && a[4] !== null) frame.offset = offset(a[4], 'delivery offset');
      const contentType = contentTypeFromWire(a[5]); // PROTOCOL.md §8.1
      if (contentType !== undefined) frame.contentType = contentType;
      // PROTOCOL.md §9; a seventh field that is not a map is a later addition this client does not know (§7).
      const r = a[6];
      const reply = r !== null && typeof r === 'object' && !Array.isArray(r) && !(r instanceof Uint8Array) ? replyFromWire(r, false) : undefined;
      if (reply !== undefined) frame.reply = reply;
      return frame;
    }
    case Op.ack: {
      arity(a, 3, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      const r = a[2];
      if (r === null) return { op: Op.ack, id: id(a[1]), result: null };
      if (typeof r !== 'object' || Array.isArray(r) || r instanceof Uint8Array) fail('ack result must be a map or nil');
      const result: SubscribeResult = { retained: num(r.retained, 'retained count') };
      if (r.replayed !== undefined) result.replayed = num(r.replayed, 'replayed count');
      if (r.epoch !== undefined) {
        if (!isEpoch(r.epoch)) fail('epoch must be a string of 1..64 chars');
        result.epoch = r.epoch;
      }
      if (r.offset !== undefined) result.offset = offset(r.offset, 'offset');
      if (r.recovered !== undefined) {
        if (typeof r.recovered !== 'boolean') fail('recovered must be a boolean');
        result.recovered = r.recovered;
      }
      if (r.history !== undefined) result.history = offset(r.history, 'count');
      if (typeof r.historyComplete === 'boolean') result.historyComplete = r.historyComplete;
      return { op: Op.ack, id: id(a[1]), result };
    }
    case Op.error:
      arity(a, 4, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      return { op: Op.error, id: id(a[1]), code: num(a[2], 'error code'), message: str(a[3], 'error message') };
    case Op.snapshotEnd:
      arity(a, 2, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      return { op: Op.snapshotEnd, id: id(a[1]) };
    case Op.pong:
      arity(a, 2, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      return { op: Op.pong, id: id(a[1]) };
    case Op.welcome: {
      arity(a, 2, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      const m = a[1];
      if (!m || typeof m !== 'object' || Array.isArray(m) || m instanceof Uint8Array) fail('welcome must carry a map');
      return {
        op: Op.welcome,
        info: {
          version: num(m.version, 'version'),
          server: str(m.server, 'server'),
          maxPayloadBytes: num(m.maxPayloadBytes, 'maxPayloadBytes'),
          idleTimeoutSec: num(m.idleTimeoutSec, 'idleTimeoutSec'),
        },
      };
    }
    case Op.drain: {
      arity(a, 2, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      const m = a[1];
      if (!m || typeof m !== 'object' || Array.isArray(m) || m instanceof Uint8Array) fail('drain must carry a map');
      return { op: Op.drain, info: { reconnectAfterMs: offset(m.reconnectAfterMs, 'reconnectAfterMs') } };
    }
    case Op.historyMessage: {
      arity(a, 6, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      const frame: ServerFrame = {
        op: Op.historyMessage, id: id(a[1]), topic: str(a[2], 'topic'), payload: bin(a[3], 'payload'),
        offset: offset(a[4], 'offset'), ts: num(a[5], 'ts'),
      };
      const contentType = contentTypeFromWire(a[6]); // PROTOCOL.md §5.1
      if (contentType !== undefined) frame.contentType = contentType;
      return frame;
    }
    case Op.historyEnd: {
      arity(a, 3, Infinity); // PROTOCOL.md §7: later v1 brokers may append fields
      const m = a[2];
      if (!m || typeof m !== 'object' || Array.isArray(m) || m instanceof Uint8Array || typeof m.complete !== 'boolean' || typeof m.more !== 'boolean' || !isEpoch(m.epoch)) {
        fail('bad history end');
      }
      return {
        op: Op.historyEnd, id: id(a[1]),
        info: { count: offset(m.count, 'count'), complete: m.complete, more: m.more, epoch: m.epoch, offset: offset(m.offset, 'offset') },
      };
    }
    default:
      return fail(`unknown server op ${JSON.stringify(a[0])}`);
  }
}
