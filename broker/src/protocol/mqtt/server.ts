/**
 * State shared by every MQTT connection of one broker: the session store keyed
 * by client id, the open connections, counters and the auth hook. Created once
 * by `createMqttProtocol`; handlers reach it through their connection.
 */
import type { BrokerContext } from '../../context.js';
import type { Authenticate } from './auth.js';
import type { SessionStore } from './persist.js';
import type { MqttSession } from './session.js';
import { SharedGroups } from './shared.js';
import type { MqttLimits, MqttStats } from './types.js';

export type { MqttStats } from './types.js';

/** What the server keeps of each open connection: its timers and its close (connection.ts implements it). */
export interface ServedConnection {
  readonly isOpen: boolean;
  /** Keepalive and CONNECT deadline; called about twice a second. */
  checkTimers(now: number): void;
  disconnect(reason: number, reasonString?: string, serverReference?: string): void;
}

export class MqttServer {
  readonly sessions = new Map<string, MqttSession>();
  readonly connections = new Set<ServedConnection>();
  readonly shared: SharedGroups;
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
  /** The MQTT settings, derived once (types.ts). */
  readonly limits: MqttLimits;
  /** Called once per connection when its transport closed, after its cleanup (index.ts: counters, the timer). */
  transportClosed: () => void = () => undefined;
  constructor(
    readonly ctx: BrokerContext,
    readonly authenticate: Authenticate,
    /** How long a connection may take to send CONNECT and pass authentication (MQTT 5 §3.1.4: "a reasonable amount of time"). */
    readonly connectTimeoutMs = 10_000,
    /** With `--data`: where persistent sessions are kept across restarts (persist.ts); with a NATS bus, JetStream. */
    readonly sessionStore: SessionStore | undefined = undefined,
  ) {
    this.shared = new SharedGroups(ctx.router);
    const c = ctx.config;
    this.limits = {
      maxInflight: c.mqttMaxInflight,
      maxTopicAliases: c.mqttMaxTopicAliases,
      maxSessionExpirySec: c.mqttMaxSessionExpirySec,
      maxKeepaliveSec: c.mqttMaxKeepaliveSec,
      maxQueued: c.mqttMaxQueued,
      queueOverflow: c.mqttQueueOverflow,
      payloads: c.mqttPayloads,
      maxSubscriptionsPerConnection: c.maxSubscriptionsPerConnection,
    };
    this.maxPacketBytes = Math.min(268_435_460, c.maxPayloadBytes + c.maxTopicBytes + 1024);
  }
}
