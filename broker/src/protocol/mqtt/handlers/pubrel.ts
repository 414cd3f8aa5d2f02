/**
 * PUBREL from the client, step three of an incoming QoS 2 publish: forget the
 * packet id and answer PUBCOMP [MQTT-4.3.3-11]. An id we do not hold gets
 * PUBCOMP 0x92 in MQTT 5 (already completed, e.g. resent after a reconnect).
 * A persisted session answers once the release is durable, in PUBREL order [MQTT-4.6.0-4]: a
 * crash must not bring the id back, or the client's next PUBLISH reusing it would be swallowed.
 */
import type mqtt from 'mqtt-packet';
import type { MqttLink } from '../link.js';
import { Reason } from '../reasons.js';
import { inOrder } from './publish.js';

export function onPubrel(c: MqttLink, p: mqtt.IPubrelPacket): void {
  const id = p.messageId!;
  const { known, durable } = c.session!.releaseIncoming(id);
  // A failed write is logged by inOrder; the id is released in memory, so the exchange completes anyway.
  inOrder(c, durable, function sendPubcomp() {
    if (known || c.version !== 5) c.sendPacket({ cmd: 'pubcomp', messageId: id });
    else c.sendPacket({ cmd: 'pubcomp', messageId: id, reasonCode: Reason.packetIdentifierNotFound });
  });
}
