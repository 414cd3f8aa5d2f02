/** Opens a minimal client for an endpoint. */
import type { Endpoint, Link } from './link.js';
import { MqttLink } from './mqtt.js';
import { NativeLink } from './native.js';
import { NatsLink } from './nats.js';
import { RawLink } from './raw.js';
import { SioLink } from './sio.js';
import { SseLink } from './sse.js';

export type { Endpoint, Link, OnDelivery, Fill, WireName } from './link.js';

export async function openLink(ep: Endpoint, timeoutMs = 10_000): Promise<Link> {
  const link =
    ep.wire === 'raw' ? new RawLink(ep)
    : ep.wire === 'native' ? new NativeLink(ep)
    : ep.wire === 'mqtt' ? new MqttLink(ep)
    : ep.wire === 'sio' ? new SioLink(ep)
    : ep.wire === 'sse' ? new SseLink(ep)
    : new NatsLink(ep);
  await link.open(timeoutMs);
  return link;
}
