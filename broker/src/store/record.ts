/**
 * Record format of the persistent stores (broker/STORAGE.md "On disk"), and the retained store's body.
 *
 *   record = u32le bodyLength | u32le crc32(body) | body        (every store: frameRecord / readFrameAt)
 *   body   = MessagePack [kind, topic, payload?, qos?, properties?]   (the retained store)
 *            kind 1 = set (payload non-empty), kind 2 = delete (topic only)
 *
 * Invariants: a body is never empty and never longer than MAX_BODY_BYTES, so a
 * zero-filled or garbage tail never parses as a record; the CRC covers the whole
 * body. A record that is short, oversized or fails its CRC is a torn tail only at the
 * very end of the newest segment; anywhere else it is damage (store/scan.ts, STORAGE.md "Damage").
 * Cost: one MessagePack encode + one CRC32 per write; decode is the same on load.
 */
import { crc32 } from './crc32.js';
import { Packr } from 'msgpackr';
import { createMessage, type Message, type MessageProperties } from '../core/message.js';

export const RECORD_HEADER_BYTES = 8;
/** Largest body accepted on load: the largest payload the configuration allows (64 MiB) plus topic and properties. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024 + 1024 * 1024;

export const RecordKind = { set: 1, delete: 2 } as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

// Plain maps, no record structures: the file must decode without any state outside it.
export const recordPackr = new Packr({ useRecords: false, mapsAsObjects: true });
const packr = recordPackr;

/** Frames one record body: length, CRC32, body. */
export function frameRecord(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + body.length);
  out.writeUInt32LE(body.length, 0);
  out.writeUInt32LE(crc32(body), 4);
  body.copy(out, RECORD_HEADER_BYTES);
  return out;
}

/**
 * Checks the framing of the record at `offset` of `buf`: returns the offset after it (its body is
 * `buf[offset + RECORD_HEADER_BYTES .. end)`); `incomplete` when `buf` ends inside the record (read
 * more, or a torn tail at end of file); `corrupt` when the bytes cannot be a record (bad length or CRC).
 */
export function readFrameAt(buf: Buffer, offset: number): number | 'incomplete' | 'corrupt' {
  if (buf.length - offset < RECORD_HEADER_BYTES) return 'incomplete';
  const length = buf.readUInt32LE(offset);
  if (length === 0 || length > MAX_BODY_BYTES) return 'corrupt';
  const start = offset + RECORD_HEADER_BYTES;
  const end = start + length;
  if (end > buf.length) return 'incomplete';
  if (crc32(buf.subarray(start, end)) !== buf.readUInt32LE(offset + 4)) return 'corrupt';
  return end;
}

/** Encodes one retained write (a set, or a delete when the payload is empty) as a framed record. */
export function encodeRecord(message: Message): Buffer {
  return frameRecord(message.payload.length === 0
    ? packr.pack([RecordKind.delete, message.topic])
    : message.properties === undefined
      ? packr.pack([RecordKind.set, message.topic, message.payload, message.qos])
      : packr.pack([RecordKind.set, message.topic, message.payload, message.qos, message.properties]));
}

/** A decoded record: the message to set, or a topic to delete. */
export type LogEntry = { kind: typeof RecordKind.set; message: Message } | { kind: typeof RecordKind.delete; topic: string };

/**
 * Checks and decodes the record at `offset` of `buf`.
 * Returns the entry and the offset after it; `incomplete` when `buf` ends inside the
 * record (read more, or a torn tail at end of file); `corrupt` when the bytes cannot
 * be a record (bad length, CRC or body).
 */
export function decodeRecordAt(
  buf: Buffer,
  offset: number,
): { entry: LogEntry; next: number } | 'incomplete' | 'corrupt' {
  const end = readFrameAt(buf, offset);
  if (typeof end !== 'number') return end;
  const entry = decodeRetainedBody(buf, offset + RECORD_HEADER_BYTES, end);
  return entry ? { entry, next: end } : 'corrupt';
}

// Unpacking a range of the read buffer (not a subarray per record) lets msgpackr reuse the DataView it caches on that buffer.
const range = { start: 0, end: 0 };

/** Unpacks the body at `buf[start..end)`; undefined when it is not MessagePack (a corrupt record). */
export function unpackBody(buf: Buffer, start: number, end: number): unknown {
  range.start = start;
  range.end = end;
  try {
    return packr.unpack(buf, range);
  } catch {
    return undefined; // a CRC-valid body that does not decode is treated as corrupt, like any other bad record
  }
}

/** Decodes a retained store body; undefined when it is not one. */
export function decodeRetainedBody(buf: Buffer, start: number, end: number): LogEntry | undefined {
  const v = unpackBody(buf, start, end);
  if (!Array.isArray(v) || typeof v[1] !== 'string') return undefined;
  const topic = v[1];
  if (v[0] === RecordKind.delete) return { kind: RecordKind.delete, topic };
  if (v[0] !== RecordKind.set || !(v[2] instanceof Uint8Array) || v[2].length === 0) return undefined;
  const qos = v[3] === 1 || v[3] === 2 ? v[3] : 0;
  const properties = v[4] !== null && typeof v[4] === 'object' ? (v[4] as MessageProperties) : undefined;
  // Copy out of the read buffer: a view would pin the whole chunk for as long as this value lives.
  const payload = Buffer.from(v[2]);
  if (properties?.correlationData instanceof Uint8Array) properties.correlationData = Buffer.from(properties.correlationData);
  return { kind: RecordKind.set, message: createMessage(topic, payload, true, undefined, qos, properties) };
}

// ---- file marks: the engine's own records (store/append-log.ts), never an owner's ----------------
//
// A mark is a framed record whose body is a MessagePack array starting with 0; every owner's body
// starts with its kind ≥ 1, so the two never mix.
//   [0, 'tcl', 1, segment, previousBytes]      first record of a log segment: its number, and the size
//                                              segment-1 had when this one was started (-1: a snapshot covers it)
//   [0, 'tcs', 1, through]                     first record of a snapshot: it stands for segments ≤ through
//   [0, 'tcs-end', records, bytes, crc32]      last record of a snapshot: the owner records before it, the
//                                              bytes before it (header included) and their CRC32

export type FileMark =
  | { kind: 'segment'; number: number; previousBytes: number }
  | { kind: 'snapshot'; number: number }
  | { kind: 'snapshot-end'; records: number; bytes: number; crc: number };

export function encodeFileMark(mark: FileMark): Buffer {
  switch (mark.kind) {
    case 'segment': return frameRecord(packr.pack([0, 'tcl', 1, mark.number, mark.previousBytes]));
    case 'snapshot': return frameRecord(packr.pack([0, 'tcs', 1, mark.number]));
    case 'snapshot-end': return frameRecord(packr.pack([0, 'tcs-end', mark.records, mark.bytes, mark.crc]));
  }
}

/** Whether the CRC-valid body at `buf[start..end)` is a file mark (an array whose first element is 0): one byte check. */
export function isFileMark(buf: Buffer, start: number, end: number): boolean {
  return end - start >= 2 && (buf[start]! & 0xf0) === 0x90 && buf[start + 1] === 0;
}

/** Decodes a file mark; undefined when the body is not a valid one. */
export function decodeFileMark(buf: Buffer, start: number, end: number): FileMark | undefined {
  const v = unpackBody(buf, start, end);
  if (!Array.isArray(v) || v[0] !== 0) return undefined;
  const ints = (from: number, n: number): boolean => v.length === from + n && v.slice(from).every((x) => Number.isSafeInteger(x));
  if (v[1] === 'tcl' && v[2] === 1 && ints(3, 2)) return { kind: 'segment', number: v[3] as number, previousBytes: v[4] as number };
  if (v[1] === 'tcs' && v[2] === 1 && ints(3, 1)) return { kind: 'snapshot', number: v[3] as number };
  if (v[1] === 'tcs-end' && ints(2, 3)) return { kind: 'snapshot-end', records: v[2] as number, bytes: v[3] as number, crc: v[4] as number };
  return undefined;
}
