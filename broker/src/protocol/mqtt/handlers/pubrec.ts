/**
 * PUBREC from the client, step two of an outgoing QoS 2 delivery (MQTT 5 §4.3.3):
 * answer PUBREL with the same id [MQTT-4.3.3-4]. A PUBREC with a failure reason
 * (≥ 0x80) ends the exchange and frees the slot (MQTT 5 §4.3.3, §4.9).
 */
import type mqtt from 'mqtt-packet';
import type { MqttLink } from '../link.js';
import { Reason } from '../reasons.js';

export function onPubrec(c: MqttLink, p: mqtt.IPubrecPacket): void {
  const session = c.session!;
  const id = p.messageId!;
  const entry = session.inflight.get(id);
  if (entry === undefined || entry.qos !== 2) {
    // Not ours (any more): tell the client so it can discard its state.
    c.sendPacket(c.version === 5 ? { cmd: 'pubrel', messageId: id, reasonCode: Reason.packetIdentifierNotFound } : { cmd: 'pubrel', messageId: id });
    return;
  }
  if ((p.reasonCode ?? 0) >= 0x80) {
    session.complete(id, entry);
    return;
  }
  session.received(id, entry); // [MQTT-4.3.3-4] PUBREL; from now on only PUBREL is resent, never the PUBLISH
}
