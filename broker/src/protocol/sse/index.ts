/**
 * HTTP streaming (PROTOCOL.md §10): `GET /api/subscribe?filter=F[&filter=G…]` answered with
 * Server-Sent Events. The rules live here; transport/uws.ts adapts the request and the response
 * (a `Connection` over an HttpResponse) and calls, in order: `parse` (400 on a bad request),
 * authentication, `check` (403/400 against the principal), `stream` (200, then events).
 */
import { CloseCode, ErrorCode } from 'topicast/protocol';
import type { Principal } from '../../auth/index.js';
import type { BrokerContext } from '../../context.js';
import type { Connection } from '../../session/connection.js';
import type { ConnectionHandler } from '../../session/handler.js';
import type { ProtocolHandler } from '../../session/handler.js';
import { checkSubscribe } from '../../session/subscribe.js';
import { createEmulation, type SessionReply } from './emulation.js';
import { parsePosition, streamStart } from './event.js';
import { SseSession, type StreamRequest } from './session.js';

export type { StreamRequest } from './session.js';
export type { SessionReply } from './emulation.js';

/** A request refused before the stream starts: the HTTP status and the message of its JSON error body. */
export interface StreamRefusal {
  status: number;
  code: number;
  message: string;
}

/** Heartbeat comments this often: below the 30-60 s idle timeouts of common proxies and load balancers (nginx's proxy_read_timeout is 60 s). */
const HEARTBEAT_MS = 15_000;
/** Reconnection delay told to EventSource (`retry:`): quick enough that a broker restart costs a second, not the browser's default three. */
const RETRY_MS = 1_000;
/** Query parameters a stream understands; anything else is a typo worth a 400 (`?topic=` for `?filter=`). */
const PARAMETERS = new Set(['filter', 'token']);

export interface SseProtocol {
  readonly name: 'sse';
  readonly sessionCount: number;
  /** Reads the query and `Last-Event-ID`; a refusal for a malformed request. `token` is for authentication only: never log it. */
  parse(query: string, lastEventId: string): (StreamRequest & { token: string | undefined }) | StreamRefusal;
  /** The subscribe checks of a native SUBSCRIBE (filters, permissions, limits) for this principal. */
  check(request: StreamRequest, principal: Principal | undefined): StreamRefusal | undefined;
  /** Starts a checked stream on an open response. */
  stream(conn: Connection, request: StreamRequest, principal: Principal | undefined): ConnectionHandler;
  /** Ends every stream (graceful shutdown): each gets a `close` event; EventSource reconnects by itself. */
  closeAll(): void;
  /** `GET /api/session` (§10.5): only `token` may be given. */
  parseSession(query: string): { token: string | undefined; filters?: undefined } | StreamRefusal;
  /** Starts a native session over a started stream (§10.5). */
  session(conn: Connection, principal: Principal | undefined): ConnectionHandler;
  /** `POST /api/session/<id>`: the client's frames. */
  post(id: string, body: Uint8Array): SessionReply;
  /** `DELETE /api/session/<id>?code=C`: the client's close. */
  end(id: string, query: string): SessionReply;
  /** The largest POST body taken: a burst of frames, each at most the native frame limit. */
  readonly maxPostBytes: number;
}

/**
 * @param native the native protocol, for the SDK's fallback sessions (§10.5): they are native
 *   sessions, counted as such; streams of `GET /api/subscribe` count as protocol `sse`.
 */
export function createSseProtocol(ctx: BrokerContext, native: ProtocolHandler): SseProtocol {
  const sessions = new Set<SseSession>();
  ctx.counters.open.sse = 0;
  const start = streamStart(RETRY_MS);
  const maxFrameBytes = ctx.config.maxPayloadBytes + ctx.config.maxTopicBytes + 1024; // as on /ws (transport/uws.ts)
  let heartbeat: NodeJS.Timeout | undefined;
  const beat = (): void => {
    for (const session of sessions) session.heartbeat();
    emulation.heartbeat();
  };
  const idle = (): void => {
    if (sessions.size > 0 || emulation.size > 0) return;
    clearInterval(heartbeat);
    heartbeat = undefined;
  };
  const emulation = createEmulation(native, maxFrameBytes, idle);
  const ended = (session: SseSession): void => {
    if (!sessions.delete(session)) return;
    ctx.counters.open.sse!--;
    idle();
  };
  return {
    name: 'sse',
    get sessionCount() {
      return sessions.size;
    },
    parse(query, lastEventId) {
      const params = new URLSearchParams(query);
      for (const key of params.keys()) {
        if (!PARAMETERS.has(key)) return refusal(400, ErrorCode.badFrame, `unknown query parameter ${JSON.stringify(key.slice(0, 32))}: use filter=F (repeatable) and optionally token=T`);
      }
      const filters = params.getAll('filter');
      if (filters.length === 0) return refusal(400, ErrorCode.invalidTopic, 'at least one filter required: GET /api/subscribe?filter=F[&filter=G...]');
      let resume;
      if (lastEventId !== '') {
        resume = parsePosition(lastEventId);
        if (resume === undefined) return refusal(400, ErrorCode.badFrame, 'Last-Event-ID must be <epoch>:<offset> as sent in an event id: line');
      }
      return { filters: [...new Set(filters)], resume, token: params.get('token') ?? undefined };
    },
    check(request, principal) {
      const checked = checkSubscribe(ctx, request.filters, principal?.permissions, { count: 0, has: () => false });
      if (checked instanceof Set) return undefined;
      return refusal(checked.code === ErrorCode.notAuthorized ? 403 : 400, checked.code, checked.message);
    },
    stream(conn, request, principal) {
      const session = new SseSession(ctx, conn, start, request, ended, principal);
      sessions.add(session);
      ctx.counters.open.sse!++;
      ctx.counters.connectionsTotal++;
      heartbeat ??= setInterval(beat, HEARTBEAT_MS).unref();
      session.start();
      return session;
    },
    closeAll() {
      for (const session of [...sessions]) session.close(CloseCode.goingAway, 'server shutting down');
    },
    parseSession(query) {
      const params = new URLSearchParams(query);
      for (const key of params.keys()) {
        if (key !== 'token') return refusal(400, ErrorCode.badFrame, `unknown query parameter ${JSON.stringify(key.slice(0, 32))}: only token=T`);
      }
      return { token: params.get('token') ?? undefined };
    },
    session(conn, principal) {
      heartbeat ??= setInterval(beat, HEARTBEAT_MS).unref();
      return emulation.open(conn, principal);
    },
    post: (id, body) => emulation.post(id, body),
    end(id, query) {
      const code = Number(new URLSearchParams(query).get('code') ?? '1000');
      if (!Number.isInteger(code) || code < 1000 || code > 4999) return { status: 400, code: ErrorCode.badFrame, message: 'code must be a WebSocket close code (1000-4999)' };
      return emulation.end(id, code);
    },
    maxPostBytes: 16 * maxFrameBytes,
  };
}

function refusal(status: number, code: number, message: string): StreamRefusal {
  return { status, code, message };
}
