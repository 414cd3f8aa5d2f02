/**
 * Bytes out: every packet the listener sends is generated here with mqtt-packet.
 *
 * PUBLISH is encoded once per wire shape and cached on the Message
 * (core/message.ts `encoded`), so a fan-out sends the same bytes to every
 * subscriber of that shape (STYLE.md #3). A shape is the protocol level, QoS,
 * retain flag and (MQTT 5) the remaining expiry seconds. QoS 1/2 copies the
 * cached template and patches the packet id and DUP bit, which costs a memcpy
 * instead of an encode. Per-subscriber properties (subscription identifiers,
 * topic aliases) force a fresh encode, only for the subscribers that need one.
 */
import mqtt from 'mqtt-packet';
import { ContentType, formatOf } from 'topicast/protocol';
import type { Message, MessageProperties } from '../../core/message.js';
import { convertedPayload } from '../../session/converted.js';
import { appendUserProperties, userPropertyOrder, type Pairs } from './user-properties.js';

export type Version = 3 | 4 | 5;

// mqtt-packet's documented switch (README, "writeToStream"): without it, its first generate fills a
// cache of 65,536 two-byte Buffers (≈6 MiB resident, 65k heap objects for every GC to walk) to save
// an allocation per packet id or length it writes. The hot PUBLISH is written by plainPublish below.
mqtt.writeToStream.cacheNumbers = false;

export function encodePacket(packet: mqtt.Packet, version: Version): Buffer {
  return mqtt.generate(packet, { protocolVersion: version });
}

/**
 * Seconds left before expiry (MQTT 5 §3.3.2.3.3): rounded up, so a message is never
 * announced as expired while it is not; an interval of 0 forwards as 0.
 */
export function remainingExpirySec(props: MessageProperties | undefined, now: number): number | undefined {
  const at = props?.expiresAt;
  if (at === undefined) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

type PublishProperties = NonNullable<mqtt.IPublishPacket['properties']>;

/** What MQTT subscribers get of MessagePack payloads (`--mqtt-payloads`, MQTT.md "Payload formats"). */
export type MqttPayloads = 'json' | 'as-published';

/**
 * The payload an MQTT subscriber gets, and its content type: with `json`, a MessagePack-tagged
 * payload converted once per message (session/converted.ts, shared by every MQTT subscriber, wire
 * shape and HTTP stream); otherwise, or when it is not one MessagePack value, the bytes as
 * published. `converted` says whether the broker changed the payload.
 */
export function mqttPayload(message: Message, mode: MqttPayloads): { payload: Uint8Array; contentType: string | undefined; converted: boolean } {
  const contentType = message.properties?.contentType;
  const c = mode === 'json' && formatOf(contentType) === 'msgpack' ? convertedPayload(message) : undefined;
  if (c === undefined) return { payload: message.payload, contentType, converted: false };
  return { payload: c.payload, contentType: c.contentType, converted: true };
}

function v5Properties(message: Message, expirySec: number | undefined, contentType: string | undefined, converted: boolean): PublishProperties | undefined {
  const p = message.properties;
  if (p === undefined) return undefined;
  const out: PublishProperties = {};
  if (converted) {
    // The broker changed the payload (MQTT.md "Payload formats"), so it says what it is now.
    if (contentType !== ContentType.bytes) out.payloadFormatIndicator = true;
  } else if (p.payloadFormatIndicator !== undefined) out.payloadFormatIndicator = p.payloadFormatIndicator; // [MQTT-3.3.2-4] forwarded unaltered
  if (expirySec !== undefined) out.messageExpiryInterval = expirySec; // [MQTT-3.3.2-6]
  if (contentType !== undefined) out.contentType = contentType; // [MQTT-3.3.2-20]
  if (p.responseTopic !== undefined) out.responseTopic = p.responseTopic; // [MQTT-3.3.2-15]
  if (p.correlationData !== undefined) out.correlationData = Buffer.from(p.correlationData); // [MQTT-3.3.2-16]
  // [MQTT-3.3.2-17]; an order the object cannot express is appended by generatePublish [MQTT-3.3.2-18].
  if (p.userProperties !== undefined && userPropertyOrder(p.userProperties) === undefined) out.userProperties = p.userProperties;
  return out;
}

function generatePublish(
  message: Message, version: Version, qos: 0 | 1 | 2, retain: boolean, packetId: number, dup: boolean,
  expirySec: number | undefined, mode: MqttPayloads, extra?: { subscriptionIds?: number[]; topicAlias?: number; omitTopic?: boolean },
): Buffer {
  const { payload, contentType, converted } = mqttPayload(message, mode);
  const packet: mqtt.IPublishPacket = {
    cmd: 'publish',
    topic: extra?.omitTopic ? '' : message.topic,
    payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
    qos,
    dup,
    retain,
  };
  if (qos > 0) packet.messageId = packetId;
  if (version !== 5 || (message.properties === undefined && extra === undefined)) {
    return plainPublish(packet.topic, packet.payload as Buffer, qos, retain, dup, packetId, version === 5);
  }
  let ordered: Pairs | undefined;
  if (version === 5) {
    ordered = userPropertyOrder(message.properties?.userProperties);
    const props = v5Properties(message, expirySec, contentType, converted);
    if (props || extra?.subscriptionIds || extra?.topicAlias) {
      const p: PublishProperties = props ?? {};
      if (extra?.subscriptionIds) p.subscriptionIdentifier = extra.subscriptionIds.length === 1 ? extra.subscriptionIds[0]! : extra.subscriptionIds;
      if (extra?.topicAlias) p.topicAlias = extra.topicAlias;
      packet.properties = p;
    }
  }
  const bytes = mqtt.generate(packet, { protocolVersion: version });
  return ordered === undefined ? bytes : appendUserProperties(bytes, qos > 0, ordered);
}

/**
 * A PUBLISH without properties (every 3.1.1 one, and MQTT 5 ones with none: the common case),
 * written straight into one buffer: the same bytes mqtt-packet's `generate` writes, without its
 * stream object and concatenation per packet (MQTT 5 §3.3).
 */
function plainPublish(topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean, dup: boolean, packetId: number, v5: boolean): Buffer {
  const topicBytes = Buffer.byteLength(topic);
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + (v5 ? 1 : 0) + payload.length;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
  const out = Buffer.allocUnsafe(1 + lengthBytes + remaining);
  out[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0);
  let at = 1;
  for (let n = remaining; ; ) {
    const b = n % 128;
    n = Math.floor(n / 128);
    out[at++] = n > 0 ? b | 0x80 : b;
    if (n === 0) break;
  }
  out[at++] = topicBytes >> 8;
  out[at++] = topicBytes & 0xff;
  at += out.write(topic, at, 'utf8');
  if (qos > 0) {
    out[at++] = packetId >> 8;
    out[at++] = packetId & 0xff;
  }
  if (v5) out[at++] = 0; // property length 0
  out.set(payload, at);
  return out;
}

/** Shape keys by [v5][qos][retain], so the hot path builds no string. */
const SHAPES = [0, 1].map((v5) => [0, 1, 2].map((q) => [0, 1].map((r) => `${v5 ? 'mqtt5' : 'mqtt4'}:q${q}${r ? 'r' : ''}`)));

/** Offset of the packet id in an encoded QoS 1/2 PUBLISH: after the fixed header and the topic. */
function packetIdOffset(bytes: Uint8Array): number {
  let i = 1;
  while ((bytes[i]! & 0x80) !== 0) i++;
  i++;
  return i + 2 + ((bytes[i]! << 8) | bytes[i + 1]!);
}

/**
 * The PUBLISH bytes for one delivery without per-subscriber properties.
 * The returned buffer for QoS 0 is shared: never mutate it.
 */
export function sharedPublish(message: Message, version: Version, qos: 0 | 1 | 2, retain: boolean, packetId: number, dup: boolean, now: number, mode: MqttPayloads): Uint8Array {
  const v5 = version === 5;
  const expirySec = v5 ? remainingExpirySec(message.properties, now) : undefined;
  const base = SHAPES[v5 ? 1 : 0]![qos]![retain ? 1 : 0]!;
  const shape = expirySec === undefined ? base : `${base}:e${expirySec}`;
  let template = message.encoded[shape];
  if (template === undefined) {
    template = generatePublish(message, version, qos, retain, 0, false, expirySec, mode);
    message.encoded[shape] = template;
  }
  if (qos === 0) return template;
  const bytes = Buffer.allocUnsafe(template.length);
  bytes.set(template);
  if (dup) bytes[0] = bytes[0]! | 0x08;
  const at = packetIdOffset(bytes);
  bytes[at] = packetId >> 8;
  bytes[at + 1] = packetId & 0xff;
  return bytes;
}

/** A PUBLISH with per-subscriber MQTT 5 properties (subscription identifiers, topic alias). */
export function ownPublish(
  message: Message, qos: 0 | 1 | 2, retain: boolean, packetId: number, dup: boolean, now: number, mode: MqttPayloads,
  extra: { subscriptionIds?: number[]; topicAlias?: number; omitTopic?: boolean },
): Uint8Array {
  return generatePublish(message, 5, qos, retain, packetId, dup, remainingExpirySec(message.properties, now), mode, extra);
}
