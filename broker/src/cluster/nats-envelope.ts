/**
 * The bytes a message carries on NATS between Topicast nodes: a small binary header followed by
 * the payload, untouched. One format for live messages, retained values in the stream and wills
 * in the KV bucket, so each has its flags and MQTT properties with it.
 *
 * Layout (big-endian), version 1:
 *   u8 version | u8 flags (bit 0 retain, bits 1-2 qos, bit 3 properties present, bit 4 topic present)
 *   u8 origin length | origin (UTF-8 node id, ≤ 255 bytes)
 *   f64 run (random per bus instance: a restarted node with the same id starts a new sequence)
 *   f64 node sequence (per run, +1 per live publish: the receiver's dedupe key)
 *   f64 stream sequence (the retained stream's seq for a live retained message; 0 otherwise)
 *   [u32 properties length | properties (MessagePack)]
 *   [u16 topic length | topic (UTF-8)]   only for wills: a live or retained message's topic is its subject
 *   payload
 * Why not NATS headers: they are text (`NATS/1.0\r\nKey: value`), parsed into a map per message
 * by the client; this header is 28 + origin bytes, read through one scratch view with no allocation but the
 * payload copy. Cost: live messages are written into shared chunks (EnvelopeWriter: no allocation
 * per message but its view); other encodes allocate header + payload bytes; one copy per decode.
 */
import { pack, unpack } from 'msgpackr';
import type { MessageProperties } from '../core/message.js';
import { BrokerError } from '../core/errors.js';

export const ENVELOPE_VERSION = 1;
const FIXED_BYTES = 3 + 24;
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

export interface Envelope {
  readonly retain: boolean;
  readonly qos: 0 | 1 | 2;
  readonly origin: string;
  readonly run: number;
  readonly nodeSeq: number;
  readonly streamSeq: number;
  readonly properties: MessageProperties | undefined;
  readonly payload: Uint8Array;
  /** Only for wills (their KV key is not the topic). */
  readonly topic?: string | undefined;
}

/** Thrown for bytes that are not a version-1 envelope (a foreign publisher on our subjects, a newer node). */
export class EnvelopeError extends BrokerError {
  override readonly name = 'EnvelopeError';
  constructor(message: string) {
    super('envelope', message);
  }
}

/** Origin bytes of a node id, checked once (an envelope holds at most 255). */
export function encodeOrigin(origin: string): Uint8Array {
  const bytes = utf8Encoder.encode(origin);
  if (bytes.length > 255) throw new EnvelopeError(`node id longer than 255 bytes: ${origin.slice(0, 32)}…`);
  return bytes;
}

/** Bytes of the envelope of a message with these parts (header + payload). */
function envelopeBytes(origin: Uint8Array, props: Uint8Array | undefined, topic: Uint8Array | undefined, payloadBytes: number): number {
  return FIXED_BYTES + origin.length + (props ? 4 + props.length : 0) + (topic ? 2 + topic.length : 0) + payloadBytes;
}

/** Writes an envelope at `at` of `out` (room checked by the caller); returns where it ends. */
function writeEnvelope(
  out: Uint8Array, view: DataView, at: number,
  retain: boolean, qos: 0 | 1 | 2, origin: Uint8Array, run: number, nodeSeq: number, streamSeq: number,
  props: Uint8Array | undefined, topic: Uint8Array | undefined, payload: Uint8Array,
): number {
  out[at] = ENVELOPE_VERSION;
  out[at + 1] = (retain ? 1 : 0) | (qos << 1) | (props ? 8 : 0) | (topic ? 16 : 0);
  out[at + 2] = origin.length;
  out.set(origin, at + 3);
  at += 3 + origin.length;
  view.setFloat64(at, run);
  view.setFloat64(at + 8, nodeSeq);
  view.setFloat64(at + 16, streamSeq);
  at += 24;
  if (props) {
    view.setUint32(at, props.length);
    out.set(props, at + 4);
    at += 4 + props.length;
  }
  if (topic) {
    view.setUint16(at, topic.length);
    out.set(topic, at + 2);
    at += 2 + topic.length;
  }
  out.set(payload, at);
  return at + payload.length;
}

export function encodeEnvelope(e: Envelope): Uint8Array {
  const origin = encodeOrigin(e.origin);
  const props = e.properties === undefined ? undefined : (pack(e.properties) as Uint8Array);
  const topic = e.topic === undefined ? undefined : utf8Encoder.encode(e.topic);
  if (topic && topic.length > 65535) throw new EnvelopeError('topic longer than 65535 bytes');
  const out = new Uint8Array(envelopeBytes(origin, props, topic, e.payload.length));
  writeEnvelope(out, new DataView(out.buffer), 0, e.retain, e.qos, origin, e.run, e.nodeSeq, e.streamSeq, props, topic, e.payload);
  return out;
}

/**
 * Encodes the live messages of one node (the hot path: one per message crossing the bus) into
 * shared chunks instead of one allocation each: an envelope is a view of the current chunk, and
 * a new chunk starts when one is full. Bytes once written are never written again, so a view
 * handed to the NATS client stays valid however long the client keeps it (it copies views into
 * its own write buffer when it flushes). Cost: one chunk (and DataView) per `chunkBytes` of
 * envelopes; a chunk stays alive while any of its views does.
 */
export class EnvelopeWriter {
  private readonly origin: Uint8Array;
  private chunk = new Uint8Array(0);
  private view = new DataView(this.chunk.buffer);
  private at = 0;

  constructor(origin: string, private readonly chunkBytes = 64 * 1024) {
    this.origin = encodeOrigin(origin);
  }

  encode(retain: boolean, qos: 0 | 1 | 2, run: number, nodeSeq: number, streamSeq: number, properties: MessageProperties | undefined, payload: Uint8Array): Uint8Array {
    const props = properties === undefined ? undefined : (pack(properties) as Uint8Array);
    const bytes = envelopeBytes(this.origin, props, undefined, payload.length);
    if (this.at + bytes > this.chunk.length) {
      this.chunk = new Uint8Array(Math.max(this.chunkBytes, bytes));
      this.view = new DataView(this.chunk.buffer);
      this.at = 0;
    }
    const start = this.at;
    this.at = writeEnvelope(this.chunk, this.view, start, retain, qos, this.origin, run, nodeSeq, streamSeq, props, undefined, payload);
    return this.chunk.subarray(start, this.at);
  }
}

// Decoding allocates nothing per message but the envelope, its payload copy and new strings:
// floats go through one scratch view, and the origin string of the previous envelope is reused
// when the bytes are the same (a node receives runs of messages from the same few peers).
const scratch = new Uint8Array(8);
const scratchView = new DataView(scratch.buffer);
let lastOriginBytes = new Uint8Array(0);
let lastOrigin = '';

function readFloat64(bytes: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) scratch[i] = bytes[at + i]!;
  return scratchView.getFloat64(0);
}

function decodeOrigin(bytes: Uint8Array, length: number): string {
  if (length === lastOriginBytes.length) {
    let same = true;
    for (let i = 0; i < length && same; i++) same = bytes[3 + i] === lastOriginBytes[i];
    if (same) return lastOrigin;
  }
  let origin: string;
  try {
    origin = utf8Decoder.decode(bytes.subarray(3, 3 + length));
  } catch {
    throw new EnvelopeError('envelope origin is not UTF-8');
  }
  lastOriginBytes = bytes.slice(3, 3 + length);
  lastOrigin = origin;
  return origin;
}

export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length < FIXED_BYTES) throw new EnvelopeError(`envelope of ${bytes.length} bytes is too short`);
  if (bytes[0] !== ENVELOPE_VERSION) throw new EnvelopeError(`unknown envelope version ${bytes[0]}`);
  const flags = bytes[1]!;
  const qos = (flags >> 1) & 3;
  if (qos > 2 || flags > 31) throw new EnvelopeError(`bad envelope flags 0x${flags.toString(16)}`);
  const originBytes = bytes[2]!;
  if (bytes.length < FIXED_BYTES + originBytes) throw new EnvelopeError('envelope truncated in its origin');
  const origin = decodeOrigin(bytes, originBytes);
  let at = 3 + originBytes;
  const run = readFloat64(bytes, at);
  const nodeSeq = readFloat64(bytes, at + 8);
  const streamSeq = readFloat64(bytes, at + 16);
  at += 24;
  let properties: MessageProperties | undefined;
  if (flags & 8) {
    if (bytes.length < at + 4) throw new EnvelopeError('envelope truncated in its properties length');
    const n = bytes[at]! * 0x1000000 + ((bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!);
    if (bytes.length < at + 4 + n) throw new EnvelopeError('envelope truncated in its properties');
    try {
      properties = unpack(bytes.subarray(at + 4, at + 4 + n)) as MessageProperties;
    } catch (err) {
      throw new EnvelopeError(`envelope properties are not MessagePack: ${(err as Error).message}`);
    }
    if (typeof properties !== 'object' || properties === null) throw new EnvelopeError('envelope properties are not a map');
    // MessagePack gives a Uint8Array for a bin read from a Uint8Array; the MQTT encoder (mqtt-packet) writes Buffers.
    const cd = properties.correlationData as unknown;
    if (cd instanceof Uint8Array && !Buffer.isBuffer(cd)) properties.correlationData = Buffer.from(cd.buffer, cd.byteOffset, cd.byteLength);
    else if (cd !== undefined && !(cd instanceof Uint8Array)) throw new EnvelopeError('envelope correlationData is not bytes');
    at += 4 + n;
  }
  let topic: string | undefined;
  if (flags & 16) {
    if (bytes.length < at + 2) throw new EnvelopeError('envelope truncated in its topic length');
    const n = (bytes[at]! << 8) | bytes[at + 1]!;
    if (bytes.length < at + 2 + n) throw new EnvelopeError('envelope truncated in its topic');
    try {
      topic = utf8Decoder.decode(bytes.subarray(at + 2, at + 2 + n));
    } catch {
      throw new EnvelopeError('envelope topic is not UTF-8');
    }
    at += 2 + n;
  }
  // A copy: the client may reuse its read buffer, and the router may keep the payload (retained).
  return { retain: (flags & 1) === 1, qos: qos as 0 | 1 | 2, origin, run, nodeSeq, streamSeq, properties, payload: bytes.slice(at), topic };
}
