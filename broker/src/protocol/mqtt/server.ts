/**
 * State shared by every MQTT connection of one broker: the session store keyed
 * by client id, the open connections, counters and the auth hook. Created once
 * by `createMqttProtocol`; handlers reach it through their connection.
 */
import type { BrokerContext } from '../../context.js';
import type { Authenticate } from './auth.js';
import type { MqttConnection } from './connection.js';
import type { MqttSessionStore } from './persist.js';
import type { MqttSession } from './session.js';
import { SharedGroups } from './shared.js';

export interface MqttStats {
  packetsReceived: number;
  packetsSent: number;
  malformed: number;
  protocolErrors: number;
  connectsRefused: number;
  takeovers: number;
  keepaliveTimeouts: number;
  /** QoS 1/2 messages dropped because an offline or backed-up session's queue was full. */
  queueDropped: number;
  /** Messages dropped because their Message Expiry Interval passed before delivery. */
  expired: number;
  /** Messages not sent because they exceed the client's Maximum Packet Size [MQTT-3.1.2-25]. */
  oversize: number;
  /** QoS 0 messages for a persistent session while it was offline (not queued). */
  offlineQos0Dropped: number;
  sessionsExpired: number;
}

export class MqttServer {
  readonly sessions = new Map<string, MqttSession>();
  readonly connections = new Set<MqttConnection>();
  readonly shared: SharedGroups = new SharedGroups(this);
  readonly stats: MqttStats = {
    packetsReceived: 0, packetsSent: 0, malformed: 0, protocolErrors: 0, connectsRefused: 0, takeovers: 0,
    keepaliveTimeouts: 0, queueDropped: 0, expired: 0, oversize: 0, offlineQos0Dropped: 0, sessionsExpired: 0,
  };
  /**
   * Largest packet we accept (our CONNACK Maximum Packet Size): the largest payload,
   * the longest topic and 1 KiB for header and properties, the same bound the
   * WebSocket transport puts on a message; larger packets get DISCONNECT 0x95.
   */
  readonly maxPacketBytes: number;
  constructor(
    readonly ctx: BrokerContext,
    readonly authenticate: Authenticate,
    /** How long a connection may take to send CONNECT and pass authentication (MQTT 5 §3.1.4: "a reasonable amount of time"). */
    readonly connectTimeoutMs = 10_000,
    /** With `--data`: where persistent sessions are kept across restarts (persist.ts). */
    readonly sessionStore: MqttSessionStore | undefined = undefined,
  ) {
    const c = ctx.config;
    this.maxPacketBytes = Math.min(268_435_460, c.maxPayloadBytes + c.maxTopicBytes + 1024);
  }
}
