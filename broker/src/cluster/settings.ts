/**
 * Settings of scale-out (issue 8, cluster/DESIGN.md): which bus joins this node to the others,
 * its id on the bus, and the bounds of the outage policy. With `bus` unset the broker is a
 * single node and none of the other settings is read.
 */
import type { SettingSpec } from '../settings.js';

export const CLUSTER_SETTINGS = [
  {
    key: 'bus', type: 'string', default: undefined,
    doc: 'scale-out bus joining this node to others: nats://h:4222[,nats://h2:4222] (NATS with JetStream) or mqtt://h:1883 / mqtts://h:8883 (an MQTT 5 broker); unset = a single node, the default, which needs no engine',
  },
  {
    key: 'nodeId', type: 'string', default: undefined,
    doc: 'this node\'s id on the bus, unique per running node; unset = hostname-pid-random, unique without coordination (set it to the pod name for readable logs)',
  },
  {
    key: 'busLingerMs', type: 'int', default: 5000, min: 0, max: 3_600_000,
    doc: 'the bus keeps interest in a filter this long after its last local subscription left: a page reload or reconnect re-subscribes within seconds without a round trip to the engine',
  },
  {
    key: 'busBufferMessages', type: 'int', default: 10_000, min: 0, max: 10_000_000,
    doc: 'acknowledged publishes and retained writes held while the bus is down (retained ones conflated per topic); beyond it acknowledged publishes are refused with a retry hint; about a minute of a busy gateway',
  },
  {
    key: 'busBufferBytes', type: 'int', default: 16 * 1024 * 1024, min: 0, max: 4 * 1024 * 1024 * 1024,
    doc: 'payload bytes held by that buffer; bounds the memory an outage can cost whatever the message sizes',
  },
  {
    key: 'busBufferWaitMs', type: 'int', default: 30_000, min: 100, max: 3_600_000,
    doc: 'an acknowledged publish waits at most this long for the bus to come back, then is refused with the retry hint rather than hang; most clients give up on an ack well before a minute',
  },
  {
    key: 'busRetryAfterSec', type: 'int', default: 5, min: 1, max: 3600,
    doc: 'retry hint given with a publish refused while the bus is down; adapters reconnect within about a second, so a short outage is over by then',
  },
  {
    key: 'busSnapshotTimeoutMs', type: 'int', default: 2000, min: 0, max: 60_000,
    doc: 'a subscription on a filter this node does not mirror yet waits at most this long for the bus\'s retained values, then answers from the local mirror (the values still arrive, live)',
  },
] as const satisfies readonly SettingSpec[];

/** Why `url` cannot name a bus (undefined when it can): one clear line for start-up (exit 2). */
export function busUrlProblem(url: string): string | undefined {
  const parts = url.split(',').map((s) => s.trim());
  let scheme: string | undefined;
  for (const part of parts) {
    let u: URL;
    try {
      u = new URL(part);
    } catch {
      return `${JSON.stringify(part)} is not a URL (expected nats://host:4222 or mqtt://host:1883)`;
    }
    const s = u.protocol.slice(0, -1);
    if (s !== 'nats' && s !== 'mqtt' && s !== 'mqtts') return `scheme ${JSON.stringify(u.protocol)} is not nats:, mqtt: or mqtts:`;
    if (u.hostname === '') return `${JSON.stringify(part)} names no host`;
    const family = s === 'nats' ? 'nats' : 'mqtt';
    if (scheme !== undefined && scheme !== family) return 'mixes NATS and MQTT URLs; a node joins one bus';
    scheme = family;
  }
  if (scheme === 'mqtt' && parts.length > 1) return 'an MQTT upstream takes one URL';
  return undefined;
}
