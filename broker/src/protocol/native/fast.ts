/**
 * The two frames every message passes through, read and written without the generic
 * MessagePack codec (PROTOCOL.md §3): a plain PUBLISH `[3, id, topic, payload, flags]` read in
 * place, and a plain DELIVERY `[18, topic, payload, flags]` written in one pass. Each handles
 * only the common shape and answers `undefined` for anything else, which then goes through the
 * codec (`decodeClientFrame`, `encodeDelivery`): what they return is exactly what the codec
 * returns for the same input (test/unit/broker/protocol/native-fast.test.ts checks both ways).
 *
 * Why: at fan-out 1→100 the codec's generic walk, its array per frame and the copies cost
 * ≈ 0.9 µs per publish, paid once per publish but spread over only 100 deliveries
 * (bench/README.md "Fan-out 1→100: the per-publish cost").
 */
import { Flag, Op, type ClientFrame } from 'topicast/protocol';
import { isAsciiOf } from '../../session/limits.js';

type PublishFrame = Extract<ClientFrame, { op: typeof Op.publish }>;

/** Decodes topics already checked to be ASCII (so valid UTF-8, no byte-order mark). */
const ascii = new TextDecoder();

/**
 * A PUBLISH of the plain shape — five fields, the id a non-negative integer of at most 32 bits,
 * an ASCII topic (str), a payload (bin), flags 0 or retain — as the frame `decodeClientFrame`
 * makes of it (the payload copied, as there: the transport reuses `bytes`). Undefined for any
 * other shape, a malformed frame included: the codec then reads it and says what is wrong.
 * `lastTopic`: the topic this connection last published to (checked then); a repeat reuses its string.
 */
export function readPlainPublish(bytes: Uint8Array, lastTopic: string | undefined): PublishFrame | undefined {
  const end = bytes.length;
  if (end < 6 || bytes[0] !== 0x95 || bytes[1] !== Op.publish) return undefined;
  let pos = 2;
  // id: uint of at most 32 bits, in any of its encodings (all are within 0..2^32-1)
  let id: number;
  const i0 = bytes[pos]!;
  if (i0 < 0x80) {
    id = i0;
    pos += 1;
  } else if (i0 === 0xcc) {
    if (pos + 2 > end) return undefined;
    id = bytes[pos + 1]!;
    pos += 2;
  } else if (i0 === 0xcd) {
    if (pos + 3 > end) return undefined;
    id = (bytes[pos + 1]! << 8) | bytes[pos + 2]!;
    pos += 3;
  } else if (i0 === 0xce) {
    if (pos + 5 > end) return undefined;
    id = ((bytes[pos + 1]! << 24) >>> 0) + ((bytes[pos + 2]! << 16) | (bytes[pos + 3]! << 8) | bytes[pos + 4]!);
    pos += 5;
  } else return undefined;
  // topic: str
  if (pos >= end) return undefined;
  const t0 = bytes[pos]!;
  let topicLength: number;
  if ((t0 & 0xe0) === 0xa0) {
    topicLength = t0 & 0x1f;
    pos += 1;
  } else if (t0 === 0xd9) {
    if (pos + 2 > end) return undefined;
    topicLength = bytes[pos + 1]!;
    pos += 2;
  } else if (t0 === 0xda) {
    if (pos + 3 > end) return undefined;
    topicLength = (bytes[pos + 1]! << 8) | bytes[pos + 2]!;
    pos += 3;
  } else return undefined;
  const topicStart = pos;
  const topicEnd = pos + topicLength;
  if (topicEnd > end) return undefined;
  pos = topicEnd;
  // payload: bin
  if (pos >= end) return undefined;
  const b0 = bytes[pos]!;
  let payloadLength: number;
  if (b0 === 0xc4) {
    if (pos + 2 > end) return undefined;
    payloadLength = bytes[pos + 1]!;
    pos += 2;
  } else if (b0 === 0xc5) {
    if (pos + 3 > end) return undefined;
    payloadLength = (bytes[pos + 1]! << 8) | bytes[pos + 2]!;
    pos += 3;
  } else if (b0 === 0xc6) {
    if (pos + 5 > end) return undefined;
    payloadLength = ((bytes[pos + 1]! << 24) >>> 0) + ((bytes[pos + 2]! << 16) | (bytes[pos + 3]! << 8) | bytes[pos + 4]!);
    pos += 5;
  } else return undefined;
  const payloadStart = pos;
  const payloadEnd = pos + payloadLength;
  // flags: the last byte, 0 or retain (a positive fixint); nothing may follow
  if (payloadEnd + 1 !== end) return undefined;
  const flags = bytes[payloadEnd]!;
  if ((flags & ~Flag.retain) !== 0) return undefined;
  const topic = topicOf(bytes, topicStart, topicEnd, lastTopic);
  if (topic === undefined) return undefined;
  return { op: Op.publish, id, topic, payload: bytes.slice(payloadStart, payloadEnd), flags };
}

/** The topic's string: `lastTopic` itself when the bytes repeat it, else decoded (ASCII only; undefined otherwise, for the codec's UTF-8 check). */
function topicOf(bytes: Uint8Array, start: number, end: number, lastTopic: string | undefined): string | undefined {
  if (lastTopic !== undefined && isAsciiOf(bytes, start, end, lastTopic)) return lastTopic;
  for (let i = start; i < end; i++) if (bytes[i]! >= 0x80) return undefined;
  return ascii.decode(bytes.subarray(start, end));
}

/** The slab live frames are carved from, and how much of it is used. */
const SLAB_BYTES = 64 * 1024;
/** Larger frames get a buffer of their own. */
const MAX_SLAB_FRAME = 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabUsed = 0;

/**
 * `n` bytes for a live frame: a view into a shared slab for small frames. A buffer of its own
 * per frame cost an ArrayBuffer allocation (malloc, its tracking and sweeping: ≈ 4 % of the
 * broker's CPU at fan-out 1→100, --cpu-prof) per publish. A view keeps its whole slab alive, so
 * live frames are held only for the tick that writes them (protocol/native/session.ts caches
 * the last one instead of storing it on the message), and anything that keeps a frame longer
 * (the outbox behind a paced snapshot, conflation) copies it out first (session/outbox.ts `unshared`).
 */
function frameBytes(n: number, pooled: boolean): Uint8Array {
  if (!pooled || n > MAX_SLAB_FRAME) return new Uint8Array(n);
  if (slabUsed + n > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + n);
  slabUsed += n;
  return out;
}

/**
 * `encodeDelivery(topic, payload, flags)` (no offset, content type or reply properties) for an
 * ASCII topic and flags below 0x80, byte for byte as the codec writes it: the str header is
 * chosen by the topic's worst-case UTF-8 size (3 bytes per UTF-16 unit), as the codec reserves
 * room before writing. Undefined for anything else (the caller uses `encodeDelivery`).
 * `pooled`: a live frame, written into the shared slab (see `frameBytes`).
 */
export function writePlainDelivery(topic: string, payload: Uint8Array, flags: number, pooled = false): Uint8Array | undefined {
  const t = topic.length;
  if (flags >= 0x80 || flags < 0) return undefined;
  const max = t * 3;
  const strHeader = max < 32 ? 1 : max < 0x100 ? 2 : max < 0x10000 ? 3 : 5;
  const p = payload.length;
  const binHeader = p < 0x100 ? 2 : p < 0x10000 ? 3 : 5;
  for (let i = 0; i < t; i++) if (topic.charCodeAt(i) >= 0x80) return undefined; // before taking slab space
  const out = frameBytes(2 + strHeader + t + binHeader + p + 1, pooled);
  out[0] = 0x94;
  out[1] = Op.delivery;
  let pos = 2;
  if (strHeader === 1) out[pos++] = 0xa0 | t;
  else if (strHeader === 2) {
    out[pos++] = 0xd9;
    out[pos++] = t;
  } else if (strHeader === 3) {
    out[pos++] = 0xda;
    out[pos++] = t >>> 8;
    out[pos++] = t & 0xff;
  } else {
    out[pos++] = 0xdb;
    out[pos++] = t >>> 24;
    out[pos++] = (t >>> 16) & 0xff;
    out[pos++] = (t >>> 8) & 0xff;
    out[pos++] = t & 0xff;
  }
  for (let i = 0; i < t; i++) out[pos++] = topic.charCodeAt(i);
  if (binHeader === 2) {
    out[pos++] = 0xc4;
    out[pos++] = p;
  } else if (binHeader === 3) {
    out[pos++] = 0xc5;
    out[pos++] = p >>> 8;
    out[pos++] = p & 0xff;
  } else {
    out[pos++] = 0xc6;
    out[pos++] = p >>> 24;
    out[pos++] = (p >>> 16) & 0xff;
    out[pos++] = (p >>> 8) & 0xff;
    out[pos++] = p & 0xff;
  }
  out.set(payload, pos);
  out[pos + p] = flags;
  return out;
}
