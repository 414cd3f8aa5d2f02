/** PUBCOMP from the client ends an outgoing QoS 2 delivery (MQTT 5 §4.3.3): frees the slot. */
import type mqtt from 'mqtt-packet';
import type { MqttLink } from '../link.js';

export function onPubcomp(c: MqttLink, p: mqtt.IPubcompPacket): void {
  const session = c.session!;
  const id = p.messageId!;
  const entry = session.inflight.get(id);
  if (entry === undefined || entry.qos !== 2) return;
  session.complete(id, entry);
}
