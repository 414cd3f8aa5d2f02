/**
 * PUBLISH from the client (MQTT 5 §3.3): resolve the topic alias, validate,
 * apply the per-connection limits, route through the one router, acknowledge.
 *
 * - QoS 1: PUBACK after routing (after the retained write when the store is durable).
 * - QoS 2: routed on PUBLISH, the id kept until PUBREL; a duplicate PUBLISH of a
 *   held id is acknowledged again but not routed again [MQTT-4.3.3-10].
 * - Refusals of a well-formed publish ($SYS topics, permissions, rate limit, payload size,
 *   retained store full: session/admission.ts; bad UTF-8 payload) answer PUBACK/PUBREC with a reason in MQTT 5; 3.1.1
 *   has no negative ack, so the message is dropped, counted and acknowledged
 *   [MQTT-3.3.5-2]. Protocol violations disconnect.
 */
import type mqtt from 'mqtt-packet';
import { topicProblem } from 'topicast/protocol';
import { BusRefusedError } from '../../../core/bus.js';
import { REFUSALS } from '../../../core/errors.js';
import { createMessage, type MessageProperties } from '../../../core/message.js';
import { bothDurable } from '../../../core/router.js';
import type { HeldAck, MqttLink } from '../link.js';
import { Reason } from '../reasons.js';
import { admitPublish } from '../../../session/admission.js';
import { isUtf8 } from 'node:buffer';

function sendAck(c: MqttLink, qos: 1 | 2, id: number, reason: number, why?: string): void {
  const packet: mqtt.IPubackPacket | mqtt.IPubrecPacket = { cmd: qos === 1 ? 'puback' : 'pubrec', messageId: id };
  if (c.version === 5 && reason !== Reason.success) {
    packet.reasonCode = reason;
    if (why && c.problemInfo) packet.properties = { reasonString: why };
  }
  c.sendPacket(packet);
}

/**
 * Runs `send` now, or — while a durable write it depends on or an earlier ordered acknowledgement
 * is pending — after them, so acknowledgements keep the order of the packets they answer
 * [MQTT-4.6.0-2] [MQTT-4.6.0-3] [MQTT-4.6.0-4]. `send(true)` when the write failed (logged here).
 */
export function inOrder(c: MqttLink, durable: Promise<void> | undefined, send: (failed: boolean, err?: unknown) => void): void {
  if (durable === undefined && c.heldAcks === undefined) return send(false);
  const held: HeldAck = { send, done: durable === undefined, failed: false, err: undefined };
  (c.heldAcks ??= []).push(held);
  // One reaction per held ack (no promise chain): group commit resolves writes in order, and
  // releaseHeld sends from the front only what is done, so the packet order holds either way.
  durable?.then(
    () => {
      held.done = true;
      releaseHeld(c);
    },
    (err: unknown) => {
      // The cluster bus refusing it (outage buffer full) is counted there, not an error of this broker.
      if (!(err instanceof BusRefusedError)) c.server.ctx.log.error({ err, clientId: c.session?.clientId }, 'durable write failed (retained store or session store)');
      else held.err = err;
      held.done = true;
      held.failed = true;
      releaseHeld(c);
    },
  );
}

function releaseHeld(c: MqttLink): void {
  const queue = c.heldAcks;
  if (queue === undefined) return;
  let n = 0;
  while (n < queue.length && queue[n]!.done) {
    const held = queue[n++]!;
    if (c.isOpen) held.send(held.failed, held.err);
  }
  if (n === queue.length) c.heldAcks = undefined;
  else if (n > 0) queue.splice(0, n);
}

/** PUBACK / PUBREC in PUBLISH order, once `durable` (the retained and session store writes) resolved. */
function acknowledge(c: MqttLink, qos: 0 | 1 | 2, id: number, reason: number, why?: string, durable?: Promise<void>): void {
  if (qos === 0) return;
  inOrder(c, durable, function sendPublishAck(failed, err) {
    if (!failed) return sendAck(c, qos, id, reason, why);
    // MQTT 5: a PUBREC with a failure reason ends the exchange (no PUBREL follows), so the id is free again.
    if (qos === 2 && c.version === 5) c.session?.releaseIncoming(id);
    // The cluster bus refused it (outage buffer full): 0x97 with when to retry (3.1.1 has no negative ack).
    if (err instanceof BusRefusedError) sendAck(c, qos, id, Reason.quotaExceeded, err.message);
    else sendAck(c, qos, id, Reason.implementationSpecificError, 'durable write failed');
  });
}

/** Remaining Length bytes (MQTT 5 §1.5.5) of a packet whose Remaining Length is `n`. */
function lengthBytes(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

/**
 * Whether `wire` (a QoS 0 PUBLISH without DUP or RETAIN, as read) is, byte for byte, what
 * encode.ts writes for its subscribers of the same protocol family at QoS 0: a minimal Remaining
 * Length and, for MQTT 5, an empty one-byte property section. Then it is their encoding as is.
 */
function isPlainQos0(wire: Buffer, p: mqtt.IPublishPacket, topic: string, v5: boolean): boolean {
  const remaining = p.length ?? -1;
  const header = 1 + lengthBytes(remaining);
  if (wire.length !== header + remaining || p.topic !== topic) return false;
  const topicBytes = (wire[header]! << 8) | wire[header + 1]!;
  return wire.length - (p.payload as Buffer).length === header + 2 + topicBytes + (v5 ? 1 : 0);
}

/** encode.ts's wire shape keys for QoS 0, not retained, no expiry (see `sharedPublish`). */
const PLAIN_QOS0_SHAPE = ['mqtt4:q0', 'mqtt5:q0'] as const;

export function onPublish(c: MqttLink, p: mqtt.IPublishPacket, wire?: Buffer): void {
  const { server } = c;
  const { ctx } = server;
  const session = c.session!;
  const v5 = c.version === 5;
  const qos = p.qos;
  const id = p.messageId ?? 0;
  const props = p.properties;

  if (qos > 0 && id === 0) return c.disconnect(Reason.protocolError, 'packet identifier 0'); // [MQTT-2.3.1-1]
  let topic = p.topic;
  const alias = v5 ? props?.topicAlias : undefined;
  if (alias !== undefined) {
    // [MQTT-3.3.2-8] alias 0 and [MQTT-3.3.2-10] above our Topic Alias Maximum are errors.
    if (alias === 0 || alias > c.server.limits.maxTopicAliases) return c.disconnect(Reason.topicAliasInvalid, `topic alias ${alias} out of range`);
    if (topic === '') {
      const known = c.inboundAliases?.get(alias);
      if (known === undefined) return c.disconnect(Reason.protocolError, `unknown topic alias ${alias}`); // MQTT 5 §3.3.4
      topic = known;
    }
  }
  if (topic === '') return c.disconnect(Reason.protocolError, 'empty topic name without a topic alias'); // MQTT 5 §3.3.2.1 (3.1.1: [MQTT-4.7.3-1], closed)
  if (topic !== c.lastTopic) {
    const problem = topicProblem(topic, ctx.topicLimits);
    if (problem !== undefined) return c.disconnect(Reason.topicNameInvalid, `topic ${problem}`); // [MQTT-3.3.2-2] [MQTT-4.7.3-1]
    c.lastTopic = topic;
  }
  if (alias !== undefined && p.topic !== '') (c.inboundAliases ??= new Map()).set(alias, topic); // MQTT 5 §3.3.2.3.4: (re)maps the alias
  if (v5 && props?.subscriptionIdentifier !== undefined) return c.disconnect(Reason.protocolError, 'PUBLISH from a client must not carry a subscription identifier'); // [MQTT-3.3.4-6]
  if (v5 && props?.responseTopic !== undefined && topicProblem(props.responseTopic, ctx.topicLimits) !== undefined) {
    return c.disconnect(Reason.protocolError, 'response topic must be a topic name'); // [MQTT-3.3.2-14]
  }

  if (qos === 2) {
    if (session.awaitingRelease.has(id)) return acknowledge(c, 2, id, Reason.success); // [MQTT-4.3.3-10] not routed twice
    // Our Receive Maximum bounds QoS 2 publishes awaiting PUBREL [MQTT-3.3.4-8].
    if (session.awaitingRelease.size >= c.server.limits.maxInflight) return c.disconnect(Reason.receiveMaximumExceeded, `more than ${c.server.limits.maxInflight} QoS 2 publishes in flight`);
  }

  const payload = p.payload as Buffer;
  // $SYS, permission, rate, size, retained bounds: the one order of every protocol (session/admission.ts).
  const refused = admitPublish(ctx, topic, payload.length, p.retain, session.permissions, c.bucket);
  if (refused !== undefined) return acknowledge(c, qos, id, REFUSALS[refused.refusal].mqtt, refused.message);
  if (v5 && props?.payloadFormatIndicator && !isUtf8(payload)) {
    // MQTT 5 §3.3.2.3.2: PUBACK/PUBREC 0x99, or DISCONNECT 0x99 for QoS 0 which has no ack.
    if (qos === 0) return c.disconnect(Reason.payloadFormatInvalid, 'payload is not UTF-8');
    return acknowledge(c, qos, id, Reason.payloadFormatInvalid, 'payload is not UTF-8');
  }

  let properties: MessageProperties | undefined;
  if (v5 && props) {
    const expiry = props.messageExpiryInterval;
    if (props.payloadFormatIndicator !== undefined || props.contentType !== undefined || props.responseTopic !== undefined
      || props.correlationData !== undefined || props.userProperties !== undefined || expiry !== undefined) {
      properties = {
        payloadFormatIndicator: props.payloadFormatIndicator,
        contentType: props.contentType,
        responseTopic: props.responseTopic,
        correlationData: props.correlationData === undefined ? undefined : Buffer.from(props.correlationData),
        userProperties: props.userProperties,
        expiresAt: expiry === undefined ? undefined : ctx.now() + expiry * 1000,
      };
    }
  }
  // A retained payload outlives this chunk: give it its own bytes instead of a view into the read buffer.
  const bytes = p.retain ? new Uint8Array(payload) : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  // [MQTT-3.3.1-5] retain stores; [MQTT-3.3.1-10] an empty retained payload deletes (the store does both).
  const message = createMessage(topic, bytes, p.retain, session, qos, properties);
  // The packet as read is its QoS 0 subscribers' encoding: no encode per message (fan-in).
  if (wire !== undefined && properties === undefined && isPlainQos0(wire, p, topic, v5)) message.encoded[PLAIN_QOS0_SHAPE[v5 ? 1 : 0]] = wire;
  const store = server.sessionStore;
  // QoS 0 is never stored for a session, so only QoS 1/2 look at the session store at all.
  const writesBefore = store !== undefined && qos > 0 ? store.writes : 0;
  let durable = ctx.router.publish(message, qos > 0).durable;

  if (qos === 2) session.holdIncoming(id); // [MQTT-4.3.3-9] hold the id until PUBREL
  if (qos === 0) {
    durable?.catch((err: unknown) => ctx.log.error({ err, topic }, 'retained write failed'));
    return;
  }
  // Acknowledged only once durable in every persistent session queue it was added to (persist.ts).
  if (store !== undefined && store.writes !== writesBefore) durable = bothDurable(durable, store.synced());
  acknowledge(c, qos, id, Reason.success, undefined, durable ?? undefined);
}
