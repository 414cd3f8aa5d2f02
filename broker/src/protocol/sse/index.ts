/**
 * HTTP streaming (PROTOCOL.md §9): `GET /api/subscribe?filter=F[&filter=G…]` answered with
 * Server-Sent Events. The rules live here; transport/uws.ts adapts the request and the response
 * (a `Connection` over an HttpResponse) and calls, in order: `parse` (400 on a bad request),
 * authentication, `check` (403/400 against the principal), `stream` (200, then events).
 */
import { CloseCode, ErrorCode } from 'topicast/protocol';
import type { Principal } from '../../auth/index.js';
import type { BrokerContext } from '../../context.js';
import type { Connection } from '../../session/connection.js';
import type { ConnectionHandler } from '../../session/handler.js';
import { checkSubscribe } from '../../session/subscribe.js';
import { parsePosition, streamStart } from './event.js';
import { SseSession, type StreamRequest } from './session.js';

export type { StreamRequest } from './session.js';

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
}

export function createSseProtocol(ctx: BrokerContext): SseProtocol {
  const sessions = new Set<SseSession>();
  ctx.counters.open.sse = 0;
  const start = streamStart(RETRY_MS);
  let heartbeat: NodeJS.Timeout | undefined;
  const beat = (): void => {
    for (const session of sessions) session.heartbeat();
  };
  const ended = (session: SseSession): void => {
    if (!sessions.delete(session)) return;
    ctx.counters.open.sse!--;
    if (sessions.size === 0) {
      clearInterval(heartbeat);
      heartbeat = undefined;
    }
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
  };
}

function refusal(status: number, code: number, message: string): StreamRefusal {
  return { status, code, message };
}
