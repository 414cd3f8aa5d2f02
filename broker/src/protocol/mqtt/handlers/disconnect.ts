/**
 * DISCONNECT from the client (MQTT 5 §3.14): a normal disconnect discards the
 * will [MQTT-3.14.4-3]; MQTT 5 reason 0x04 (or an error code) keeps it. MQTT 5 may change the
 * session expiry, but not from 0 to non-zero [MQTT-3.14.2-2]. Then close [MQTT-3.14.4-1].
 */
import type mqtt from 'mqtt-packet';
import { CloseCode } from 'topicast/protocol';
import type { MqttLink } from '../link.js';
import { Reason } from '../reasons.js';

export function onDisconnect(c: MqttLink, p: mqtt.IDisconnectPacket): void {
  const session = c.session!;
  if (c.version === 5) {
    const expiry = p.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      if (session.expirySec === 0 && expiry !== 0) return c.disconnect(Reason.protocolError, 'session expiry cannot be set on DISCONNECT when it was 0 at CONNECT');
      session.expirySec = Math.min(expiry, c.server.limits.maxSessionExpirySec);
    }
    // [MQTT-3.14.4-3] only 0x00 discards the will; 0x04 asks for it, other codes report an error.
    if ((p.reasonCode ?? Reason.success) === Reason.success) c.will = undefined;
  } else {
    c.will = undefined; // [MQTT-3.1.2-10]
  }
  c.closeTransport(CloseCode.normal, 'client disconnected');
}
