/**
 * The MQTT transport: mqtt.js to Topicast's MQTT listener or any MQTT 3.1.1/5 broker.
 *
 * Same behaviour as the native transport: a retained will `devices/<id>/status` = `offline` in
 * every CONNECT, retained readings, `offline` published before a clean DISCONNECT (which discards
 * the will). Payloads are text, because MQTT tools read text: numbers as JSON numbers (`48.2`),
 * strings as they are (`online`), objects as JSON, each tagged with its MQTT 5 Content Type
 * (`application/json` or `text/plain`, PROTOCOL.md §8), so an SDK subscriber gets the string
 * "7" as a string and the number 7 as a number. QoS 0 for readings (the next reading replaces
 * a lost one), QoS 1 for the final `offline`. mqtt.js's own offline queue is off: the agent keeps
 * the latest value per topic itself.
 */
import mqtt from 'mqtt';
import { topicMatches } from 'topicast/protocol';
import { inboundValue } from '../inbound.js';
import type { AgentTransport, Inbound, Logger, Payload } from '../types.js';
import { silentLogger } from '../types.js';

export interface MqttTransportOptions {
  /** `mqtt://`, `mqtts://`, `tcp://`, `ws://.../mqtt`; user and password may be in the URL. */
  url: string;
  id: string;
  log?: Logger;
  /** Milliseconds between reconnect attempts. */
  reconnectPeriodMs?: number;
  keepaliveSec?: number;
}


const CLOSE_PUBLISH_TIMEOUT_MS = 2000;

/** The MQTT payload of a value: JSON text, except strings, which go as plain text. */
export function mqttPayload(payload: Payload): string {
  return typeof payload === 'string' ? payload : JSON.stringify(payload);
}

/** The MQTT 5 Content Type of `mqttPayload(payload)`. */
export function mqttContentType(payload: Payload): string {
  return typeof payload === 'string' ? 'text/plain' : 'application/json';
}

/**
 * @example
 * const transport = mqttTransport({ url: 'mqtt://127.0.0.1:1883', id: 'pi-01' });
 */
export function mqttTransport(options: MqttTransportOptions): AgentTransport {
  const log = options.log ?? silentLogger;
  const client = mqtt.connect(options.url, {
    // Unique per device and stable across restarts. Not cut to the 23 bytes every MQTT 3.1.1 server must
    // accept [MQTT-3.1.3-5]: two devices whose ids share a prefix would take each other's session over
    // forever; a server that refuses long ids says so at CONNECT instead (Mosquitto and Topicast accept them).
    clientId: `topicast-agent-${options.id}`,
    protocolVersion: 5, // for Content Type; Topicast and Mosquitto ≥ 1.6 speak it
    clean: true,
    keepalive: options.keepaliveSec ?? 30, // a dead agent is declared offline within 45 s by the broker
    reconnectPeriod: options.reconnectPeriodMs ?? 2000,
    connectTimeout: 10_000,
    queueQoSZero: false,
    will: { topic: `devices/${options.id}/status`, payload: Buffer.from('offline'), retain: true, qos: 1, properties: { contentType: 'text/plain' } },
  });
  const listeners = new Set<() => void>();
  let wasOpen = false;
  let warned = false; // one warning per outage, not one per retry
  client.on('connect', function onConnect() {
    wasOpen = true;
    if (warned) log.info('connected again');
    warned = false;
    for (const l of [...listeners]) l();
  });
  client.on('close', () => {
    if (wasOpen) log.warn('MQTT connection lost; reconnecting');
    wasOpen = false;
  });
  client.on('error', (err) => {
    if (!wasOpen && !warned) {
      warned = true;
      log.warn(`cannot reach ${options.url} (${err.message}); retrying every ${options.reconnectPeriodMs ?? 2000} ms`);
    } else log.debug(`mqtt client: ${err.message}`);
  });
  const publish = (topic: string, payload: Payload, retain: boolean, qos: 0 | 1, correlationData?: Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      const properties: mqtt.IClientPublishOptions['properties'] = { contentType: mqttContentType(payload) };
      if (correlationData !== undefined) properties.correlationData = Buffer.from(correlationData); // an answer (MQTT 5 §4.10)
      client.publish(topic, mqttPayload(payload), { retain, qos, properties }, (err) => (err ? reject(err) : resolve()));
    });
  const handlers = new Map<string, Set<(m: Inbound) => void>>();
  client.on('message', function onMessage(topic, payload, packet) {
    const props = packet.properties;
    let m: Inbound | undefined;
    for (const [filter, set] of handlers) {
      if (!topicMatches(filter, topic)) continue;
      m ??= { topic, value: inboundValue(payload, props?.contentType), retained: packet.retain === true };
      if (props?.responseTopic !== undefined) m.responseTopic = props.responseTopic;
      if (props?.correlationData !== undefined) m.correlationData = new Uint8Array(props.correlationData);
      for (const h of set) h(m);
    }
  });
  return {
    kind: 'mqtt',
    isOpen: () => client.connected,
    onOpen(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    publish: (topic, payload, retain, extra) => publish(topic, payload, retain, 0, extra?.correlationData),
    subscribe(filter, handler) {
      let set = handlers.get(filter);
      if (set === undefined) {
        handlers.set(filter, (set = new Set()));
        // mqtt.js subscribes again on every reconnect (resubscribe). Retain handling 2: no retained values (MQTT 5).
        client.subscribe(filter, { qos: 0, rh: 2 }, (err) => {
          if (err) log.error(`cannot subscribe to ${filter}: ${err.message}`);
        });
      }
      set.add(handler);
      return () => {
        set.delete(handler);
        if (set.size === 0 && handlers.get(filter) === set) {
          handlers.delete(filter);
          if (client.connected) client.unsubscribe(filter);
        }
      };
    },
    async close(last) {
      if (last && client.connected) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_PUBLISH_TIMEOUT_MS)));
        await Promise.race([publish(last.topic, last.payload, true, 1).catch((err: Error) => log.warn(`publishing ${last.topic} failed: ${err.message}`)), timeout]);
        clearTimeout(timer);
      }
      await client.endAsync();
    },
  };
}
