/**
 * UNSUBSCRIBE (MQTT 5 §3.10): remove each filter; UNSUBACK with the request's
 * packet id [MQTT-3.10.4-4], in MQTT 5 with one reason per filter [MQTT-3.11.3-1]:
 * 0x00 removed, 0x11 no subscription existed, 0x8F invalid filter.
 * In-flight QoS 1/2 messages of the removed subscription still complete [MQTT-3.10.4-3].
 * A persisted session answers once the change is durable (persist.ts).
 */
import type mqtt from 'mqtt-packet';
import { checkFilter } from '../../../session/limits.js';
import type { MqttLink } from '../link.js';
import { Reason } from '../reasons.js';
import { inOrder } from './publish.js';

export function onUnsubscribe(c: MqttLink, p: mqtt.IUnsubscribePacket): void {
  const session = c.session!;
  const id = p.messageId ?? 0;
  if (id === 0) return c.disconnect(Reason.protocolError, 'packet identifier 0'); // [MQTT-2.3.1-1]
  if (p.unsubscriptions.length === 0) return c.disconnect(Reason.protocolError, 'UNSUBSCRIBE without a topic filter'); // [MQTT-3.10.3-2]
  const codes: number[] = [];
  for (const filter of p.unsubscriptions) {
    if (checkFilter(filter, c.server.ctx.topicLimits) !== undefined) codes.push(Reason.topicFilterInvalid);
    else codes.push(session.unsubscribe(filter) ? Reason.success : Reason.noSubscriptionExisted); // [MQTT-3.10.4-1]
  }
  inOrder(c, session.saveMeta(), function sendUnsuback() {
    c.sendPacket(c.version === 5 ? { cmd: 'unsuback', messageId: id, granted: codes } : { cmd: 'unsuback', messageId: id, granted: [] });
  });
}
