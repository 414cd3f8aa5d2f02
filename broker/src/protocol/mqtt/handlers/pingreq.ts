/** PINGREQ → PINGRESP [MQTT-3.12.4-1]. Every packet already reset the keepalive clock. */
import type { MqttConnection } from '../connection.js';

export function onPingreq(c: MqttConnection): void {
  c.send({ cmd: 'pingresp' });
}
