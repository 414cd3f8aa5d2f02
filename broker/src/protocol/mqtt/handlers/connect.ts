/**
 * CONNECT (MQTT 3.1.1 §3.1, MQTT 5 §3.1): validate, authenticate through the
 * hook, take over a connected client id, start or resume the session, answer
 * CONNACK, then resend what was in flight and process packets that arrived
 * meanwhile. Refusals answer CONNACK with a failure code and close [MQTT-3.2.2-5].
 */
import { randomBytes } from 'node:crypto';
import type mqtt from 'mqtt-packet';
import { CloseCode, topicProblem } from 'topicast/protocol';
import type { AuthResult, TopicPermissions } from '../auth.js';
import { NO_PACKET_LIMIT, type MqttLink } from '../link.js';
import { encodePacket, type Version } from '../encode.js';
import { Reason, returnCodeFor } from '../reasons.js';
import { keepOffline, releaseSession } from '../adopt.js';
import { MqttSession, willMessage, type Will } from '../session.js';
import { REFUSALS } from '../../../core/errors.js';
import { admitCapacity, admitWill, guarded } from '../../../session/admission.js';
import { addressKey } from '../../../transport/address.js';
import { isUtf8 } from 'node:buffer';

type ConnackProperties = NonNullable<mqtt.IConnackPacket['properties']>;

function refuse(c: MqttLink, reason: number, why: string): void {
  c.server.stats.connectsRefused++;
  const packet: mqtt.IConnackPacket = c.version === 5
    ? { cmd: 'connack', reasonCode: reason, sessionPresent: false, properties: c.problemInfo ? { reasonString: why } : undefined }
    : { cmd: 'connack', returnCode: returnCodeFor(reason), sessionPresent: false };
  c.sendNow(encodePacket(packet, c.version)); // [MQTT-3.2.2-6] session present 0 with a failure code
  c.closeTransport(CloseCode.protocolError, why); // [MQTT-3.2.2-7]
}

/** Closes without CONNACK: malformed CONNECT in 3.1.1 (MQTT 5 gets CONNACK 0x81 first). */
function malformed(c: MqttLink, why: string): void {
  c.server.stats.malformed++;
  if (c.version === 5) return refuse(c, Reason.malformedPacket, why);
  c.closeTransport(CloseCode.protocolError, why);
}

export function onConnect(c: MqttLink, p: mqtt.IConnectPacket): void {
  const { server } = c;
  const { ctx } = server;
  const { config } = ctx;
  const version: Version = p.protocolVersion ?? 4;
  c.version = version; // the packets that follow are decoded at this level
  const v5 = version === 5;
  const props = p.properties;
  if (v5) c.problemInfo = props?.requestProblemInformation !== false;

  // [MQTT-3.1.2-1] "MQIsdp" goes with level 3 (MQTT 3.1), "MQTT" with 4 and 5.
  if ((p.protocolId === 'MQIsdp') !== (version === 3)) return refuse(c, Reason.unsupportedProtocolVersion, 'protocol name and level do not match'); // [MQTT-3.1.2-2]
  if (p.will && (p.will.qos as number) === 3) return malformed(c, 'will QoS 3'); // [MQTT-3.1.2-14]
  if (!v5 && p.password !== undefined && p.username === undefined) return malformed(c, 'password without user name'); // [MQTT-3.1.2-22]
  if (p.clientId.includes('\u0000')) return malformed(c, 'client id contains NUL'); // [MQTT-1.5.4-2]
  if (v5) {
    if (props?.receiveMaximum === 0) return refuse(c, Reason.protocolError, 'Receive Maximum 0'); // MQTT 5 §3.1.2.11.3
    if (props?.maximumPacketSize === 0) return refuse(c, Reason.protocolError, 'Maximum Packet Size 0'); // MQTT 5 §3.1.2.11.4
    if (props?.authenticationData !== undefined && props.authenticationMethod === undefined) return refuse(c, Reason.protocolError, 'Authentication Data without Authentication Method'); // MQTT 5 §3.1.2.11.10
    if (props?.authenticationMethod !== undefined) return refuse(c, Reason.badAuthenticationMethod, 'enhanced authentication is not supported');
  }

  // MQTT 3.1 (level 3) limits client ids to 1..23 characters (3.1 §3.1, "Client Identifier"); 3.1.1 and 5 lift it.
  if (version === 3 && p.clientId.length > 23) return refuse(c, Reason.clientIdentifierNotValid, 'MQTT 3.1 client ids are at most 23 characters');
  let clientId = p.clientId;
  let assigned = false;
  if (clientId === '') {
    // [MQTT-3.1.3-8] 3.1.1 needs clean session for an empty id; MQTT 3.1 needs an id.
    if (version === 3 || (version === 4 && !p.clean)) return refuse(c, Reason.clientIdentifierNotValid, 'empty client id needs clean session');
    clientId = `auto-${randomBytes(12).toString('hex')}`; // [MQTT-3.1.3-6] unique, assigned by the server
    assigned = true;
  }

  let will: Will | undefined;
  if (p.will) {
    const w = p.will;
    const payload = typeof w.payload === 'string' ? Buffer.from(w.payload) : Buffer.from(w.payload); // own copy: kept for the session's life
    const problem = topicProblem(w.topic, ctx.topicLimits);
    if (problem !== undefined) return v5 ? refuse(c, Reason.topicNameInvalid, `will topic ${problem}`) : malformed(c, `will topic ${problem}`); // [MQTT-3.1.3-11]
    if (payload.length > config.maxPayloadBytes) return v5 ? refuse(c, Reason.packetTooLarge, 'will payload too large') : refuse(c, Reason.serverUnavailable, 'will payload too large');
    const wp = w.properties;
    if (wp?.payloadFormatIndicator && !isUtf8(payload)) return refuse(c, Reason.payloadFormatInvalid, 'will payload is not UTF-8'); // MQTT 5 §3.1.3.2.3
    will = {
      topic: w.topic,
      payload,
      qos: w.qos ?? 0,
      retain: w.retain ?? false,
      properties: wp && {
        payloadFormatIndicator: wp.payloadFormatIndicator,
        contentType: wp.contentType,
        responseTopic: wp.responseTopic,
        correlationData: wp.correlationData,
        userProperties: wp.userProperties,
      },
      // [MQTT-3.1.3 Will Properties] the expiry counts from when the will is published (willMessage).
      expiryIntervalSec: wp?.messageExpiryInterval,
      delaySec: v5 ? wp?.willDelayInterval ?? 0 : 0,
    };
  }

  // This connection is already counted among the open ones (session/admission.ts).
  const full = admitCapacity(ctx, true);
  if (full) return refuse(c, REFUSALS[full.refusal].mqtt, full.message); // 3.1.1: return code 3, server unavailable

  // Failed and successful authentications feed the per-IP backoff (docs/SECURITY.md); the transports
  // enforce it when the next connection from that address arrives (TCP: closed at accept; WS: 429).
  const remote = addressKey(c.conn.remoteAddress, false);
  const offered = p.password !== undefined && p.password.length > 0;
  c.state = 'authenticating';
  guarded(ctx.auth.guard, remote, offered, server.authenticate(p.username, p.password, clientId), accepted).then(
    (result) => {
      if (!c.isOpen) return;
      accept(c, p, result, clientId, assigned, will);
    },
    (err: unknown) => {
      ctx.log.error({ err, clientId }, 'mqtt authenticate hook failed');
      if (c.isOpen) refuse(c, Reason.serverUnavailable, 'authentication unavailable');
    },
  );
}

/** Whether the authentication hook let the client in. */
function accepted(result: AuthResult): boolean {
  return result === true || (typeof result === 'object' && result.allowed);
}

function accept(
  c: MqttLink, p: mqtt.IConnectPacket, result: AuthResult, clientId: string, assigned: boolean, will: Will | undefined,
): void {
  const { server } = c;
  const { ctx } = server;
  const { config } = ctx;
  const v5 = c.version === 5;
  if (result === false || (typeof result === 'object' && !result.allowed)) {
    const reason = typeof result === 'object' && !result.allowed && result.reason !== undefined ? result.reason : Reason.badUserNameOrPassword;
    const why = typeof result === 'object' && !result.allowed && result.reasonString ? result.reasonString : 'not authenticated';
    return refuse(c, reason, why); // [MQTT-3.2.2-5]
  }

  const permissions = typeof result === 'object' && result.allowed ? result.permissions : undefined;
  const expiresAtMs = typeof result === 'object' && result.allowed ? result.expiresAtMs : undefined;
  if (expiresAtMs !== undefined) c.credentialsExpireAt = expiresAtMs + config.authClockSkewSec * 1000;
  // The will's admission ($SYS, permission; its size was checked with the packet), counted like a publish's.
  const willRefused = will && admitWill(ctx, will.topic, will.payload.length, permissions);
  if (willRefused) return refuse(c, REFUSALS[willRefused.refusal].mqtt, willRefused.refusal === 'broker-topic' ? 'a will cannot publish into $SYS' : 'not authorized to publish the will topic');

  const store = server.sessionStore;
  if (store?.claim !== undefined && !server.sessions.has(clientId)) {
    // A cluster session store (cluster/mqtt-sessions.ts): the node holding this client id closes
    // its connection and lets the session go first (cluster-wide takeover), then the session as
    // stored is rebuilt here. Packets that follow wait behind it (the connection is not connected yet).
    const persistent = c.version === 5 ? (p.properties?.sessionExpiryInterval ?? 0) > 0 : p.clean === false;
    store.claim(clientId, persistent, p.clean ?? true).then(
      (loaded) => {
        if (!c.isOpen) {
          // Gone while claiming: a persistent session taken here stays here, offline, as its client left it.
          if (persistent && !server.sessions.has(clientId)) {
            if (loaded !== undefined && !(p.clean ?? true)) keepOffline(server, store, loaded, ctx.now());
            else store.unhold?.(clientId);
          }
          return;
        }
        if (loaded !== undefined && !server.sessions.has(clientId)) {
          if (p.clean ?? true) store.end(clientId); // [MQTT-3.1.2-4] clean start discards it
          else {
            // Stored while connected: its node died; the bus published that connection's will (orphan will).
            if (loaded.connected) loaded.will = undefined;
            MqttSession.restore(server, loaded, store, ctx.now());
          }
        }
        begin(c, p, clientId, assigned, will, permissions);
      },
      (err: unknown) => {
        if (!c.isOpen) return;
        // A session that ends with its connection needs nothing stored: it starts here (the
        // takeover of a connection on another node is what is missed). A persistent one waits
        // for the store: the client retries, through the balancer to a node whose bus is up.
        ctx.log.warn({ err, clientId, persistent }, 'mqtt: claiming the client id on the cluster failed');
        if (persistent) refuse(c, Reason.serverUnavailable, 'session store unavailable');
        else begin(c, p, clientId, assigned, will, permissions);
      },
    );
    return;
  }
  begin(c, p, clientId, assigned, will, permissions);
}

/** Takes over a connection of this client id on this node, starts or resumes the session, answers CONNACK. */
function begin(
  c: MqttLink, p: mqtt.IConnectPacket, clientId: string, assigned: boolean, will: Will | undefined, permissions: TopicPermissions | undefined,
): void {
  const { server } = c;
  const { ctx } = server;
  const { config } = ctx;
  const v5 = c.version === 5;
  // [MQTT-3.1.4-3] a second connection with the same client id takes the session over.
  let session = server.sessions.get(clientId);
  const previous = session?.link;
  if (previous !== undefined) {
    server.stats.takeovers++;
    const old = previous as MqttLink;
    old.disconnect(Reason.sessionTakenOver, 'session taken over');
    old.finish(); // detaches now (will as due) so the new connection finds a settled session
    session = server.sessions.get(clientId);
  }
  const clean = p.clean ?? true;
  if (clean && session) {
    session.end(); // [MQTT-3.1.2-4] clean start discards the old session [MQTT-3.1.2-6]
    session = undefined;
  }
  const sessionPresent = session !== undefined; // [MQTT-3.2.2-2] [MQTT-3.2.2-3]
  if (!session) {
    session = new MqttSession(server, clientId);
    server.sessions.set(clientId, session);
  }

  const connack: ConnackProperties = {};
  if (v5) {
    const requested = p.properties?.sessionExpiryInterval ?? 0; // MQTT 5 §3.1.2.11.2: absent means 0
    session.expirySec = Math.min(requested, server.limits.maxSessionExpirySec);
    if (session.expirySec !== requested) connack.sessionExpiryInterval = session.expirySec; // MQTT 5 §3.2.2.3.2
  } else {
    session.expirySec = clean ? 0 : server.limits.maxSessionExpirySec; // 3.1.1: a persistent session, bounded by our cap
  }

  let keepaliveSec = p.keepalive ?? 0;
  const maxKeepalive = server.limits.maxKeepaliveSec;
  if (v5 && maxKeepalive > 0 && (keepaliveSec === 0 || keepaliveSec > maxKeepalive)) {
    keepaliveSec = maxKeepalive;
    connack.serverKeepAlive = maxKeepalive; // [MQTT-3.2.2-21] the client uses ours
  }
  c.keepaliveMs = keepaliveSec * 1000;

  if (v5) {
    const props = p.properties;
    c.clientReceiveMax = props?.receiveMaximum ?? 65535;
    c.clientMaxPacketBytes = Math.min(props?.maximumPacketSize ?? NO_PACKET_LIMIT, NO_PACKET_LIMIT);
    c.clientTopicAliasMax = props?.topicAliasMaximum ?? 0;
    if (server.limits.maxInflight < 65535) connack.receiveMaximum = server.limits.maxInflight;
    if (server.limits.maxTopicAliases > 0) connack.topicAliasMaximum = server.limits.maxTopicAliases;
    connack.maximumPacketSize = server.maxPacketBytes;
    if (assigned) connack.assignedClientIdentifier = clientId; // [MQTT-3.2.2-16]
  } else {
    c.clientReceiveMax = server.limits.maxInflight;
  }

  c.will = will;
  if (will && ctx.cluster) {
    // With a cluster bus, another node publishes it if this one dies while connected (cluster/bridge.ts).
    ctx.cluster.setWill(c, willMessage(will, ctx.now()));
    c.busWill = true;
  }
  c.session = session;
  c.state = 'connected';
  c.lastPacketAt = ctx.now(); // the keepalive counts from here (until now: the CONNECT deadline's start)
  c.conn.established?.(); // no longer a half-open connection (transport/admission.ts)
  session.attach(c, will);
  session.applyPermissions(permissions);
  session.persist(server.sessionStore); // --data: a session with expiry > 0 survives a restart (persist.ts)
  server.sessionStore?.hold?.(clientId, () => releaseSession(server, clientId)); // cluster store: a claim elsewhere takes it over
  c.sendPacket(v5
    ? { cmd: 'connack', reasonCode: Reason.success, sessionPresent, properties: connack }
    : { cmd: 'connack', returnCode: 0, sessionPresent });
  if (sessionPresent) session.resume(); // [MQTT-4.4.0-1] resend unacknowledged PUBLISH and PUBREL

  c.releaseBacklog();
}
