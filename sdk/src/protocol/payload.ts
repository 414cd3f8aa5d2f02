/**
 * Payload formats (PROTOCOL.md §8): a payload is bytes plus an optional content type that travels
 * with the message from every protocol to every protocol (native frame field, MQTT 5 Content Type,
 * HTTP Content-Type). This file holds the rules every Topicast component shares:
 *
 * - `formatOf(contentType)`: which of the formats the SDK knows a content type names;
 * - the native wire form of a content type (`contentTypeToWire` / `contentTypeFromWire`);
 * - `decodeUntagged(payload)`: what an untagged payload (MQTT 3.1.1, mosquitto_pub, curl without a
 *   type) means: empty → undefined, UTF-8 JSON → its value, other UTF-8 → the string, else bytes;
 * - `msgpackToJson(payload)`: the broker's one conversion of a MessagePack payload into readable
 *   bytes for MQTT subscribers (and HTTP streams), done once per message, never per subscriber.
 *
 * Pure: no I/O, no globals beyond TextEncoder/TextDecoder, so it runs in browsers and the broker.
 */
import { DecodeError } from './errors.js';

/** The content types Topicast names itself (MIME essences, as sent on MQTT 5 and HTTP). */
export const ContentType = {
  msgpack: 'application/msgpack',
  json: 'application/json',
  text: 'text/plain',
  bytes: 'application/octet-stream',
} as const;
export type ContentType = (typeof ContentType)[keyof typeof ContentType];

/**
 * What a content type means to a decoder. `unknown`: no content type (decode by the untagged rules);
 * `other`: a content type none of the built-in codecs reads (delivered as bytes).
 */
export type PayloadFormat = 'msgpack' | 'json' | 'text' | 'bytes' | 'unknown' | 'other';

/** The MIME essence: type/subtype, lower case, parameters and spaces dropped. */
export function mimeEssence(contentType: string): string {
  const semi = contentType.indexOf(';');
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/**
 * The format a content type names. MessagePack has no registered type: `application/msgpack`,
 * `application/x-msgpack` and `application/vnd.msgpack` all count; JSON includes `+json` suffixes;
 * every `text/*` is text.
 */
export function formatOf(contentType: string | undefined): PayloadFormat {
  if (contentType === undefined) return 'unknown';
  // Fast path: the exact forms Topicast itself sends.
  switch (contentType) {
    case ContentType.msgpack: return 'msgpack';
    case ContentType.json: return 'json';
    case ContentType.text: return 'text';
    case ContentType.bytes: return 'bytes';
  }
  const e = mimeEssence(contentType);
  if (e === '') return 'unknown';
  if (e === 'application/msgpack' || e === 'application/x-msgpack' || e === 'application/vnd.msgpack') return 'msgpack';
  if (e === 'application/json' || e.endsWith('+json')) return 'json';
  if (e.startsWith('text/')) return 'text';
  if (e === 'application/octet-stream') return 'bytes';
  return 'other';
}

/** Longest content type accepted on any wire: MQTT 5 allows 65,535 bytes, nobody needs more than a line. */
export const MAX_CONTENT_TYPE_LENGTH = 255;

/**
 * Why a content type is refused (too long, control characters), or undefined when it is fine.
 * Checked at every edge so a content type can always be written back to every protocol.
 */
export function contentTypeProblem(contentType: string): string | undefined {
  if (contentType.length === 0) return 'is empty';
  if (contentType.length > MAX_CONTENT_TYPE_LENGTH) return `is longer than ${MAX_CONTENT_TYPE_LENGTH} characters`;
  for (let i = 0; i < contentType.length; i++) {
    const c = contentType.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return 'holds a control character';
  }
  return undefined;
}

// Native wire form (PROTOCOL.md §8.1): the four types Topicast names travel as one byte.
const WIRE_CODES: { readonly [ct: string]: number } = {
  [ContentType.msgpack]: 1,
  [ContentType.json]: 2,
  [ContentType.text]: 3,
  [ContentType.bytes]: 4,
};
const FROM_WIRE: readonly (string | undefined)[] = [undefined, ContentType.msgpack, ContentType.json, ContentType.text, ContentType.bytes];

/** A content type as the native frames carry it: 1..4 for Topicast's own types, else the string. */
export function contentTypeToWire(contentType: string): number | string {
  return WIRE_CODES[contentType] ?? contentType;
}

/** Reads a frame's content-type field; nil or absent is no content type. Throws DecodeError. */
export function contentTypeFromWire(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') {
    const ct = Number.isInteger(v) ? FROM_WIRE[v] : undefined;
    if (ct === undefined) throw new DecodeError(`content type code must be 1..${FROM_WIRE.length - 1}, got ${v}`);
    return ct;
  }
  if (typeof v !== 'string') throw new DecodeError('content type must be a code or a string');
  const problem = contentTypeProblem(v);
  if (problem) throw new DecodeError(`content type ${problem}`);
  return v;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** The payload as UTF-8 text, or undefined when it is not valid UTF-8. */
export function utf8Text(payload: Uint8Array): string | undefined {
  try {
    return utf8.decode(payload);
  } catch {
    return undefined;
  }
}

// C0 control characters other than tab, LF and CR, and DEL: valid UTF-8, but not text anyone typed.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/**
 * The value of an untagged payload (no content type: MQTT 3.1.1, `mosquitto_pub -m`, curl without a
 * type): empty → undefined; UTF-8 text that is JSON (`7`, `48.2`, `true`, `{"v":1}`) → that value;
 * other UTF-8 text → the string; anything else (not UTF-8, or holding control characters other
 * than tab, CR and LF) → the bytes.
 * @example
 * decodeUntagged(new TextEncoder().encode('48.2')); // 48.2
 * decodeUntagged(new TextEncoder().encode('online')); // 'online'
 */
export function decodeUntagged(payload: Uint8Array): unknown {
  if (payload.length === 0) return undefined;
  const text = utf8Text(payload);
  if (text === undefined || CONTROL.test(text)) return payload;
  if (looksLikeJson(text)) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // not JSON after all: the text itself
    }
  }
  return text;
}

/** Cheap pre-check so plain words never pay for a JSON.parse exception. */
function looksLikeJson(text: string): boolean {
  let i = 0;
  while (i < text.length && (text.charCodeAt(i) === 0x20 || text.charCodeAt(i) === 0x0a || text.charCodeAt(i) === 0x0d || text.charCodeAt(i) === 0x09)) i++;
  if (i === text.length) return false;
  const c = text.charCodeAt(i);
  // { [ " - digit t f n
  return c === 0x7b || c === 0x5b || c === 0x22 || c === 0x2d || (c >= 0x30 && c <= 0x39) || c === 0x74 || c === 0x66 || c === 0x6e;
}

// ---- MessagePack → JSON ----------------------------------------------------------------------

/** Deepest nesting converted; deeper payloads stay MessagePack (as-published). */
const MAX_JSON_DEPTH = 64;

/** What `msgpackToJson` made of a payload: the bytes to send and their content type. */
export interface ConvertedPayload {
  payload: Uint8Array;
  contentType: ContentType;
}

class NotConvertible extends Error {}

/**
 * Converts one MessagePack value into readable bytes for subscribers that cannot read MessagePack
 * (MQTT clients, SSE): a top-level string becomes its UTF-8 text (`text/plain`, so `online` stays
 * `online` for shell scripts and Home Assistant), top-level bytes stay bytes
 * (`application/octet-stream`), anything else becomes JSON (`application/json`). Inside JSON:
 * bytes become base64 strings, NaN and ±Infinity become null, integers beyond 2^53 keep every
 * digit, a timestamp extension becomes an ISO 8601 string, other extensions become null, map keys
 * that are not strings become their JSON text. Returns undefined when the payload is not one
 * complete MessagePack value (or nests deeper than 64): it is then sent as published.
 *
 * Cost: one pass over the input writing JSON bytes straight into a reused scratch buffer (strings
 * are copied byte for byte, escaped where JSON needs it), then one copy out.
 * @example
 * msgpackToJson(Uint8Array.of(0xcb, 0x40, 0x48, 0x19, 0x99, 0x99, 0x99, 0x99, 0x9a)); // bytes of "48.2", application/json
 */
export function msgpackToJson(payload: Uint8Array): ConvertedPayload | undefined {
  if (payload.length === 0) return undefined;
  const r = new JsonWriter(payload);
  try {
    const first = payload[0]!;
    // Top-level str → the text itself; top-level bin → the bytes.
    if ((first >= 0xa0 && first <= 0xbf) || first === 0xd9 || first === 0xda || first === 0xdb) {
      const s = r.readStrBytes(first);
      r.end();
      if (!isUtf8(s)) return undefined;
      return { payload: s, contentType: ContentType.text };
    }
    if (first === 0xc4 || first === 0xc5 || first === 0xc6) {
      const b = r.readBin(first);
      r.end();
      return { payload: b, contentType: ContentType.bytes };
    }
    r.value(0);
    r.end();
    return { payload: r.output(), contentType: ContentType.json };
  } catch (err) {
    if (err instanceof NotConvertible || err instanceof RangeError) return undefined;
    throw err;
  } finally {
    r.release();
  }
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** base64 of bytes, without depending on Buffer or btoa. */
export function base64(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  if (i < bytes.length) {
    const n = (bytes[i]! << 16) | ((i + 1 < bytes.length ? bytes[i + 1]! : 0) << 8);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + (i + 1 < bytes.length ? B64[(n >> 6) & 63]! : '=') + '=';
  }
  return out;
}

/** Whether bytes are valid UTF-8 (ASCII checked inline, the rest by the fatal decoder). */
function isUtf8(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) return utf8Text(b) !== undefined;
  return true;
}

const HEX = '0123456789abcdef';
/** One scratch buffer for every conversion: the broker converts once per message, on one thread. */
let scratch: Uint8Array = new Uint8Array(1024);
let scratchInUse = false;

/** A single-pass MessagePack reader that writes JSON bytes as it goes (no intermediate objects). */
class JsonWriter {
  private pos = 0;
  private out: Uint8Array;
  private at = 0;
  private readonly dv: DataView;
  private readonly borrowed: boolean;

  constructor(private readonly b: Uint8Array) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    // Re-entrancy (a conversion inside a conversion) cannot happen today; stay correct if it does.
    this.borrowed = !scratchInUse;
    scratchInUse = true;
    this.out = this.borrowed ? scratch : new Uint8Array(256);
  }

  release(): void {
    if (!this.borrowed) return;
    if (this.out.length <= 1 << 16) scratch = this.out; // keep a grown buffer, within reason
    scratchInUse = false;
  }

  output(): Uint8Array {
    return this.out.slice(0, this.at);
  }

  end(): void {
    if (this.pos !== this.b.length) throw new NotConvertible('trailing bytes');
  }

  private room(n: number): void {
    if (this.at + n <= this.out.length) return;
    let size = this.out.length * 2;
    while (size < this.at + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.out.subarray(0, this.at));
    this.out = next;
  }

  private byte(c: number): void {
    this.room(1);
    this.out[this.at++] = c;
  }

  private ascii(s: string): void {
    this.room(s.length);
    for (let i = 0; i < s.length; i++) this.out[this.at++] = s.charCodeAt(i);
  }

  private need(n: number): void {
    if (this.pos + n > this.b.length) throw new NotConvertible('truncated');
  }

  private u8(): number {
    this.need(1);
    return this.b[this.pos++]!;
  }

  private u16(): number {
    this.need(2);
    const v = this.dv.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  private u32(): number {
    this.need(4);
    const v = this.dv.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  private take(n: number): Uint8Array {
    this.need(n);
    const s = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  readStrBytes(first: number): Uint8Array {
    this.pos++;
    const n = first <= 0xbf ? first & 0x1f : first === 0xd9 ? this.u8() : first === 0xda ? this.u16() : this.u32();
    return this.take(n);
  }

  readBin(first: number): Uint8Array {
    this.pos++;
    const n = first === 0xc4 ? this.u8() : first === 0xc5 ? this.u16() : this.u32();
    return this.take(n);
  }

  /** A MessagePack str of `n` bytes as a JSON string: copied, escaped where JSON requires. */
  private str(n: number): void {
    this.need(n);
    const b = this.b;
    const start = this.pos;
    const end = start + n;
    this.pos = end;
    this.room(n * 6 + 2); // worst case: every byte a \u00XX escape
    const out = this.out;
    let at = this.at;
    let ascii = true;
    out[at++] = 0x22;
    for (let i = start; i < end; i++) {
      const c = b[i]!;
      if (c >= 0x20 && c !== 0x22 && c !== 0x5c) {
        if (c >= 0x80) ascii = false;
        out[at++] = c;
      } else if (c === 0x22 || c === 0x5c) {
        out[at++] = 0x5c;
        out[at++] = c;
      } else {
        // \u00XX for control characters
        out[at++] = 0x5c; out[at++] = 0x75; out[at++] = 0x30; out[at++] = 0x30;
        out[at++] = HEX.charCodeAt(c >> 4); out[at++] = HEX.charCodeAt(c & 15);
      }
    }
    out[at++] = 0x22;
    if (!ascii && utf8Text(b.subarray(start, end)) === undefined) throw new NotConvertible('a string is not UTF-8');
    this.at = at;
  }

  private num(v: number): void {
    this.ascii(Number.isFinite(v) ? String(v) : 'null');
  }

  private ext(n: number): void {
    const type = this.u8();
    const data = this.take(n);
    if (type !== 0xff) return this.ascii('null'); // only the timestamp extension (-1) has a JSON meaning
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let ms: number;
    if (n === 4) ms = dv.getUint32(0) * 1000;
    else if (n === 8) {
      const hi = dv.getUint32(0);
      const nsec = hi >>> 2;
      ms = ((hi & 3) * 0x100000000 + dv.getUint32(4)) * 1000 + Math.floor(nsec / 1e6);
    } else if (n === 12) ms = Number(dv.getBigInt64(4)) * 1000 + Math.floor(dv.getUint32(0) / 1e6);
    else return this.ascii('null');
    const d = new Date(ms);
    this.ascii(Number.isNaN(d.getTime()) ? 'null' : `"${d.toISOString()}"`);
  }

  private key(depth: number): void {
    const first = this.b[this.pos];
    if (first !== undefined && ((first >= 0xa0 && first <= 0xbf) || first === 0xd9 || first === 0xda || first === 0xdb)) {
      this.pos++;
      return this.str(first <= 0xbf ? first & 0x1f : first === 0xd9 ? this.u8() : first === 0xda ? this.u16() : this.u32());
    }
    // Any other key: its JSON text, as a JSON string.
    const from = this.at;
    this.value(depth);
    const text = this.out.slice(from, this.at);
    this.at = from;
    this.byte(0x22);
    for (const c of text) {
      if (c === 0x22 || c === 0x5c) this.byte(0x5c);
      this.byte(c);
    }
    this.byte(0x22);
  }

  value(depth: number): void {
    if (depth > MAX_JSON_DEPTH) throw new NotConvertible('too deep');
    const t = this.u8();
    if (t <= 0x7f) return this.ascii(String(t));
    if (t >= 0xe0) return this.ascii(String(t - 0x100));
    if (t >= 0x80 && t <= 0x8f) return this.map(t & 0x0f, depth);
    if (t >= 0x90 && t <= 0x9f) return this.array(t & 0x0f, depth);
    if (t >= 0xa0 && t <= 0xbf) return this.str(t & 0x1f);
    switch (t) {
      case 0xc0: return this.ascii('null');
      case 0xc2: return this.ascii('false');
      case 0xc3: return this.ascii('true');
      case 0xc4: return this.ascii(`"${base64(this.take(this.u8()))}"`);
      case 0xc5: return this.ascii(`"${base64(this.take(this.u16()))}"`);
      case 0xc6: return this.ascii(`"${base64(this.take(this.u32()))}"`);
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: { this.need(4); const v = this.dv.getFloat32(this.pos); this.pos += 4; return this.num(v); }
      case 0xcb: { this.need(8); const v = this.dv.getFloat64(this.pos); this.pos += 8; return this.num(v); }
      case 0xcc: return this.ascii(String(this.u8()));
      case 0xcd: return this.ascii(String(this.u16()));
      case 0xce: return this.ascii(String(this.u32()));
      case 0xcf: { this.need(8); const v = this.dv.getBigUint64(this.pos); this.pos += 8; return this.ascii(v.toString()); }
      case 0xd0: { this.need(1); const v = this.dv.getInt8(this.pos); this.pos += 1; return this.ascii(String(v)); }
      case 0xd1: { this.need(2); const v = this.dv.getInt16(this.pos); this.pos += 2; return this.ascii(String(v)); }
      case 0xd2: { this.need(4); const v = this.dv.getInt32(this.pos); this.pos += 4; return this.ascii(String(v)); }
      case 0xd3: { this.need(8); const v = this.dv.getBigInt64(this.pos); this.pos += 8; return this.ascii(v.toString()); }
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: throw new NotConvertible(`reserved type byte 0x${t.toString(16)}`);
    }
  }

  private array(n: number, depth: number): void {
    // Each element takes at least one byte: a count beyond the input is a lie, not an allocation.
    if (n > this.b.length - this.pos) throw new NotConvertible('array count exceeds input');
    this.byte(0x5b);
    for (let i = 0; i < n; i++) {
      if (i > 0) this.byte(0x2c);
      this.value(depth + 1);
    }
    this.byte(0x5d);
  }

  private map(n: number, depth: number): void {
    if (n * 2 > this.b.length - this.pos) throw new NotConvertible('map count exceeds input');
    this.byte(0x7b);
    for (let i = 0; i < n; i++) {
      if (i > 0) this.byte(0x2c);
      this.key(depth + 1);
      this.byte(0x3a);
      this.value(depth + 1);
    }
    this.byte(0x7d);
  }
}
