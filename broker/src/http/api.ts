/**
 * The HTTP API on the broker port, independent of the server library:
 * `GET /healthz`, `GET /metrics`, `POST /api/publish/<topic>` (`?retain=1`); `GET /api/history/...` is http/history.ts;
 * `GET /api/subscribe` streams (protocol/sse/).
 * uws.ts adapts requests and responses; this file holds the rules.
 */
import { contentTypeProblem, ErrorCode, mimeEssence, topicProblem } from 'topicast/protocol';
import type { Principal } from '../session/principal.js';
import type { BrokerContext } from '../context.js';
import { BusRefusedError } from '../core/bus.js';
import { REFUSALS, type Refused } from '../core/errors.js';
import { createMessage } from '../core/message.js';
import { admitPublish } from '../session/admission.js';
import type { HttpAnswer } from '../session/handler.js';

export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: string | Uint8Array;
}

export const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 204: '204 No Content', 301: '301 Moved Permanently', 304: '304 Not Modified', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found', 405: '405 Method Not Allowed', 429: '429 Too Many Requests',
  413: '413 Payload Too Large', 426: '426 Upgrade Required', 500: '500 Internal Server Error', 503: '503 Service Unavailable',
};

function json(status: number, value: unknown): HttpReply {
  return { status, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(value) };
}

export function errorReply(status: number, code: number, message: string): HttpReply {
  return json(status, { error: { code, message } });
}

/** A refusal (session/admission.ts) in its HTTP form, from the one table of core/errors.ts, with Retry-After where it has one. */
export function refusalReply(refused: Refused): HttpReply {
  const wire = REFUSALS[refused.refusal];
  const r = errorReply(wire.status, wire.code, refused.message);
  if (refused.retryAfterSec !== undefined) r.headers['Retry-After'] = String(refused.retryAfterSec);
  return r;
}

/** A protocol's answer to a request (session/handler.ts `HttpAnswer`): 204 without a body, else its JSON error. */
export function answerReply(a: HttpAnswer): HttpReply {
  return a.status === 204 ? { status: 204, headers: {}, body: '' } : errorReply(a.status, a.code ?? 0, a.message ?? '');
}

/** Methods allowed per API path (protocols' own paths are looked up first, transport/uws.ts); other paths are static files (GET, HEAD). */
export function allowedMethods(path: string): readonly string[] {
  if (path === '/healthz' || path === '/metrics') return ['GET', 'HEAD'];
  if (path.startsWith('/api/publish/')) return ['POST'];
  if (path.startsWith('/api/history/')) return ['GET'];
  if (path.startsWith('/api/')) return [];
  return ['GET', 'HEAD'];
}

/**
 * `GET /healthz`: readiness (200 only when serving, not draining and, with a cluster bus, the bus
 * is up). `GET /healthz?live`: liveness only: 200 whenever the process answers HTTP, so a
 * supervisor restarts a hung node but not every node during a bus outage.
 */
export function healthz(ctx: BrokerContext, ready: boolean, draining = false, query = ''): HttpReply {
  if (new URLSearchParams(query).has('live')) return json(200, { status: 'alive', version: ctx.version, uptimeSec: Math.floor((ctx.now() - ctx.startedAt) / 1000) });
  return json(ready && !draining ? 200 : 503, {
    status: draining ? 'draining' : ready ? 'ok' : 'not-ready',
    version: ctx.version,
    uptimeSec: Math.floor((ctx.now() - ctx.startedAt) / 1000),
    connections: ctx.openConnections(),
    ...(ctx.cluster && { bus: ctx.cluster.state }), // not ready while the cluster bus is down
  });
}

export function metrics(ctx: BrokerContext): HttpReply {
  return { status: 200, headers: { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }, body: ctx.metrics.render() };
}

/** 401 for missing or refused credentials (`Authorization: Bearer <token>`); the reason never holds the token. */
export function unauthenticated(reason: string): HttpReply {
  return errorReply(401, ErrorCode.unauthenticated, reason);
}

/**
 * The content type a `POST /api/publish` body travels with (PROTOCOL.md §8): the request's
 * `Content-Type` as sent, except HTML forms' `application/x-www-form-urlencoded`. That is what
 * `curl --data 21.5` sends by default for a body that is a plain typed value, so it counts as
 * untyped text, exactly like `mosquitto_pub -m 21.5`: no content type, and subscribers read it by
 * the untagged rules (21.5 the number, `open` the string). No header: no content type either.
 */
export function publishContentType(header: string | undefined): string | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  if (mimeEssence(header) === 'application/x-www-form-urlencoded') return undefined;
  return header.trim();
}

/**
 * `POST /api/publish/<topic>`: the topic is the rest of the path, percent-decoded; the body's
 * `Content-Type` travels with it (`publishContentType`).
 * `principal` is the authenticated caller; without one (authentication off) every topic is allowed.
 */
export function publish(ctx: BrokerContext, path: string, query: string, body: Uint8Array, principal?: Principal, contentTypeHeader?: string): HttpReply | Promise<HttpReply> {
  let topic: string;
  try {
    topic = decodeURIComponent(path.slice('/api/publish/'.length));
  } catch {
    return errorReply(400, ErrorCode.invalidTopic, 'topic is not valid percent-encoding');
  }
  // The request's own well-formedness first (400), then admission in its one order (session/admission.ts).
  const problem = topicProblem(topic, ctx.topicLimits);
  if (problem !== undefined) return errorReply(400, ErrorCode.invalidTopic, `topic ${problem}`);
  const contentType = publishContentType(contentTypeHeader);
  const badType = contentType === undefined ? undefined : contentTypeProblem(contentType);
  if (badType) return errorReply(400, ErrorCode.badFrame, `Content-Type ${badType}`);
  const params = new URLSearchParams(query);
  const r = params.get('retain');
  const retain = r === '1' || r === 'true';
  const refused = admitPublish(ctx, topic, body.length, retain, principal?.permissions, undefined);
  if (refused) return refusalReply(refused);
  const properties = contentType === undefined ? undefined : { contentType };
  const { deliveries, durable } = ctx.router.publish(createMessage(topic, body, retain, undefined, 0, properties), true);
  const ok = json(200, { topic, retain, deliveries });
  // With a durable store, 200 means stored (like a native ACK): wait for the write, 503 if it failed.
  // With a cluster bus, 200 also means the bus took it; 503 + Retry-After when its outage buffer is full.
  if (durable === undefined) return ok;
  return durable.then(
    () => ok,
    (err: unknown) => err instanceof BusRefusedError
      ? retryLater(errorReply(503, ErrorCode.unavailable, `${err.message}; the message was delivered on this node only`), err.retryAfterSec)
      : errorReply(503, ErrorCode.unavailable, 'store write failed (retained value or history); the message was delivered live but not stored'),
  );
}

function retryLater(reply: HttpReply, retryAfterSec: number): HttpReply {
  reply.headers['Retry-After'] = String(retryAfterSec);
  return reply;
}
