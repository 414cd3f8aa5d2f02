/**
 * AUTH (MQTT 5 §3.15). Enhanced authentication is not offered: CONNECT with an
 * Authentication Method is refused with 0x8C, so any AUTH after CONNECT is a
 * protocol error [MQTT-4.12.0-1 / MQTT-3.15.0 rules].
 */
import type { MqttLink } from '../link.js';
import { Reason } from '../reasons.js';

export function onAuth(c: MqttLink): void {
  c.disconnect(Reason.protocolError, 'enhanced authentication is not supported');
}
