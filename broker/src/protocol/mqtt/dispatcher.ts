/**
 * Packet order rules, then one handler per packet kind (STYLE.md #8).
 * - The first packet must be CONNECT, otherwise the connection is closed [MQTT-3.1.0-1].
 * - A second CONNECT is a protocol error [MQTT-3.1.0-2].
 * - Packets only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) are protocol errors.
 * Packets arriving while CONNECT is being authenticated wait in the connection's backlog.
 */
import type mqtt from 'mqtt-packet';
import { CloseCode } from 'topicast/protocol';
import type { MqttLink } from './link.js';
import { onAuth } from './handlers/auth.js';
import { onConnect } from './handlers/connect.js';
import { onDisconnect } from './handlers/disconnect.js';
import { onPingreq } from './handlers/pingreq.js';
import { onPuback } from './handlers/puback.js';
import { onPubcomp } from './handlers/pubcomp.js';
import { onPublish } from './handlers/publish.js';
import { onPubrec } from './handlers/pubrec.js';
import { onPubrel } from './handlers/pubrel.js';
import { onSubscribe } from './handlers/subscribe.js';
import { onUnsubscribe } from './handlers/unsubscribe.js';
import { hasByteAboveOne, misplacedProperty, propertiesProblem, repeatedProperty } from './properties.js';
import { Reason } from './reasons.js';

/** `wire`: a QoS 0 PUBLISH's own bytes when read now (not from the backlog): see handlers/publish.ts. */
export function dispatch(c: MqttLink, packet: mqtt.Packet, wire?: Buffer): void {
  const p = packet as { properties?: unknown; will?: { properties?: unknown } };
  const repeated = repeatedProperty(p.properties) ?? repeatedProperty(p.will?.properties);
  const invalid = repeated !== undefined ? `property ${repeated} given more than once` // MQTT 5 §2.2.2.2
    : hasByteAboveOne(p.properties) || hasByteAboveOne(p.will?.properties) ? 'a one-byte property above 1' : undefined; // MQTT 5 §3.1.2.11.6
  if (invalid !== undefined) {
    if (c.state === 'new') {
      c.server.stats.protocolErrors++;
      return c.closeTransport(CloseCode.protocolError, invalid);
    }
    return c.disconnect(Reason.protocolError, invalid);
  }
  const bad = propertiesProblem(p.properties) ?? propertiesProblem(p.will?.properties)
    ?? misplacedProperty(packet.cmd, p.properties) ?? misplacedProperty('will', p.will?.properties); // MQTT 5 §2.2.2.2
  if (bad !== undefined) {
    c.server.stats.protocolErrors++;
    if (c.state === 'new') return c.closeTransport(CloseCode.protocolError, `malformed property ${bad}`);
    return c.disconnect(Reason.malformedPacket, `malformed property ${bad}`); // [MQTT-1.5.4-1]
  }
  if (c.state === 'new') {
    if (packet.cmd !== 'connect') {
      c.server.stats.protocolErrors++;
      c.closeTransport(CloseCode.protocolError, 'first packet must be CONNECT'); // [MQTT-3.1.0-1]
      return;
    }
    onConnect(c, packet);
    return;
  }
  if (c.state !== 'connected') return;
  switch (packet.cmd) {
    case 'publish': return onPublish(c, packet, wire);
    case 'puback': return onPuback(c, packet);
    case 'pubrec': return onPubrec(c, packet);
    case 'pubrel': return onPubrel(c, packet);
    case 'pubcomp': return onPubcomp(c, packet);
    case 'subscribe': return onSubscribe(c, packet);
    case 'unsubscribe': return onUnsubscribe(c, packet);
    case 'pingreq': return onPingreq(c);
    case 'disconnect': return onDisconnect(c, packet);
    case 'auth': return onAuth(c);
    case 'connect': return c.disconnect(Reason.protocolError, 'second CONNECT'); // [MQTT-3.1.0-2]
    default: return c.disconnect(Reason.protocolError, `a client must not send ${packet.cmd.toUpperCase()}`);
  }
}
