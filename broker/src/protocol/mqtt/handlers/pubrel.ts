/**
 * PUBREL from the client, step three of an incoming QoS 2 publish: forget the
 * packet id and answer PUBCOMP [MQTT-4.3.3-11]. An id we do not hold gets
 * PUBCOMP 0x92 in MQTT 5 (already completed, e.g. resent after a reconnect).
 */
import type mqtt from 'mqtt-packet';
import type { MqttConnection } from '../connection.js';
import { Reason } from '../reasons.js';

export function onPubrel(c: MqttConnection, p: mqtt.IPubrelPacket): void {
  const id = p.messageId!;
  const known = c.session!.awaitingRelease.delete(id);
  if (known || c.version !== 5) c.send({ cmd: 'pubcomp', messageId: id });
  else c.send({ cmd: 'pubcomp', messageId: id, reasonCode: Reason.packetIdentifierNotFound });
}
