/** PUBACK from the client ends a QoS 1 delivery (MQTT 5 §4.3.2): frees the slot, sends what waits. */
import type mqtt from 'mqtt-packet';
import type { MqttLink } from '../link.js';

export function onPuback(c: MqttLink, p: mqtt.IPubackPacket): void {
  const session = c.session!;
  const id = p.messageId!;
  const entry = session.inflight.get(id);
  // An unknown id (e.g. acked twice) is ignored: nothing to free.
  if (entry === undefined || entry.qos !== 1) return;
  session.complete(id, entry);
}
