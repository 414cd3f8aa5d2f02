/**
 * One MQTT network connection: bytes in through a PacketReader (packets may span
 * transport messages or share one) and decode.ts, packets out through an Outbox.
 * Implements the transport's ConnectionHandler and the session's SessionLink.
 *
 * Invariants
 * - Nothing is processed after the connection starts closing; cleanup (session
 *   detach, will, counters) runs exactly once, in `finish`.
 * - Every packet written goes through the outbox, in order. QoS 0 deliveries use
 *   `pushData` (the slow-consumer policy applies); acks, QoS 1/2 (bounded by the
 *   in-flight window) and packets that establish a topic alias use `pushControl`.
 * - A server-initiated close of an MQTT 5 connection sends DISCONNECT with a
 *   reason first [MQTT-4.13.1-1]; 3.1.1 connections are just closed [MQTT-4.8.0-1].
 */
import type mqtt from 'mqtt-packet';
import { CloseCode } from 'topicast/protocol';
import type { Message } from '../../core/message.js';
import { SendResult, type Connection } from '../../session/connection.js';
import type { ConnectionHandler } from '../../session/handler.js';
import { MAX_HELD_INBOUND, TokenBucket } from '../../session/limits.js';
import { Outbox, type FrameSource } from '../../session/outbox.js';
import { dispatch } from './dispatcher.js';
import { encodePacket, ownPublish, sharedPublish, type Version } from './encode.js';
import { Reason, ReturnCode } from './reasons.js';
import { NO_PACKET_LIMIT, type ConnectionState, type HeldAck, type MqttLink } from './link.js';
import type { MqttServer } from './server.js';
import { decodeOther, decodePublish } from './decode.js';
import { readPackets, type PacketSink, type PartialPacket } from './reader.js';
import { publishWill, type Delivery, type MqttSession, type Will } from './session.js';

/** Parser errors mqtt-packet raises for a CONNECT with an unsupported protocol level [MQTT-3.1.2-2]. */
const UNSUPPORTED_VERSION = 'Invalid protocol version';
/**
 * Parser errors that MQTT 5 §3.8.3.1 calls a Protocol Error (0x82) rather than a Malformed Packet:
 * Maximum QoS 3 and Retain Handling 3 in SUBSCRIBE options.
 */
const PROTOCOL_ERRORS = new Set(['Invalid subscribe QoS, must be <= 2', 'Invalid retain handling, must be <= 2']);

let nextConnectionId = 1;

/** `lastPacketAt` once a packet was read since the last `checkTimers` (which puts its own time there). */
const PACKET_SEEN = 0;

/**
 * One connection. It is also its outbox's transport (`Connection`): what the outbox writes goes
 * through to `conn`, except that a slow-consumer close goes through `disconnect`, so an MQTT 5
 * client learns why (0x97) first. No wrapper object for that (issue 20, bytes per connection).
 */
export class MqttConnection implements ConnectionHandler, MqttLink, PacketSink, Connection {
  readonly id = nextConnectionId++;
  state: ConnectionState = 'new';
  version: Version = 4;
  session: MqttSession | undefined;
  /** The will of this connection (MQTT 5 §3.1.2.5), published unless it ends with a normal DISCONNECT. */
  will: Will | undefined;
  /** When the client's credentials expire (auth hook), plus the configured clock skew; undefined = never. */
  credentialsExpireAt: number | undefined;
  /** Keepalive in ms as granted (0: none). */
  keepaliveMs = 0;
  /**
   * Until CONNECT is accepted: when the connection opened (its CONNECT deadline). Then when the
   * keepalive last saw a packet, or PACKET_SEEN: a read sets that, and the next `checkTimers`
   * turns it into its own time (so a read costs no clock call; the keepalive closes at most one
   * timer interval later, never earlier). One field, not two: each holds a boxed double.
   */
  lastPacketAt: number;
  /** Client's Receive Maximum (MQTT 5 §3.1.2.11.3; 65535 when absent). */
  clientReceiveMax = 65535;
  /** Client's Maximum Packet Size (NO_PACKET_LIMIT when absent). */
  clientMaxPacketBytes = NO_PACKET_LIMIT;
  clientTopicAliasMax = 0;
  /** Whether reason strings and user properties may be sent on errors (Request Problem Information). */
  problemInfo = true;
  /**
   * Acknowledgements held back, in packet order, while a durable write they wait for is pending
   * (handlers/publish.ts `inOrder`); undefined when none is (the common case costs nothing).
   */
  heldAcks: HeldAck[] | undefined;
  /** Packets received while the auth hook runs, processed in order once connected. */
  private backlog: mqtt.Packet[] | undefined;
  /** A SUBSCRIBE waits for the cluster's retained values (holdPackets): later packets wait in the backlog. */
  private holding = false;
  /** This connection's will as registered on the cluster bus (cluster/bridge.ts), until the connection ends. */
  busWill = false;
  /** The topic of this client's last PUBLISH, once checked: a device publishing to one topic is decoded and checked once. */
  lastTopic: string | undefined = undefined;
  /** Topic aliases, created on first use (most connections never use them). */
  inboundAliases: Map<number, string> | undefined;
  private outboundAliases: Map<string, number> | undefined;
  private ownBucket: TokenBucket | undefined;
  readonly outbox: Outbox;
  /** @internal The packet cut by the end of the last read (reader.ts); undefined between packets. */
  partial: PartialPacket | undefined = undefined;

  constructor(readonly server: MqttServer, readonly conn: Connection) {
    const { ctx } = server;
    this.lastPacketAt = ctx.now();
    this.outbox = new Outbox(this, ctx.outboxLimits, ctx.outboxStats, ctx.flusher);
  }

  /** The publish rate limit, made at the first PUBLISH (full then, as it would be after any idle time): subscribers hold none. */
  get bucket(): TokenBucket {
    const { config } = this.server.ctx;
    return (this.ownBucket ??= new TokenBucket(config.maxPublishesPerSec, config.publishBurst, this.server.ctx.now()));
  }

  get sendQuota(): number {
    return Math.min(this.clientReceiveMax, this.server.limits.maxInflight);
  }

  get isOpen(): boolean {
    return this.state !== 'closing' && this.state !== 'closed';
  }

  // ---- transport side ------------------------------------------------------------

  onMessage(bytes: Uint8Array): void {
    if (!this.isOpen) return;
    if (this.state === 'connected') this.lastPacketAt = PACKET_SEEN;
    try {
      // Decoded payloads are views into these bytes: copied unless the transport hands them over
      // (TCP), since `bytes` is otherwise only valid now (STYLE.md #4).
      const owned = this.conn.readsOwned === true && bytes instanceof Buffer;
      readPackets(owned ? bytes : Buffer.from(bytes), this, this.server.maxPacketBytes);
    } catch (err) {
      // Handlers do not throw by design; if one does, log it with context and drop this connection, never the process.
      this.server.ctx.log.error({ err, remote: this.conn.remoteAddress, clientId: this.session?.clientId }, 'mqtt connection handler failed');
      this.server.ctx.counters.malformed++;
      this.disconnect(Reason.implementationSpecificError, 'internal error');
      return;
    }
  }

  /** @internal One whole packet from the reader: decoded (PUBLISH by our fast path), then dispatched in order. */
  onFramed(buf: Buffer, start: number, body: number, end: number): void {
    if (buf[start]! >> 4 === 3) {
      const decoded = decodePublish(buf, start, body, end, this.version, this.lastTopic);
      if (typeof decoded === 'string') this.onParseError(decoded);
      // A QoS 0 PUBLISH without flags: its bytes may be what its subscribers get (handlers/publish.ts).
      else this.onPacket(decoded, buf[start] === 0x30 ? buf.subarray(start, end) : undefined);
      return;
    }
    const decoded = decodeOther(buf.subarray(start, end), body - start, this.version);
    if (typeof decoded === 'string') this.onParseError(decoded);
    else this.onPacket(decoded, undefined);
  }

  /** @internal The reader cannot frame the stream. */
  onFrameError(problem: 'malformed' | 'tooLarge'): void {
    if (!this.isOpen) return;
    if (problem === 'malformed') return this.onParseError('Invalid variable byte integer');
    // A packet announced larger than we accept is refused before it is buffered (MQTT 5 §3.2.2.3.6, our Maximum Packet Size).
    this.server.stats.malformed++;
    this.disconnect(Reason.packetTooLarge, `packet larger than ${this.server.maxPacketBytes} bytes`);
  }

  onDrain(): void {
    this.outbox.flush();
    this.pumpArmed = false;
    this.pumpSession();
  }

  /** A retry of `pump` is scheduled or waiting for drain; cleared when there is room again. */
  private pumpArmed = false;

  hasRoom(): boolean {
    if (this.outbox.pendingBytes() < this.server.ctx.outboxLimits.maxBufferedBytes) {
      this.pumpArmed = false;
      return true;
    }
    // Retry once after this tick's flush; if still full, the transport's drain retries (no busy loop).
    if (!this.pumpArmed) {
      this.pumpArmed = true;
      setImmediate(() => this.pumpSession());
    }
    return false;
  }

  private pumpSession(): void {
    const session = this.session;
    if (session && session.link === this && this.isOpen) session.pump();
  }

  /** Whether the transport reported its close (once per connection). */
  private transportGone = false;

  onClose(): void {
    if (this.transportGone) return;
    this.transportGone = true;
    this.finish();
    this.server.transportClosed();
  }

  private onPacket(packet: mqtt.Packet, wire: Buffer | undefined): void {
    if (!this.isOpen) return;
    this.server.stats.packetsReceived++;
    if (this.state === 'authenticating' || this.holding) {
      const backlog = (this.backlog ??= []);
      if (backlog.length >= MAX_HELD_INBOUND) {
        this.server.ctx.counters.rateLimited++;
        this.disconnect(Reason.messageRateTooHigh, `more than ${MAX_HELD_INBOUND} packets sent while earlier ones wait`);
        return;
      }
      backlog.push(packet);
      return;
    }
    dispatch(this, packet, wire);
  }

  private onParseError(message: string): void {
    if (!this.isOpen) return;
    this.server.stats.malformed++;
    this.server.ctx.counters.malformed++;
    if (this.state === 'new' && message === UNSUPPORTED_VERSION) {
      // [MQTT-3.1.2-2] CONNACK 0x01 (3.1.1 layout, understood by every version), then close.
      this.sendNow(encodePacket({ cmd: 'connack', returnCode: ReturnCode.unacceptableProtocolVersion, sessionPresent: false }, 4));
      this.closeTransport(CloseCode.protocolError, 'unsupported protocol version');
      return;
    }
    if (PROTOCOL_ERRORS.has(message)) return this.disconnect(Reason.protocolError, message); // MQTT 5 §3.8.3.1
    this.disconnect(Reason.malformedPacket, message); // [MQTT-4.13.1-1]
  }

  // ---- the outbox's transport (Connection) ---------------------------------------------

  /** @internal The outbox writes. */
  send(bytes: Uint8Array): SendResult {
    return this.conn.send(bytes);
  }

  bufferedBytes(): number {
    return this.conn.bufferedBytes();
  }

  cork(fn: () => void): void {
    this.conn.cork(fn);
  }

  /** @internal The outbox closes (slow consumer: DISCONNECT 0x97 first on MQTT 5). */
  close(code: number, reason: string): void {
    if (code === CloseCode.slowConsumer) this.disconnect(Reason.quotaExceeded, reason);
    else this.closeTransport(code, reason);
  }

  get remoteAddress(): string {
    return this.conn.remoteAddress;
  }

  // ---- writing ------------------------------------------------------------------------

  /** Queues a control packet (never dropped by the slow-consumer policy). */
  sendPacket(packet: mqtt.Packet): void {
    this.server.stats.packetsSent++;
    let bytes = encodePacket(packet, this.version);
    if (bytes.length > this.clientMaxPacketBytes && 'properties' in packet && packet.properties) {
      // [MQTT-3.4.2-2] and siblings: drop the reason string / user properties rather than exceed the client's limit.
      bytes = encodePacket({ ...packet, properties: undefined } as mqtt.Packet, this.version);
    }
    this.outbox.pushControl(bytes);
  }

  sendQos0(message: Message, retain: boolean, subscriptionIds: number[] | undefined): void {
    const alias = this.clientTopicAliasMax === 0 ? undefined : this.aliasFor(message.topic);
    const bytes = this.publishBytes(message, 0, retain, subscriptionIds, 0, false, alias);
    if (bytes.length > this.clientMaxPacketBytes) {
      this.server.stats.oversize++; // [MQTT-3.1.2-25] discarded, as if sent
      if (alias?.establishes) this.outboundAliases!.delete(message.topic);
      return;
    }
    this.server.stats.packetsSent++;
    if (alias?.establishes) this.outbox.pushControl(bytes);
    else this.outbox.pushData(bytes, message.topic);
  }

  sendPublish(d: Delivery, packetId: number, dup: boolean): boolean {
    const alias = this.clientTopicAliasMax === 0 ? undefined : this.aliasFor(d.message.topic);
    const bytes = this.publishBytes(d.message, d.qos, d.retain, d.subscriptionIds, packetId, dup, alias);
    if (bytes.length > this.clientMaxPacketBytes) {
      this.server.stats.oversize++; // [MQTT-3.1.2-25]
      if (alias?.establishes) this.outboundAliases!.delete(d.message.topic);
      return false;
    }
    this.server.stats.packetsSent++;
    this.outbox.pushControl(bytes);
    return true;
  }

  sendPubrel(packetId: number): void {
    this.sendPacket({ cmd: 'pubrel', messageId: packetId });
  }

  private publishBytes(
    message: Message, qos: 0 | 1 | 2, retain: boolean, subscriptionIds: number[] | undefined, packetId: number, dup: boolean,
    alias: { alias: number; establishes: boolean } | undefined,
  ): Uint8Array {
    const now = this.server.ctx.now();
    if (this.version === 5 && (subscriptionIds !== undefined || alias !== undefined)) {
      return ownPublish(message, qos, retain, packetId, dup, now, this.server.limits.payloads, {
        subscriptionIds,
        topicAlias: alias?.alias,
        omitTopic: alias !== undefined && !alias.establishes, // [MQTT-3.3.2-12] alias alone once established
      });
    }
    return sharedPublish(message, this.version, qos, retain, packetId, dup, now, this.server.limits.payloads);
  }

  /** Outbound topic alias (MQTT 5 §3.3.2.3.4): assigned first-come while the client's maximum allows. */
  private aliasFor(topic: string): { alias: number; establishes: boolean } | undefined {
    if (this.clientTopicAliasMax === 0) return undefined; // [MQTT-3.3.2-9] never beyond the client's maximum
    const aliases = (this.outboundAliases ??= new Map());
    const existing = aliases.get(topic);
    if (existing !== undefined) return { alias: existing, establishes: false };
    if (aliases.size >= this.clientTopicAliasMax) return undefined;
    const alias = aliases.size + 1;
    aliases.set(topic, alias);
    return { alias, establishes: true };
  }

  /** A paced source of retained QoS 0 messages for one subscription (MQTT 5 §3.8.4). */
  retainedSource(messages: Message[], subscriptionIds: number[] | undefined): FrameSource {
    let i = 0;
    const self = this;
    return {
      next(): Uint8Array | undefined {
        const now = self.server.ctx.now();
        while (i < messages.length) {
          const message = messages[i]!;
          messages[i++] = undefined as unknown as Message; // release as we go
          const expiresAt = message.properties?.expiresAt;
          if (expiresAt !== undefined && expiresAt < now) {
            self.server.stats.expired++;
            continue;
          }
          // [MQTT-3.3.1-8] retain set on deliveries of retained messages at subscribe time.
          const bytes = self.publishBytes(message, 0, true, subscriptionIds, 0, false, undefined);
          if (bytes.length > self.clientMaxPacketBytes) {
            self.server.stats.oversize++;
            continue;
          }
          self.server.stats.packetsSent++;
          return bytes;
        }
        return undefined;
      },
    };
  }

  // ---- closing ------------------------------------------------------------------------

  /**
   * Server-initiated close with a reason: MQTT 5 connections get DISCONNECT first
   * (only after CONNACK was sent [MQTT-3.2.0-2]); 3.1.1 ones are closed.
   */
  disconnect(reason: number, reasonString?: string, serverReference?: string): void {
    if (!this.isOpen) return;
    if (reason >= 0x80 && reason !== Reason.serverShuttingDown && reason !== Reason.useAnotherServer) this.server.stats.protocolErrors++;
    if (this.version === 5 && this.state === 'connected') {
      // Server Reference (MQTT 5 §3.14.2.2.5) goes with 0x9C whatever Request Problem Information says: it is no diagnostic.
      let properties: { reasonString?: string; serverReference?: string } | undefined;
      if (reasonString && this.problemInfo) properties = { reasonString: reasonString.slice(0, 256) };
      if (serverReference !== undefined) properties = { ...properties, serverReference };
      this.outbox.flush();
      this.sendNow(encodePacket({ cmd: 'disconnect', reasonCode: reason, properties }, 5));
    }
    this.closeTransport(reason < 0x80 || reason === Reason.serverShuttingDown || reason === Reason.useAnotherServer ? CloseCode.normal : CloseCode.protocolError, reasonString ?? '');
  }

  /** Writes bytes now, ahead of anything queued (used only right before closing). */
  sendNow(bytes: Uint8Array): void {
    this.server.stats.packetsSent++;
    if (this.conn.send(bytes) === SendResult.dropped) this.server.ctx.outboxStats.dropped++;
  }

  /** Closes the transport after flushing what is queued; cleanup follows in `finish`. */
  closeTransport(code: number, reason: string): void {
    if (!this.isOpen) return;
    this.outbox.flush();
    this.state = 'closing';
    this.conn.close(code, reason);
  }

  /** Runs the packets that arrived while CONNECT was being authenticated, in order (handlers/connect.ts). */
  releaseBacklog(): void {
    const backlog = this.backlog;
    this.backlog = undefined;
    for (const packet of backlog ?? []) {
      if (!this.isOpen) break;
      dispatch(this, packet);
    }
  }

  /** Packets wait in the backlog until `until` settles, then run in order (handlers/subscribe.ts). */
  holdPackets(until: Promise<void>): void {
    this.holding = true;
    const release = (): void => {
      this.holding = false;
      while (this.backlog !== undefined && this.backlog.length > 0 && !this.holding && this.isOpen) dispatch(this, this.backlog.shift()!);
      if (this.backlog?.length === 0) this.backlog = undefined;
    };
    until.then(release, (err: unknown) => {
      this.server.ctx.log.error({ err, clientId: this.session?.clientId }, 'held SUBSCRIBE failed');
      release();
    });
  }

  /** Cleanup, once: detach the session (publishing the will as due), release everything. */
  finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.outbox.close();
    this.backlog = undefined;
    this.server.connections.delete(this);
    const session = this.session;
    this.session = undefined;
    const will = this.will;
    this.will = undefined;
    // From here the will is published (now or after its delay) or discarded on this node only.
    if (this.busWill) this.server.ctx.cluster?.setWill(this, undefined);
    if (session && session.link === this) session.detach(will);
    else if (will) publishWill(this.server, will); // no session attached: nothing to wait for
  }

  /** Keepalive and CONNECT deadline; called about twice a second by the protocol. */
  checkTimers(now: number): void {
    if (!this.isOpen) return;
    if (this.state !== 'connected') {
      // No CONNECT, or an auth hook that never answers: the connection does not linger.
      if (now - this.lastPacketAt > this.server.connectTimeoutMs) this.closeTransport(CloseCode.protocolError, this.state === 'new' ? 'no CONNECT' : 'authentication timed out');
      return;
    }
    if (this.credentialsExpireAt !== undefined && now >= this.credentialsExpireAt) {
      this.server.ctx.auth.stats.expired++;
      this.disconnect(Reason.notAuthorized, 'token expired');
      return;
    }
    if (this.lastPacketAt === PACKET_SEEN) {
      this.lastPacketAt = now;
      return;
    }
    // [MQTT-3.1.2-24] one and a half times the keepalive without a packet: close.
    if (this.keepaliveMs > 0 && now - this.lastPacketAt > this.keepaliveMs * 1.5) {
      this.server.stats.keepaliveTimeouts++;
      this.disconnect(Reason.keepAliveTimeout, 'keep alive timeout');
    }
  }
}
