/**
 * The MQTT folder's plain data types: what sessions, the session store, shared groups and the
 * server exchange. A leaf module (it imports nothing from this folder), so the modules above it
 * depend on it and never on each other in a circle.
 */
import type { Message, MessageProperties } from '../../core/message.js';
import type { Subscription, SubscriptionOptions } from '../../core/router.js';

/** A will as given in CONNECT (MQTT 5 §3.1.2.5), kept as data so a persistent session can store it. */
export interface Will {
  topic: string;
  payload: Uint8Array;
  qos: 0 | 1 | 2;
  retain: boolean;
  properties: Omit<MessageProperties, 'expiresAt'> | undefined;
  /** MQTT 5 Message Expiry Interval of the will: counts from when it is published (§3.1.3.2.4). */
  expiryIntervalSec: number | undefined;
  /** MQTT 5 Will Delay Interval (0 for 3.1.1). */
  delaySec: number;
}

export interface MqttSubscriptionOptions extends SubscriptionOptions {
  /** MQTT 5 retain handling: 0 send retained, 1 only for a new subscription, 2 never. */
  retainHandling: 0 | 1 | 2;
  /** `[subscriptionId]`, built once so deliveries do not allocate it. */
  subscriptionIds?: number[];
}

export interface MqttSubscription extends Subscription {
  readonly options: MqttSubscriptionOptions;
}

/** One message on its way to this session's client. */
export interface Delivery {
  message: Message;
  qos: 0 | 1 | 2;
  retain: boolean;
  subscriptionIds: number[] | undefined;
  /** Persistent sessions: the delivery's key in the session store, and the id of its message's record. */
  seq?: number;
  msgId?: number;
}

export interface InflightEntry extends Delivery {
  /**
   * 'publish': waiting for PUBACK/PUBREC; 'pubrel': PUBREL sent, waiting for PUBCOMP;
   * 'resend': sent on an earlier connection, to be resent with DUP once the Receive Maximum allows.
   */
  state: 'publish' | 'pubrel' | 'resend';
}

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

/** What the session store (persist.ts) reads of a session (session.ts's MqttSession). */
export interface PersistedSession {
  readonly clientId: string;
  readonly version: 3 | 4 | 5;
  readonly expirySec: number;
  readonly disconnectedAtMs: number;
  /** The session's live connection, if any. */
  readonly link: unknown;
  /** The store this session is persisted in (compared by identity). */
  readonly store: unknown;
  readonly ended: boolean;
  readonly subscriptions: ReadonlyMap<string, MqttSubscription>;
  readonly sharedSubscriptions: ReadonlyMap<string, MqttSubscriptionOptions>;
  readonly inflight: ReadonlyMap<number, InflightEntry>;
  readonly awaitingRelease: ReadonlySet<number>;
  forEachQueued(fn: (d: Delivery) => void): void;
  durableWill(): Will | undefined;
}

/**
 * The MQTT settings the connection, its handlers and sessions read, derived once from the
 * configuration (server.ts `limits`): one typed slice instead of `c.server.ctx.config` chains.
 */
export interface MqttLimits {
  /** Our Receive Maximum, and the in-flight window towards a client (mqttMaxInflight). */
  readonly maxInflight: number;
  /** Our Topic Alias Maximum (mqttMaxTopicAliases; 0: none). */
  readonly maxTopicAliases: number;
  readonly maxSessionExpirySec: number;
  readonly maxKeepaliveSec: number;
  /** QoS 1/2 messages queued per session, and what happens past it. */
  readonly maxQueued: number;
  readonly queueOverflow: 'drop-newest' | 'drop-oldest';
  /** What MQTT subscribers get of MessagePack payloads. */
  readonly payloads: 'json' | 'as-published';
  readonly maxSubscriptionsPerConnection: number;
}
