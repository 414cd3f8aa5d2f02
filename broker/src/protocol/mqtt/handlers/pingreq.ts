/** PINGREQ → PINGRESP [MQTT-3.12.4-1]. Every packet already reset the keepalive clock. */
import type { MqttLink } from '../link.js';

export function onPingreq(c: MqttLink): void {
  c.sendPacket({ cmd: 'pingresp' });
}
