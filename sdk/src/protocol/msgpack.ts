/**
 * A small, strict MessagePack codec for the native protocol's frames.
 *
 * Frames use a fixed subset of MessagePack: nil, booleans, integers (up to 2^53),
 * float64, str, bin, arrays and maps with string keys. Keeping this codec in the
 * wire contract (instead of msgpackr) keeps the SDK's core small enough for the
 * browser budget and gives the broker a decoder whose every limit is explicit.
 * msgpackr remains the default *payload* codec; payloads are opaque `bin` here.
 *
 * Invariants: decode never reads past the input, never recurses deeper than
 * `MAX_DEPTH`, never allocates more than the input could describe, and throws
 * only `DecodeError`. `bin` values are returned as copies unless `view` is set,
 * so they stay valid after the transport recycles its buffer (STYLE.md #4).
 */
import { DecodeError } from './errors.js';

export type Value = null | boolean | number | string | Uint8Array | Value[] | { [key: string]: Value };

const MAX_DEPTH = 8; // frames nest at most 3 levels; 8 leaves room without risking stack abuse

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** Encoder state reused across calls: one growing scratch buffer. */
class Writer {
  buf = new Uint8Array(256);
  view = new DataView(this.buf.buffer);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.pos, v);
    this.pos += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, v);
    this.pos += 4;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

const writer = new Writer();

function writeValue(w: Writer, v: Value | undefined): void {
  if (v === null || v === undefined) return w.u8(0xc0);
  if (v === false) return w.u8(0xc2);
  if (v === true) return w.u8(0xc3);
  if (typeof v === 'number') return writeNumber(w, v);
  if (typeof v === 'string') return writeString(w, v);
  if (v instanceof Uint8Array) {
    const n = v.length;
    if (n < 0x100) { w.u8(0xc4); w.u8(n); } else if (n < 0x10000) { w.u8(0xc5); w.u16(n); } else { w.u8(0xc6); w.u32(n); }
    return w.bytes(v);
  }
  if (Array.isArray(v)) {
    const n = v.length;
    if (n < 16) w.u8(0x90 | n); else if (n < 0x10000) { w.u8(0xdc); w.u16(n); } else { w.u8(0xdd); w.u32(n); }
    for (const item of v) writeValue(w, item);
    return;
  }
  const keys = Object.keys(v).filter((k) => v[k] !== undefined);
  const n = keys.length;
  if (n < 16) w.u8(0x80 | n); else if (n < 0x10000) { w.u8(0xde); w.u16(n); } else { w.u8(0xdf); w.u32(n); }
  for (const k of keys) {
    writeString(w, k);
    writeValue(w, v[k]);
  }
}

function writeNumber(w: Writer, v: number): void {
  if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
    if (v >= 0) {
      if (v < 0x80) return w.u8(v);
      if (v < 0x100) { w.u8(0xcc); return w.u8(v); }
      if (v < 0x10000) { w.u8(0xcd); return w.u16(v); }
      if (v < 0x100000000) { w.u8(0xce); return w.u32(v); }
      w.u8(0xcf); w.u32(Math.floor(v / 0x100000000)); return w.u32(v >>> 0);
    }
    if (v >= -32) return w.u8(v & 0xff);
    if (v >= -0x80) { w.u8(0xd0); return w.u8(v & 0xff); }
    if (v >= -0x8000) { w.u8(0xd1); return w.u16(v & 0xffff); }
    if (v >= -0x80000000) { w.u8(0xd2); return w.u32(v >>> 0); }
    w.u8(0xd3); w.u32(Math.floor(v / 0x100000000) >>> 0); return w.u32(v >>> 0);
  }
  w.u8(0xcb);
  w.ensure(8);
  w.view.setFloat64(w.pos, v);
  w.pos += 8;
}

function writeString(w: Writer, s: string): void {
  // Worst case 3 bytes per UTF-16 unit; reserve header + body, then back-patch the length.
  const max = s.length * 3;
  w.ensure(5 + max);
  const headerSize = max < 32 ? 1 : max < 0x100 ? 2 : max < 0x10000 ? 3 : 5;
  const start = w.pos + headerSize;
  const { written } = textEncoder.encodeInto(s, w.buf.subarray(start));
  const n = written ?? 0;
  if (headerSize === 1) w.buf[w.pos] = 0xa0 | n;
  else if (headerSize === 2) { w.buf[w.pos] = 0xd9; w.buf[w.pos + 1] = n; }
  else if (headerSize === 3) { w.buf[w.pos] = 0xda; w.view.setUint16(w.pos + 1, n); }
  else { w.buf[w.pos] = 0xdb; w.view.setUint32(w.pos + 1, n); }
  w.pos = start + n;
}

/** Encodes a value; the result is a fresh Uint8Array owned by the caller. */
export function encode(value: Value): Uint8Array {
  writer.pos = 0;
  writeValue(writer, value);
  return writer.buf.slice(0, writer.pos);
}

export interface DecodeOptions {
  /** Return `bin` values as views into the input instead of copies (only when the input outlives them). */
  view?: boolean;
}

class Reader {
  pos = 0;
  readonly dv: DataView;
  constructor(readonly buf: Uint8Array, readonly viewBins: boolean) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new DecodeError('truncated MessagePack input');
  }
  u8(): number { this.need(1); return this.buf[this.pos++]!; }
  u16(): number { this.need(2); const v = this.dv.getUint16(this.pos); this.pos += 2; return v; }
  u32(): number { this.need(4); const v = this.dv.getUint32(this.pos); this.pos += 4; return v; }

  str(n: number): string {
    this.need(n);
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return textDecoder.decode(bytes);
    } catch {
      throw new DecodeError('invalid UTF-8 in string');
    }
  }

  bin(n: number): Uint8Array {
    this.need(n);
    const out = this.viewBins ? this.buf.subarray(this.pos, this.pos + n) : this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  array(n: number, depth: number): Value[] {
    // Each element takes at least one byte: a length beyond the rest of the input is a lie.
    if (n > this.buf.length - this.pos) throw new DecodeError('array length exceeds input');
    const out = new Array<Value>(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n: number, depth: number): { [key: string]: Value } {
    if (n * 2 > this.buf.length - this.pos) throw new DecodeError('map length exceeds input');
    const out: { [key: string]: Value } = {}; // '__proto__' is refused below, so a plain object is safe
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      if (typeof key !== 'string') throw new DecodeError('map keys must be strings');
      if (key === '__proto__') throw new DecodeError('forbidden map key');
      out[key] = this.value(depth + 1);
    }
    return out;
  }

  value(depth: number): Value {
    if (depth > MAX_DEPTH) throw new DecodeError('MessagePack nesting too deep');
    const b = this.u8();
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return this.map(b & 0x0f, depth);
    if ((b & 0xf0) === 0x90) return this.array(b & 0x0f, depth);
    if ((b & 0xe0) === 0xa0) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xca: { this.need(4); const v = this.dv.getFloat32(this.pos); this.pos += 4; return v; }
      case 0xcb: { this.need(8); const v = this.dv.getFloat64(this.pos); this.pos += 8; return v; }
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: { const hi = this.u32(); const lo = this.u32(); return safeInt(hi * 0x100000000 + lo, hi < 0x200000); }
      case 0xd0: { const v = this.u8(); return v > 0x7f ? v - 0x100 : v; }
      case 0xd1: { const v = this.u16(); return v > 0x7fff ? v - 0x10000 : v; }
      case 0xd2: { this.need(4); const v = this.dv.getInt32(this.pos); this.pos += 4; return v; }
      case 0xd3: { this.need(8); const hi = this.dv.getInt32(this.pos); const lo = this.dv.getUint32(this.pos + 4); this.pos += 8; return safeInt(hi * 0x100000000 + lo, hi >= -0x200000 && hi < 0x200000); }
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: throw new DecodeError(`unsupported MessagePack type 0x${b.toString(16)}`);
    }
  }
}

function safeInt(v: number, safe: boolean): number {
  if (!safe) throw new DecodeError('integer outside the safe range');
  return v;
}

/** Decodes exactly one value occupying the whole input; throws `DecodeError` otherwise. */
export function decode(bytes: Uint8Array, options: DecodeOptions = {}): Value {
  const r = new Reader(bytes, options.view === true);
  const v = r.value(0);
  if (r.pos !== bytes.length) throw new DecodeError('trailing bytes after MessagePack value');
  return v;
}
