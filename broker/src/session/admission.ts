/**
 * Admission, protocol-neutral: whether a connection may open, who it is, and whether a publish
 * may reach the router. Every edge (native WebSocket, MQTT over TCP and WebSocket, HTTP publish,
 * HTTP streaming) asks here and only maps the answer to its wire form (core/errors.ts REFUSALS).
 *
 * - `admitConnection`: origin, draining, descriptors, `maxConnections`, the per-IP guard; in that
 *   order, each refusal counted once, here.
 * - `authenticate`: a credential check, then the abuse guard told of its outcome (a success
 *   resets the address's backoff; a failure with credentials counts toward it: guessing, not a
 *   client without any).
 * - `admitPublish`: one fixed order for every protocol — `$SYS`, permission, rate, size, retained
 *   bounds — with the counters in one place: `$SYS` and permission refusals count in
 *   `auth.stats.denied`, the rate limit in `counters.rateLimited`.
 *
 * Topic syntax is not admission: a malformed topic is a malformed frame or packet, and each edge
 * answers it before asking here (MQTT disconnects, native and HTTP answer "invalid topic").
 * Cost: the publish path allocates nothing unless it refuses.
 */
import { CloseCode } from 'topicast/protocol';
import { addressKey, type AbuseGuard } from '../auth/abuse.js';
import type { Auth, AuthOutcome } from '../auth/index.js';
import type { BrokerCounters } from '../context.js';
import type { Refused } from '../core/errors.js';
import type { RetainedStore } from '../core/retained.js';
import type { Logger } from '../observe/log.js';
import type { Admission as SocketAdmission } from '../transport/admission.js';
import type { Connection } from './connection.js';
import type { ConnectionHandler, ProtocolHandler } from './handler.js';
import { isBrokerTopic, retainedFull, TokenBucket, type ConnectionLimits, type PublishLimits } from './limits.js';

export type { ConnectionLimits, PublishLimits } from './limits.js';

/** What admission asks of a principal's permissions (auth/permissions.ts; MQTT's hook may give its own). */
export interface PublishPermissions {
  canPublish(topic: string): boolean;
}

/** What admission reads of the broker: a slice of the context, so tests and edges need no more. */
export interface AdmissionContext {
  readonly auth: Auth;
  readonly counters: BrokerCounters;
  readonly log: Logger;
  readonly publishLimits: PublishLimits;
  readonly connectionLimits: ConnectionLimits;
  readonly router: { readonly retained: RetainedStore };
  now(): number;
  openConnections(): number;
}

/** A connection's publish token bucket, from the limits (`maxPublishesPerSec` 0 = unlimited). */
export function publishBucket(ctx: Pick<AdmissionContext, 'publishLimits' | 'now'>): TokenBucket {
  const { maxPublishesPerSec, publishBurst } = ctx.publishLimits;
  return new TokenBucket(maxPublishesPerSec, publishBurst, ctx.now());
}

/**
 * Whether a publish may be routed: undefined, or the first refusal in the fixed order `$SYS`,
 * permission, rate, size, retained bounds. `permissions` undefined = unrestricted; `bucket`
 * undefined = no per-connection rate (an HTTP request). Counted here; answered by the edge.
 */
export function admitPublish(
  ctx: AdmissionContext, topic: string, payloadBytes: number, retain: boolean, permissions: PublishPermissions | undefined, bucket: TokenBucket | undefined,
): Refused | undefined {
  if (isBrokerTopic(topic)) {
    // $SYS/... is the broker's own (DESIGN.md "Topics"): its figures are never spoofed.
    ctx.auth.stats.denied++;
    return { refusal: 'broker-topic', message: '$SYS topics are published by the broker only' };
  }
  if (permissions !== undefined && !permissions.canPublish(topic)) {
    ctx.auth.stats.denied++;
    return { refusal: 'not-authorized', message: `not authorized to publish to ${JSON.stringify(topic.slice(0, 64))}` };
  }
  const limits = ctx.publishLimits;
  if (bucket !== undefined && !bucket.take(ctx.now())) {
    ctx.counters.rateLimited++;
    return { refusal: 'rate-limited', message: `more than ${limits.maxPublishesPerSec} publishes per second` };
  }
  if (payloadBytes > limits.maxPayloadBytes) {
    return { refusal: 'payload-too-large', message: `payload of ${payloadBytes} bytes exceeds maxPayloadBytes ${limits.maxPayloadBytes}` };
  }
  const full = retain ? retainedFull(ctx.router.retained, topic, payloadBytes, limits) : undefined;
  if (full !== undefined) return { refusal: 'retained-full', message: full };
  return undefined;
}

/**
 * Whether a will may be registered: the publish rules that apply before the fact ($SYS,
 * permission, size), with the same counters. No rate: a will is not a publish yet.
 */
export function admitWill(ctx: AdmissionContext, topic: string, payloadBytes: number, permissions: PublishPermissions | undefined): Refused | undefined {
  return admitPublish(ctx, topic, payloadBytes, false, permissions, undefined);
}

/** The node's own state that gates new connections: set by the composition root. */
export interface ConnectionGate {
  /** True while the node drains (session/drain.ts): new connections go elsewhere. */
  draining: boolean;
  /** Descriptor budget and half-open caps (transport/admission.ts), where a listener has them. */
  readonly sockets: SocketAdmission | undefined;
}

export function createGate(sockets: SocketAdmission | undefined): ConnectionGate {
  return { draining: false, sockets };
}

/** `maxConnections` reached? `counted`: the connection asking is already among the open ones (MQTT CONNECT). */
export function admitCapacity(ctx: AdmissionContext, counted = false): Refused | undefined {
  const open = ctx.openConnections() - (counted ? 1 : 0);
  if (open < ctx.connectionLimits.maxConnections) return undefined;
  ctx.counters.connectionsRefused++;
  return { refusal: 'capacity', message: 'too many connections' };
}

/** The per-IP guard (connections, connect rate, authentication backoff) for a new connection from `ip`. */
export function admitAddress(guard: AbuseGuard, ip: string): Refused | undefined {
  const limited = guard.admit(ip);
  if (!limited) return undefined;
  return { refusal: 'per-ip', message: `too many connections from your address (${limited.refusal})`, retryAfterSec: Math.ceil(limited.retryAfterMs / 1000) };
}

/**
 * Whether a long-lived connection (a WebSocket upgrade, an event stream) may open: origin,
 * draining, descriptors, `maxConnections`, the per-IP guard, in that order. `origin` and `host`
 * are the request's headers (empty when absent). Counted and logged here.
 */
export function admitConnection(ctx: AdmissionContext, gate: ConnectionGate, remote: string, origin: string, host: string): Refused | undefined {
  if (!ctx.auth.originAllowed(origin, host)) {
    // Cross-site WebSocket hijacking guard (docs/SECURITY.md): a page elsewhere must not use a visitor's reach.
    ctx.auth.stats.originRefused++;
    ctx.log.info({ remote, origin }, 'connection refused: origin not allowed');
    return { refusal: 'origin', message: 'origin not allowed' };
  }
  if (gate.draining) {
    ctx.counters.connectionsRefused++;
    return { refusal: 'draining', message: 'node draining: connect to another node', retryAfterSec: 1 };
  }
  if (gate.sockets?.full) {
    // Out of file descriptors (transport/admission.ts): the connections held are served, new ones wait.
    gate.sockets.refused('descriptors');
    return { refusal: 'descriptors', message: 'too many connections: out of file descriptors', retryAfterSec: 5 };
  }
  const capacity = admitCapacity(ctx);
  if (capacity) return capacity;
  const limited = admitAddress(ctx.auth.guard, remote);
  if (limited) ctx.log.debug({ remote, limit: limited.message }, 'connection refused: per-IP limit');
  return limited;
}

/**
 * A request that is not a connection (an HTTP publish, a history export) from an address in an
 * authentication backoff is refused before its credentials are checked again.
 */
export function admitRequest(guard: AbuseGuard, remote: string): Refused | undefined {
  const backoffMs = guard.backoffMs(remote);
  if (backoffMs <= 0) return undefined;
  return { refusal: 'auth-backoff', message: 'too many failed authentications from your address', retryAfterSec: Math.ceil(backoffMs / 1000) };
}

/**
 * Runs a credential check and tells the abuse guard how it went: a success resets the address's
 * failure count, a failure counts toward its backoff only when credentials were `offered`.
 * A check that throws tells the guard nothing (the caller answers "unavailable").
 */
export function guarded<T>(guard: AbuseGuard, remote: string, offered: boolean, check: Promise<T>, accepted: (result: T) => boolean): Promise<T> {
  return check.then((result) => {
    if (accepted(result)) guard.authSucceeded(remote);
    else if (offered) guard.authFailed(remote);
    return result;
  });
}

const UNAVAILABLE: AuthOutcome = { ok: false, reason: 'authentication unavailable' };

/** Authenticates a token (or none) from `remote` for the native and HTTP edges: `guarded`, and a failing check logged and refused. */
export function authenticate(ctx: Pick<AdmissionContext, 'auth' | 'log'>, remote: string, token: string | undefined): Promise<AuthOutcome> {
  return guarded(ctx.auth.guard, remote, token !== undefined, ctx.auth.authenticate(token), (o) => o.ok).catch((err: unknown) => {
    ctx.log.error({ err, remote }, 'authentication failed unexpectedly');
    return UNAVAILABLE;
  });
}

/**
 * The per-IP limits on a raw TCP listener's protocol (MQTT over TCP), where no upgrade comes
 * first: a refused socket is closed before its first packet is read (the WebSocket paths refuse
 * at the upgrade instead, with HTTP 429).
 */
export function guardTcp(protocol: ProtocolHandler, guard: AbuseGuard): ProtocolHandler {
  return {
    name: protocol.name,
    open(conn: Connection): ConnectionHandler {
      const ip = addressKey(conn.remoteAddress, false);
      if (admitAddress(guard, ip) !== undefined) {
        conn.close(CloseCode.tryAgainLater, 'per-IP limit');
        return REFUSED;
      }
      guard.opened(ip);
      return new GuardedHandler(protocol.open(conn), guard, ip);
    },
  };
}

/** The protocol's handler, and the guard told of the close: one small object per connection, no closures (issue 20). */
class GuardedHandler implements ConnectionHandler {
  constructor(private readonly handler: ConnectionHandler, private readonly guard: AbuseGuard, private readonly ip: string) {}

  onMessage(bytes: Uint8Array): void {
    this.handler.onMessage(bytes);
  }

  onDrain(): void {
    this.handler.onDrain();
  }

  onClose(code: number, reason: string, clean: boolean): void {
    this.guard.closed(this.ip);
    this.handler.onClose(code, reason, clean);
  }
}

const REFUSED: ConnectionHandler = { onMessage() {}, onDrain() {}, onClose() {} };
