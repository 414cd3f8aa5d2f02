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
 * by the client; this header is 28 + origin bytes, read with a DataView and no allocation but the
 * payload copy. Cost: one allocation of header + payload bytes per encode, one copy per decode.
 */
import { pack, unpack } from 'msgpackr';
import type { MessageProperties } from '../core/message.js';

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
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
}

export function encodeEnvelope(e: Envelope): Uint8Array {
  const origin = utf8Encoder.encode(e.origin);
  if (origin.length > 255) throw new EnvelopeError(`node id longer than 255 bytes: ${e.origin.slice(0, 32)}…`);
  const props = e.properties === undefined ? undefined : (pack(e.properties) as Uint8Array);
  const topic = e.topic === undefined ? undefined : utf8Encoder.encode(e.topic);
  if (topic && topic.length > 65535) throw new EnvelopeError('topic longer than 65535 bytes');
  const headerBytes = FIXED_BYTES + origin.length + (props ? 4 + props.length : 0) + (topic ? 2 + topic.length : 0);
  const out = new Uint8Array(headerBytes + e.payload.length);
  const view = new DataView(out.buffer);
  out[0] = ENVELOPE_VERSION;
  out[1] = (e.retain ? 1 : 0) | (e.qos << 1) | (props ? 8 : 0) | (topic ? 16 : 0);
  out[2] = origin.length;
  out.set(origin, 3);
  let at = 3 + origin.length;
  view.setFloat64(at, e.run);
  view.setFloat64(at + 8, e.nodeSeq);
  view.setFloat64(at + 16, e.streamSeq);
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
  out.set(e.payload, at);
  return out;
}

export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length < FIXED_BYTES) throw new EnvelopeError(`envelope of ${bytes.length} bytes is too short`);
  if (bytes[0] !== ENVELOPE_VERSION) throw new EnvelopeError(`unknown envelope version ${bytes[0]}`);
  const flags = bytes[1]!;
  const qos = (flags >> 1) & 3;
  if (qos > 2 || flags > 31) throw new EnvelopeError(`bad envelope flags 0x${flags.toString(16)}`);
  const originBytes = bytes[2]!;
  if (bytes.length < FIXED_BYTES + originBytes) throw new EnvelopeError('envelope truncated in its origin');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let origin: string;
  try {
    origin = utf8Decoder.decode(bytes.subarray(3, 3 + originBytes));
  } catch {
    throw new EnvelopeError('envelope origin is not UTF-8');
  }
  let at = 3 + originBytes;
  const run = view.getFloat64(at);
  const nodeSeq = view.getFloat64(at + 8);
  const streamSeq = view.getFloat64(at + 16);
  at += 24;
  let properties: MessageProperties | undefined;
  if (flags & 8) {
    if (bytes.length < at + 4) throw new EnvelopeError('envelope truncated in its properties length');
    const n = view.getUint32(at);
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
    const n = view.getUint16(at);
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
