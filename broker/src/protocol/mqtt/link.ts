/**
 * What a packet handler sees of its connection (connection.ts's MqttConnection implements it).
 * Declared apart so the handlers and the dispatcher depend on this interface and never import
 * connection.ts back: the folder's imports run one way (connection → dispatcher → handlers → link).
 */
import type mqtt from 'mqtt-packet';
import type { Message } from '../../core/message.js';
import type { Connection } from '../../session/connection.js';
import type { TokenBucket } from '../../session/limits.js';
import type { FrameSource, Outbox } from '../../session/outbox.js';
import type { Version } from './encode.js';
import type { MqttServer } from './server.js';
import type { MqttSession, SessionLink } from './session.js';
import type { Will } from './types.js';

/** One acknowledgement waiting for its durable write (or for an earlier held one). */
export interface HeldAck {
  send(failed: boolean, err?: unknown): void;
  done: boolean;
  failed: boolean;
  /** The refusal passed on to `send` (the cluster bus's); other failures are logged, not passed. */
  err: unknown;
}

/**
 * `clientMaxPacketBytes` of a client that sets no Maximum Packet Size (or one above it): larger than
 * any MQTT packet (268,435,460 bytes), and a small integer V8 keeps in the object (Infinity would be
 * a boxed double per connection, issue 20).
 */
export const NO_PACKET_LIMIT = 2 ** 30 - 1;

export type ConnectionState = 'new' | 'authenticating' | 'connected' | 'closing' | 'closed';

export interface MqttLink extends SessionLink {
  readonly id: number;
  state: ConnectionState;
  version: Version;
  readonly server: MqttServer;
  readonly conn: Connection;
  readonly outbox: Outbox;
  readonly bucket: TokenBucket;
  session: MqttSession | undefined;
  /** The will of this connection (MQTT 5 §3.1.2.5), published unless it ends with a normal DISCONNECT. */
  will: Will | undefined;
  /** This connection's will as registered on the cluster bus (cluster/bridge.ts), until the connection ends. */
  busWill: boolean;
  /** When the client's credentials expire (auth hook), plus the configured clock skew; undefined = never. */
  credentialsExpireAt: number | undefined;
  /** Keepalive in ms as granted (0: none). */
  keepaliveMs: number;
  /** Client's Receive Maximum (MQTT 5 §3.1.2.11.3; 65535 when absent). */
  clientReceiveMax: number;
  /** Client's Maximum Packet Size (NO_PACKET_LIMIT when absent). */
  clientMaxPacketBytes: number;
  /** Until CONNECT is accepted: when the connection opened; then when the keepalive last saw a packet (ms). */
  lastPacketAt: number;
  clientTopicAliasMax: number;
  /** Whether reason strings and user properties may be sent on errors (Request Problem Information). */
  problemInfo: boolean;
  /** Acknowledgements held back in packet order while a durable write they wait for is pending (handlers/publish.ts). */
  heldAcks: HeldAck[] | undefined;
  /** The topic of the client's last PUBLISH that passed the topic checks (decode.ts reuses it for the same bytes). */
  lastTopic: string | undefined;
  /** Topic aliases the client set up, created on first use. */
  inboundAliases: Map<number, string> | undefined;
  readonly isOpen: boolean;
  /** Queues a control packet (never dropped by the slow-consumer policy). */
  sendPacket(packet: mqtt.Packet): void;
  /** Writes bytes now, ahead of anything queued (used only right before closing). */
  sendNow(bytes: Uint8Array): void;
  /** Server-initiated close with a reason (MQTT 5: DISCONNECT first). */
  disconnect(reason: number, reasonString?: string, serverReference?: string): void;
  /** Cleanup, once: detaches the session (publishing the will as due) and releases everything. */
  finish(): void;
  /** Closes the transport after flushing what is queued. */
  closeTransport(code: number, reason: string): void;
  /** Packets wait until `until` settles, then run in order. */
  holdPackets(until: Promise<void>): void;
  /** Runs the packets that arrived while CONNECT was being authenticated, in order. */
  releaseBacklog(): void;
  /** A paced source of retained QoS 0 messages for one subscription (MQTT 5 §3.8.4). */
  retainedSource(messages: Message[], subscriptionIds: number[] | undefined): FrameSource;
}
