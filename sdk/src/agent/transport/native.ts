/**
 * The native transport: the public SDK over `/ws`, values encoded with the SDK's default codec
 * (MessagePack), so SDK subscribers and the dashboard decode them as they were published.
 *
 * The client is created with `wait: false` (the agent starts before the broker on boot and keeps
 * trying) and a retained will `devices/<id>/status` = `offline`, which the SDK registers first on
 * every connection; a clean `close()` discards it, so the agent publishes `offline` itself first.
 */
import { connect, type Client } from '../../index.js';
import type { AgentTransport, Inbound, Logger, Payload } from '../types.js';
import { silentLogger } from '../types.js';

export interface NativeTransportOptions {
  url: string | string[];
  /** The device id: the will goes to `devices/<id>/status`. */
  id: string;
  token?: string;
  log?: Logger;
  /** Reconnect backoff; defaults reach a restarted broker within seconds without hammering it. */
  reconnect?: { minDelayMs?: number; maxDelayMs?: number };
}

const CLOSE_PUBLISH_TIMEOUT_MS = 2000; // a clean shutdown must not hang on a broker that stopped answering

/**
 * @example
 * const transport = await nativeTransport({ url: 'ws://127.0.0.1:8080/ws', id: 'pi-01' });
 */
export async function nativeTransport(options: NativeTransportOptions): Promise<AgentTransport> {
  const log = options.log ?? silentLogger;
  const statusTopic = `devices/${options.id}/status`;
  const client: Client = await connect(options.url, {
    wait: false,
    will: { topic: statusTopic, value: 'offline', retain: true },
    reconnect: { minDelayMs: 500, maxDelayMs: 30_000, ...options.reconnect },
    ...(options.token !== undefined ? { token: options.token } : {}),
  });
  const listeners = new Set<() => void>();
  let wasOpen = false;
  let warned = false; // one warning per outage, not one per retry
  client.on('state', function onState(state) {
    if (state === 'open') {
      wasOpen = true;
      if (warned) log.info('connected again');
      warned = false;
      for (const l of [...listeners]) l();
    } else if (state === 'reconnecting' && wasOpen) {
      wasOpen = false;
      log.warn('connection lost; reconnecting');
    }
  });
  client.on('error', (err) => {
    if (!wasOpen && !warned) {
      warned = true;
      log.warn(`cannot reach ${[options.url].flat().join(', ')} (${err.message}); retrying in the background`);
    } else log.debug(`native client: ${err.message}`);
  });
  return {
    kind: 'native',
    isOpen: () => client.state === 'open',
    onOpen(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    publish: (topic: string, payload: Payload, retain: boolean, extra) =>
      client.publish(topic, payload, extra?.correlationData === undefined ? { retain } : { retain, correlationData: extra.correlationData }),
    subscribe(filter, handler) {
      const sub = client.subscribe(
        filter,
        (value, meta) => {
          const m: Inbound = { topic: meta.topic, value, retained: meta.retained };
          if (meta.responseTopic !== undefined) m.responseTopic = meta.responseTopic;
          if (meta.correlationData !== undefined) m.correlationData = meta.correlationData;
          handler(m);
        },
        { retained: false },
      );
      sub.catch((err: Error) => log.error(`cannot subscribe to ${filter}: ${err.message}`));
      return () => void sub.then((s) => s.unsubscribe(), () => {});
    },
    async close(last) {
      if (last && client.state === 'open') {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_PUBLISH_TIMEOUT_MS)));
        await Promise.race([client.publish(last.topic, last.payload, { retain: true, ack: true }).catch((err: Error) => log.warn(`publishing ${last.topic} failed: ${err.message}`)), timeout]);
        clearTimeout(timer);
      }
      await client.close();
    },
  };
}
