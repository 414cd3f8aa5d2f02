/**
 * One whole MQTT packet (as reader.ts frames them) → the packet object the handlers take.
 *
 * - PUBLISH, the hot packet, is decoded here (`decodePublish`): no parser object, no buffer
 *   list; the topic checked as UTF-8 and decoded once, the payload a view into the packet's
 *   bytes. Its output is the object mqtt-packet gives for the same bytes (golden-tested against
 *   it in test/unit/mqtt/decode.test.ts, and fuzzed), but stricter where the specification is:
 *   an ill-formed UTF-8 topic or string property [MQTT-1.5.4-1] and properties that run past
 *   their length (MQTT 5 §2.2.2.1) are malformed.
 * - Every other packet goes through mqtt-packet's public API: `parser(opts).parse(bytes)` on
 *   exactly one packet, which emits it (or an error) synchronously. Its objects are then
 *   checked where its parser is lenient: every UTF-8 string field must be well-formed, and the
 *   properties are read again by wire-properties.ts, whose object replaces mqtt-packet's (the
 *   same keys and values, plus the marks the dispatcher judges: one-byte values above 1, repeats,
 *   user property order).
 *
 * Outcomes, not exceptions: a string is the reason the packet is malformed (mqtt-packet's
 * messages where it decides, so the dispatcher's mapping of them holds).
 */
import mqtt from 'mqtt-packet';
import { isAsciiOf } from '../../session/limits.js';
import { isPropertiesError, readProperties, readVarInt, utf8FieldEnd } from './wire-properties.js';

/** A decoded packet, or why the bytes are not one. */
export type Decoded = mqtt.Packet | string;

/** mqtt-packet's message for a PUBLISH with QoS 3 (kept: the dispatcher and tests know it). */
const QOS_3 = 'Packet must not have both QoS bits set to 1';

/**
 * PUBLISH (MQTT 5 §3.3) from `buf[start..end)`, where `start` is the first byte of the packet and
 * `body` the first byte after its fixed header. `version` 5 reads properties. `lastTopic`: the
 * connection's previous topic; when the bytes are that topic (ASCII), it is reused as is, neither
 * checked as UTF-8 nor decoded again (a device publishes to the same few topics).
 */
export function decodePublish(buf: Buffer, start: number, body: number, end: number, version: number, lastTopic?: string): Decoded {
  const b0 = buf[start]!;
  const qos = (b0 >> 1) & 3;
  if (qos === 3) return QOS_3;
  let topicEnd = body + 2 <= end ? body + 2 + ((buf[body]! << 8) | buf[body + 1]!) : -1;
  let topic: string | undefined;
  if (lastTopic !== undefined && topicEnd <= end && isAsciiOf(buf, body + 2, topicEnd, lastTopic)) topic = lastTopic;
  else topicEnd = utf8FieldEnd(buf, body, end);
  if (topicEnd === -1) return 'Cannot parse topic';
  let pos = topicEnd;
  let messageId: number | undefined;
  if (qos > 0) {
    if (pos + 2 > end) return 'Cannot parse messageId';
    messageId = (buf[pos]! << 8) | buf[pos + 1]!;
    pos += 2;
  }
  let properties: Record<string, unknown> | undefined;
  if (version === 5) {
    const read = readProperties(buf, pos, end);
    if (isPropertiesError(read)) return read.error;
    pos = read.next;
    for (const _ in read.properties) {
      properties = read.properties;
      break;
    }
  }
  // The field order of mqtt-packet's Packet, so the two compare equal field for field.
  const packet: mqtt.IPublishPacket = {
    cmd: 'publish',
    retain: (b0 & 1) !== 0,
    qos: qos as 0 | 1 | 2,
    dup: (b0 & 8) !== 0,
    length: end - body,
    topic: topic ?? buf.toString('utf8', body + 2, topicEnd),
    payload: buf.subarray(pos, end),
  };
  if (messageId !== undefined) packet.messageId = messageId;
  if (properties !== undefined) packet.properties = properties as mqtt.IPublishPacket['properties'];
  return packet;
}

// One parser per protocol level serves every connection: it is handed exactly one whole packet
// at a time and emits it before `parse` returns, so nothing of one connection stays in it for the
// next. CONNECT gets a parser of its own (its parse adopts the CONNECT as the parser's settings).
let emitted: mqtt.Packet | undefined;
let failed: Error | undefined;
function onPacket(packet: mqtt.Packet): void {
  emitted = packet;
}
function onError(err: Error): void {
  failed ??= err;
}
function newParser(version?: number): mqtt.Parser {
  const parser = version === undefined ? mqtt.parser() : mqtt.parser({ protocolVersion: version as 3 | 4 | 5 });
  parser.on('packet', onPacket);
  parser.on('error', onError);
  return parser;
}
const parsers = new Map<number, mqtt.Parser>();

/** mqtt-packet's parse of one whole packet: the packet, or its error message. */
function parseOne(bytes: Buffer, version: number): Decoded {
  const connect = bytes[0]! >> 4 === 1;
  let parser = connect ? newParser() : parsers.get(version);
  if (parser === undefined) parsers.set(version, (parser = newParser(version)));
  emitted = undefined;
  failed = undefined;
  parser.parse(bytes);
  // Set by the listeners during `parse` (TypeScript cannot see that through the calls).
  const packet = emitted as mqtt.Packet | undefined;
  const err = failed as Error | undefined;
  emitted = undefined;
  failed = undefined;
  if (err !== undefined || packet === undefined) {
    // After an error, or a packet it could not finish, its state is not reliably reset
    // (mqtt-packet 9): the next packet gets a new parser.
    if (!connect) parsers.delete(version);
    return err?.message ?? 'Packet too short';
  }
  return packet;
}

/**
 * Any packet a client sends but PUBLISH: mqtt-packet's decode of `bytes` (one whole packet, which
 * the caller no longer changes), then the strings and properties checked from the bytes.
 */
export function decodeOther(bytes: Buffer, body: number, version: number): Decoded {
  const packet = parseOne(bytes, version);
  if (typeof packet === 'string') return packet;
  const problem = recheck(packet, bytes, body, version);
  return problem ?? packet;
}

/** Replaces `holder.properties` (when mqtt-packet gave any) with the reader's object. */
function adopt(holder: { properties?: unknown }, read: Record<string, unknown>): void {
  if (holder.properties !== undefined) holder.properties = read;
}

/**
 * Walks the packet's UTF-8 strings and property sections (mqtt-packet accepted its structure):
 * the first problem, or undefined with the properties replaced by wire-properties.ts's.
 */
function recheck(packet: mqtt.Packet, buf: Buffer, body: number, version: number): string | undefined {
  const end = buf.length;
  const remaining = end - body;
  let pos = body;
  const properties = (at: number, holder: { properties?: unknown }): string | undefined => {
    const read = readProperties(buf, at, end);
    if (isPropertiesError(read)) return read.error;
    adopt(holder, read.properties);
    pos = read.next;
    return undefined;
  };
  const string = (what: string): string | undefined => {
    const e = utf8FieldEnd(buf, pos, end);
    if (e === -1) return `Malformed UTF-8 in ${what}`; // [MQTT-1.5.4-1]
    pos = e;
    return undefined;
  };
  switch (packet.cmd) {
    case 'connect': {
      const bad = string('protocol name');
      if (bad) return bad;
      const level = buf[pos]! & 0x7f; // bridge mode sets the top bit
      const flags = buf[pos + 1]!;
      pos += 4; // level, flags, keepalive
      if (level === 5) {
        const p = properties(pos, packet);
        if (p) return p;
      }
      const id = string('client identifier');
      if (id) return id;
      if (packet.will) {
        if (level === 5) {
          const p = properties(pos, packet.will);
          if (p) return p;
        }
        const topic = string('will topic');
        if (topic) return topic;
        pos += 2 + ((buf[pos]! << 8) | buf[pos + 1]!); // will payload: binary
      }
      if ((flags & 0x80) !== 0) return string('user name');
      return undefined;
    }
    case 'subscribe':
    case 'unsubscribe': {
      if (remaining < 2) return 'Cannot parse messageId'; // mqtt-packet reads a missing one as -1
      pos += 2; // packet identifier
      if (version === 5) {
        const p = properties(pos, packet);
        if (p) return p;
      }
      while (pos < end) {
        const f = string('topic filter');
        if (f) return f;
        if (packet.cmd === 'subscribe') pos++; // subscription options
      }
      return undefined;
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      if (remaining < 2) return 'Cannot parse messageId'; // mqtt-packet reads a missing one as -1
      return remaining > 3 && packet.reasonCode !== undefined ? properties(body + 3, packet) : undefined;
    case 'disconnect':
    case 'auth':
      return remaining > 1 && packet.reasonCode !== undefined ? properties(body + 1, packet) : undefined;
    default:
      return undefined;
  }
}
