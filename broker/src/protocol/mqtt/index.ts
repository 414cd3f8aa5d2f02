/**
 * The MQTT 3.1.1 and 5 listener as a ProtocolHandler: TCP (transport/tcp.ts)
 * and WebSocket `/mqtt` (transport/uws.ts) feed the same handler, which speaks
 * MQTT through mqtt-packet and publishes into the broker's one router.
 * See broker/MQTT.md for what of the specifications is supported.
 */
import type { BrokerContext } from '../../context.js';
import type { Connection } from '../../session/connection.js';
import type { ConnectionHandler, ProtocolHandler } from '../../session/handler.js';
import { authenticate as permissive, type Authenticate } from './auth.js';
import { MqttConnection } from './connection.js';
import { Reason } from './reasons.js';
import { MqttSessionStore, type SessionStore } from './persist.js';
import { MqttServer } from './server.js';
import { runSpread, spreadDelaysMs } from '../../session/drain.js';
import { MqttSession } from './session.js';
import { adoptSessions } from './adopt.js';

export type { Authenticate, AuthResult } from './auth.js';

export interface MqttProtocol extends ProtocolHandler {
  /** Open MQTT connections. */
  readonly sessionCount: number;
  /** Graceful shutdown: MQTT 5 clients get DISCONNECT 0x8B, then every connection is closed. */
  closeAll(): void;
  /**
   * Drain: each open connection is disconnected at its own moment spread uniformly over `windowMs`
   * (MQTT 5: DISCONNECT 0x8B, or 0x9C with the `drainServerReference` option; 3.1.1: closed). Returns a cancel.
   * The will is published as for any server-initiated close [MQTT-3.1.2-8] (MQTT.md, "Drain").
   */
  drain(windowMs: number): () => void;
  /** Internal state, for tests and $SYS. */
  readonly server: MqttServer;
}

export interface MqttOptions {
  /** Replaces the permissive authentication hook. */
  authenticate?: Authenticate;
  /** Time allowed from the TCP/WebSocket open to an authenticated CONNECT; default `connectTimeoutMs` of the configuration. */
  connectTimeoutMs?: number;
  /** Period of the keepalive and CONNECT-deadline check; 500 ms keeps the 1.5× rule within half a second. */
  timerIntervalMs?: number;
  /** With `--data`: persistent sessions are kept here and the ones it holds are restored now (persist.ts). */
  sessionStore?: SessionStore;
  /** During a drain, MQTT 5 clients get DISCONNECT 0x9C with this Server Reference instead of 0x8B. */
  drainServerReference?: string | undefined;
  /** Serve MQTT over WebSocket at `/mqtt` too (default true). */
  websocket?: boolean;
}

export function createMqttProtocol(ctx: BrokerContext, options: MqttOptions = {}): MqttProtocol {
  const server = new MqttServer(ctx, options.authenticate ?? permissive, options.connectTimeoutMs ?? ctx.config.connectTimeoutMs, options.sessionStore);
  ctx.counters.open.mqtt = 0;
  let drainDisconnected = 0;
  registerMetrics(ctx, server);
  ctx.metrics.register('topicast_drain_mqtt_disconnected_total', 'counter', 'MQTT connections disconnected at their slot of the drain window', () => drainDisconnected);
  const store = options.sessionStore;
  // A cluster session store: this node adopts the offline sessions of gone nodes it is designated for (adopt.ts).
  if (store?.onOrphans !== undefined && store.adopt !== undefined) store.onOrphans((from, clientIds, lastSeenMs) => adoptSessions(server, store, from, clientIds, lastSeenMs));
  if (store instanceof MqttSessionStore) {
    const now = ctx.now();
    for (const loaded of store.takeLoaded({ [Symbol.iterator]: () => server.sessions.values() })) MqttSession.restore(server, loaded, store, now);
    registerStoreMetrics(ctx, store);
  }

  let timer: NodeJS.Timeout | undefined;
  server.transportClosed = function mqttTransportClosed(): void {
    ctx.counters.open.mqtt!--;
    if (server.connections.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  const checkTimers = (): void => {
    const now = ctx.now();
    for (const c of server.connections) c.checkTimers(now);
  };
  const startTimer = (): void => {
    if (timer) return;
    timer = setInterval(checkTimers, options.timerIntervalMs ?? 500);
    timer.unref();
  };

  return {
    name: 'mqtt',
    // MQTT over WebSocket (MQTT 5 §6): the client sends CONNECT with its credentials, so no upgrade token;
    // one WebSocket message may carry several packets, bounded by our Maximum Packet Size instead.
    websocket: options.websocket === false ? undefined : { path: '/mqtt', subprotocol: 'mqtt', maxMessageBytes: Infinity, authentication: 'in-band' },
    server,
    get sessionCount() {
      return server.connections.size;
    },
    open(conn: Connection): ConnectionHandler {
      const c = new MqttConnection(server, conn);
      server.connections.add(c);
      ctx.counters.open.mqtt!++;
      ctx.counters.connectionsTotal++;
      startTimer();
      return c; // the connection is its own handler: no wrapper object or closures per connection
    },
    closeAll() {
      for (const c of [...server.connections]) c.disconnect(Reason.serverShuttingDown, 'server shutting down');
    },
    drain(windowMs) {
      const serverReference = options.drainServerReference;
      const connections = [...server.connections];
      const reason = serverReference === undefined ? Reason.serverShuttingDown : Reason.useAnotherServer;
      return runSpread(connections, spreadDelaysMs(connections.length, windowMs), function drainMqtt(c) {
        if (!c.isOpen) return;
        drainDisconnected++;
        c.disconnect(reason, 'server draining: reconnect to another node', serverReference);
      });
    },
  };
}

function registerStoreMetrics(ctx: BrokerContext, store: MqttSessionStore): void {
  const m = ctx.metrics;
  const s = store.stats;
  m.register('topicast_mqtt_session_store_write_errors_total', 'counter', 'MQTT session store writes that failed (e.g. disk full); live delivery continues', () => s.writeErrors);
  m.register('topicast_mqtt_session_store_batches_total', 'counter', 'MQTT session store group commits (one fsync each)', () => s.batches);
  m.register('topicast_mqtt_session_store_log_bytes', 'gauge', 'Bytes in the MQTT session store log since its last snapshot', () => s.logBytes);
  m.register('topicast_mqtt_session_store_lost_on_load', 'gauge', 'Stored deliveries not restored at start-up because their message record was never written', () => s.lostOnLoad);
}

function registerMetrics(ctx: BrokerContext, server: MqttServer): void {
  const m = ctx.metrics;
  const s = server.stats;
  m.register('topicast_mqtt_connections', 'gauge', 'Open MQTT connections (TCP and WebSocket)', () => server.connections.size);
  m.register('topicast_mqtt_sessions', 'gauge', 'MQTT sessions held, including offline persistent ones', () => server.sessions.size);
  m.register('topicast_mqtt_inflight', 'gauge', 'QoS 1/2 messages sent to MQTT clients and not yet acknowledged', () => {
    let n = 0;
    for (const session of server.sessions.values()) n += session.inflight.size;
    return n;
  });
  m.register('topicast_mqtt_queued', 'gauge', 'QoS 1/2 messages waiting for an in-flight slot or an offline client', () => {
    let n = 0;
    for (const session of server.sessions.values()) n += session.queuedCount;
    return n;
  });
  m.register('topicast_mqtt_packets_received_total', 'counter', 'MQTT packets received', () => s.packetsReceived);
  m.register('topicast_mqtt_packets_sent_total', 'counter', 'MQTT packets queued for sending', () => s.packetsSent);
  m.register('topicast_mqtt_malformed_total', 'counter', 'MQTT connections closed for a malformed packet', () => s.malformed);
  m.register('topicast_mqtt_protocol_errors_total', 'counter', 'MQTT connections closed by the server with an error reason', () => s.protocolErrors);
  m.register('topicast_mqtt_connects_refused_total', 'counter', 'CONNECTs answered with a failure code', () => s.connectsRefused);
  m.register('topicast_mqtt_takeovers_total', 'counter', 'Connections closed because the same client id connected again', () => s.takeovers);
  m.register('topicast_mqtt_keepalive_timeouts_total', 'counter', 'Connections closed after 1.5 x keepalive of silence', () => s.keepaliveTimeouts);
  m.register('topicast_mqtt_queue_dropped_total', 'counter', 'QoS 1/2 messages dropped by a full session queue (mqttQueueOverflow)', () => s.queueDropped);
  m.register('topicast_mqtt_expired_total', 'counter', 'Messages dropped because their Message Expiry Interval passed', () => s.expired);
  m.register('topicast_mqtt_oversize_dropped_total', 'counter', "Messages not sent because they exceed the client's Maximum Packet Size", () => s.oversize);
  m.register('topicast_mqtt_offline_qos0_dropped_total', 'counter', 'QoS 0 messages for offline persistent sessions (not queued)', () => s.offlineQos0Dropped);
  m.register('topicast_mqtt_sessions_expired_total', 'counter', 'Persistent sessions ended by their expiry interval', () => s.sessionsExpired);
}
