/**
 * HTTP streaming (PROTOCOL.md §10): `GET /api/subscribe?filter=F[&filter=G…]` answered with
 * Server-Sent Events, and the SDK's fallback session over HTTP (§10.5: `GET /api/session`, `POST`
 * and `DELETE /api/session/<id>`). The rules live here, as a ProtocolHandler's streams and
 * requests (session/handler.ts); transport/uws.ts adapts the request and the response (a
 * `Connection` over an HttpResponse) and calls, in order: `accept` (400 on a bad request),
 * admission and authentication (session/admission.ts), `check` (403/400 against the principal),
 * `open` (200, then events).
 */
import { CloseCode, ErrorCode } from 'topicast/protocol';
import type { BrokerContext } from '../../context.js';
import type { Connection } from '../../session/connection.js';
import type { HttpAnswer, ProtocolHandler, StreamEndpoint } from '../../session/handler.js';
import { checkSubscribe } from '../../session/subscribe.js';
import { createEmulation } from './emulation.js';
import { parsePosition, streamStart } from './event.js';
import { SseSession } from './session.js';

export type { StreamRequest } from './session.js';

/** Heartbeat comments this often: below the 30-60 s idle timeouts of common proxies and load balancers (nginx's proxy_read_timeout is 60 s). */
const HEARTBEAT_MS = 15_000;
/** Reconnection delay told to EventSource (`retry:`): quick enough that a broker restart costs a second, not the browser's default three. */
const RETRY_MS = 1_000;
/** Query parameters a stream understands; anything else is a typo worth a 400 (`?topic=` for `?filter=`). */
const PARAMETERS = new Set(['filter', 'token']);

export interface SseProtocol extends ProtocolHandler {
  readonly name: 'sse';
  readonly sessionCount: number;
  readonly streams: readonly StreamEndpoint[];
  /** Ends every stream (graceful shutdown): each gets a `close` event; EventSource reconnects by itself. */
  closeAll(): void;
}

/** Headers of an event stream: never cached or buffered by a proxy (nginx honours X-Accel-Buffering). */
const STREAM_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-store',
  'X-Accel-Buffering': 'no',
  'X-Content-Type-Options': 'nosniff',
};

/**
 * @param native the native protocol, for the SDK's fallback sessions (§10.5): they are native
 *   sessions, counted as such; streams of `GET /api/subscribe` count as protocol `sse`.
 * @param maxFrameBytes the largest native frame (as on `/ws`), bounding a POST's frames.
 */
export function createSseProtocol(ctx: BrokerContext, native: ProtocolHandler, maxFrameBytes: number): SseProtocol {
  const sessions = new Set<SseSession>();
  ctx.counters.open.sse = 0;
  const start = streamStart(RETRY_MS);
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
  /** `GET /api/session` (§10.5): a native session over a stream; only `token` may be given. */
  const openSession: ProtocolHandler['open'] = (conn, principal) => {
    heartbeat ??= setInterval(beat, HEARTBEAT_MS).unref();
    return emulation.open(conn, principal);
  };
  const subscribe: StreamEndpoint = {
    path: '/api/subscribe',
    headers: STREAM_HEADERS,
    accept(query, header) {
      const params = new URLSearchParams(query);
      for (const key of params.keys()) {
        if (!PARAMETERS.has(key)) return refusal(400, ErrorCode.badFrame, `unknown query parameter ${JSON.stringify(key.slice(0, 32))}: use filter=F (repeatable) and optionally token=T`);
      }
      const filters = [...new Set(params.getAll('filter'))];
      if (filters.length === 0) return refusal(400, ErrorCode.invalidTopic, 'at least one filter required: GET /api/subscribe?filter=F[&filter=G...]');
      const lastEventId = header('last-event-id');
      let resume;
      if (lastEventId !== '') {
        resume = parsePosition(lastEventId);
        if (resume === undefined) return refusal(400, ErrorCode.badFrame, 'Last-Event-ID must be <epoch>:<offset> as sent in an event id: line');
      }
      const request = { filters, resume };
      return {
        token: params.get('token') ?? undefined,
        // The subscribe checks of a native SUBSCRIBE (filters, permissions, limits) for this principal.
        check(principal) {
          const checked = checkSubscribe(ctx, filters, principal?.permissions, { count: 0, has: () => false });
          if (checked instanceof Set) return undefined;
          return refusal(checked.code === ErrorCode.notAuthorized ? 403 : 400, checked.code, checked.message);
        },
        open(conn, principal) {
          const session = new SseSession(ctx, conn, start, request, ended, principal);
          sessions.add(session);
          ctx.counters.open.sse!++;
          ctx.counters.connectionsTotal++;
          heartbeat ??= setInterval(beat, HEARTBEAT_MS).unref();
          session.start();
          return session;
        },
      };
    },
  };
  const session: StreamEndpoint = {
    path: '/api/session',
    headers: STREAM_HEADERS,
    accept(query) {
      const params = new URLSearchParams(query);
      for (const key of params.keys()) {
        if (key !== 'token') return refusal(400, ErrorCode.badFrame, `unknown query parameter ${JSON.stringify(key.slice(0, 32))}: only token=T`);
      }
      // Carries native frames: no filters, no resume.
      return { token: params.get('token') ?? undefined, check: () => undefined, open: openSession };
    },
  };
  return {
    name: 'sse',
    get sessionCount() {
      return sessions.size;
    },
    open: openSession,
    streams: [subscribe, session],
    requests: [{
      // `POST /api/session/<id>` (the client's frames) and `DELETE /api/session/<id>?code=C` (its close), §10.5.
      prefix: '/api/session/',
      methods: ['POST', 'DELETE'],
      maxBodyBytes: 16 * maxFrameBytes, // a burst of frames, each at most the native frame limit
      handle(method, id, query, body): HttpAnswer {
        if (method === 'POST') return emulation.post(id, body);
        const code = Number(new URLSearchParams(query).get('code') ?? '1000');
        if (!Number.isInteger(code) || code < 1000 || code > 4999) return { status: 400, code: ErrorCode.badFrame, message: 'code must be a WebSocket close code (1000-4999)' };
        return emulation.end(id, code);
      },
    }],
    closeAll() {
      for (const session of [...sessions]) session.close(CloseCode.goingAway, 'server shutting down');
    },
  };
}

function refusal(status: number, code: number, message: string): HttpAnswer {
  return { status, code, message };
}
