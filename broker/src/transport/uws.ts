/**
 * The one file that imports uWebSockets.js: one App, one port, serving each
 * protocol's WebSocket endpoint and HTTP streams and requests (as the protocols
 * declare them, session/handler.ts), the HTTP API and static files. Who may
 * connect and who a client is are decided in session/admission.ts; this file
 * adapts uWS requests, responses and sockets to it.
 *
 * uWS rules honoured here: a message's ArrayBuffer is valid only during the
 * callback (handlers copy what they keep); a WebSocket is unusable after its
 * close callback (UwsConnection guards every call); HTTP responses must attach
 * onAborted before any asynchronous work and cork their writes.
 */
import uWS from 'uWebSockets.js';
import { CloseCode, ErrorCode } from 'topicast/protocol';
import type { AuthOutcome, Principal } from '../session/principal.js';
import type { BrokerContext } from '../context.js';
import type { Refused } from '../core/errors.js';
import { allowedMethods, answerReply, errorReply, healthz, metrics, publish, refusalReply, STATUS_TEXT, unauthenticated, type HttpReply } from '../http/api.js';
import { HISTORY_PREFIX, historyExport, HistoryRates, type HistoryStream } from '../http/history.js';
import { loadStatic } from '../http/static.js';
import { etagMatches, isSdkBundlePath, sdkBundleLoader, type SdkBundlePath } from '../http/sdk-bundles.js';
import { admitConnection, admitRequest, authenticate, type ConnectionGate } from '../session/admission.js';
import { AuthenticatingHandler } from '../session/authenticating.js';
import { SendResult, type Connection } from '../session/connection.js';
import type { ConnectionHandler, ProtocolHandler, RequestEndpoint, StreamEndpoint, StreamStart, WebSocketEndpoint } from '../session/handler.js';

/**
 * uWS copies these onto the WebSocket object itself, each a slot of its property array: one
 * slot (two with a pending token check) instead of four keeps an idle connection smaller
 * (bench "memory"); everything else lives on the UwsConnection.
 */
interface SocketData {
  conn: UwsConnection;
  /** `upgrade` endpoints with authentication on: the token check, under way (absent for in-band ones, e.g. /mqtt's CONNECT). */
  auth?: Promise<AuthOutcome>;
}

type Ws = uWS.WebSocket<SocketData>;

class UwsConnection implements Connection {
  /** Set by `open`; no session holds this connection before. */
  ws!: Ws;
  handler: ConnectionHandler | undefined = undefined;
  closed = false;
  /** Set when the broker initiated the close: then the close is never "clean". */
  closedByServer = false;

  constructor(readonly remoteAddress: string) {}

  send(bytes: Uint8Array): SendResult {
    if (this.closed) return SendResult.dropped;
    return this.ws.send(bytes, true, false) as SendResult;
  }

  bufferedBytes(): number {
    return this.closed ? 0 : this.ws.getBufferedAmount();
  }

  cork(fn: () => void): void {
    if (this.closed) return;
    this.ws.cork(fn);
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closedByServer = true;
    this.ws.end(code, reason);
  }
}

export interface HttpServerOptions {
  host: string;
  /** Certificate and key files: the port serves https:// and wss:// (uWS SSLApp). */
  tls?: { certFile: string; keyFile: string } | undefined;
  port: number;
  staticRoot: string;
  /** The bundled dashboard, also served under /topicast/ (so it stays reachable when --static replaces /). */
  dashboardRoot: string;
  /** Directory holding the SDK's browser bundles, served at /topicast.js and /topicast-core.js. */
  sdkRoot: string;
  /** Every protocol served on this port: its WebSocket endpoint, streams and requests (session/handler.ts). */
  protocols: readonly ProtocolHandler[];
  /** Readiness for /healthz (false while shutting down). */
  ready(): boolean;
  /**
   * The node's gate (session/admission.ts): while it drains, new connections get 503 and /healthz says
   * "draining"; its socket admission (transport/admission.ts) sees every accepted socket.
   */
  gate: ConnectionGate;
}

export interface HttpServer {
  readonly port: number;
  /** Stops accepting new connections; open ones stay. */
  stopListening(): void;
  /** Re-reads the TLS files into a new app that takes over the port; open connections stay on the old one. */
  reloadTls(): void;
}

const textDecoder = new TextDecoder();

/** The last remote address decoded: connections through one proxy, load balancer or NAT share its string. */
let lastRemote = '';

function remoteOf(res: uWS.HttpResponse): string {
  const remote = textDecoder.decode(res.getRemoteAddressAsText());
  if (remote === lastRemote) return lastRemote; // one string, not one per connection (32+ bytes each)
  return (lastRemote = remote);
}

function offersSubprotocol(header: string, wanted: string): boolean {
  return header.split(',').some((p) => p.trim() === wanted);
}

const TOKEN_ENTRY = 'topicast.token.';

/**
 * The token of an upgrade (PROTOCOL.md §1): a `topicast.token.<base64url>` subprotocol entry
 * (what browsers can send), else an `Authorization: Bearer` header. Undefined when none.
 */
function upgradeToken(offered: string, authorization: string): string | undefined {
  for (const p of offered.split(',')) {
    const entry = p.trim();
    if (entry.startsWith(TOKEN_ENTRY)) return Buffer.from(entry.slice(TOKEN_ENTRY.length), 'base64url').toString('utf8');
  }
  return bearerToken(authorization);
}

/**
 * Why a request's framing is ambiguous (RFC 9112 §6.1, §6.3), or undefined: Content-Length given
 * twice with differing values, a Transfer-Encoding other than exactly `chunked` (unknown codings,
 * `chunked` applied twice or not last), or both headers. A proxy in front may read such a request
 * differently from uWebSockets.js, which uses the first Content-Length (request smuggling).
 */
function framingProblem(req: uWS.HttpRequest): string | undefined {
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  let problem: string | undefined;
  req.forEach((key, value) => {
    if (key === 'content-length') {
      if (contentLength !== undefined && contentLength !== value) problem = 'differing Content-Length headers';
      contentLength = value;
    } else if (key === 'transfer-encoding') {
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding},${value}`;
    }
  });
  if (problem !== undefined) return problem;
  if (transferEncoding === undefined) return undefined;
  if (contentLength !== undefined) return 'Content-Length with Transfer-Encoding';
  const codings = transferEncoding.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '');
  if (codings.length !== 1 || codings[0] !== 'chunked') return `Transfer-Encoding "${transferEncoding.slice(0, 64)}" (only chunked is accepted)`;
  return undefined;
}

function bearerToken(authorization: string): string | undefined {
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
  return m ? m[1] : undefined;
}

export function listenHttp(ctx: BrokerContext, options: HttpServerOptions): Promise<HttpServer> {
  const { log } = ctx;
  const { gate } = options;
  const admission = gate.sockets;

  /**
   * Ambiguous framing (framingProblem): the socket is closed at once, without an answer. A 400
   * cannot be sent first: once a response is written, uWebSockets.js goes on parsing what
   * followed in the same read — the smuggled request — and answers it (docs/SECURITY.md).
   */
  const refuseFraming = (res: uWS.HttpResponse, req: uWS.HttpRequest): boolean => {
    const problem = framingProblem(req);
    if (problem === undefined) return false;
    ctx.counters.framingRefused++;
    log.debug({ remote: remoteOf(res), problem }, 'request refused: ambiguous framing');
    res.close();
    return true;
  };

  // Room for the largest payload plus topic and framing. Larger messages get a close 1009 with a close
  // frame from us (an endpoint's maxMessageBytes). uWS reads a message whole before we see it, and past
  // its own limit it drops the connection without a close frame (the client sees 1006, retryable): its
  // limit is set at four times ours, so a client a little or a lot over the limit is told why, while one
  // connection still cannot make the broker buffer more than about maxBufferedBytes of incoming message
  // (docs/SECURITY.md). An endpoint whose protocol bounds its own packets (MQTT: several packets in one
  // message, its maximum packet size answered with a reason code) still has this backstop.
  const uwsMessageLimit = 4 * (ctx.publishLimits.maxPayloadBytes + ctx.topicLimits.maxTopicBytes + 1024);
  const { maxBufferedBytes, snapshotWindowBytes } = ctx.outboxLimits;
  const behavior = (protocol: ProtocolHandler, endpoint: WebSocketEndpoint): uWS.WebSocketBehavior<SocketData> => ({
    compression: uWS.DISABLED,
    maxPayloadLength: uwsMessageLimit,
    // Our outbox applies the slow-consumer policy well below this; uWS's own limit is only a backstop.
    maxBackpressure: Math.max(64 * 1024 * 1024, maxBufferedBytes * 4 + snapshotWindowBytes),
    closeOnBackpressureLimit: 0,
    idleTimeout: ctx.sessionLimits.idleTimeoutSec,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const { subprotocol } = endpoint;
      if (refuseFraming(res, req)) return;
      const offered = req.getHeader('sec-websocket-protocol');
      const key = req.getHeader('sec-websocket-key');
      const version = req.getHeader('sec-websocket-version');
      const extensions = req.getHeader('sec-websocket-extensions');
      const origin = req.getHeader('origin');
      const host = req.getHeader('host');
      const authorization = req.getHeader('authorization');
      const remote = remoteOf(res);
      admission?.settleOldest(remote); // a request arrived: no longer a half-open socket of this address
      if (!offersSubprotocol(offered, subprotocol)) {
        // Entries may carry a token (PROTOCOL.md §1): log only their names.
        const names = offered.split(',').map((p) => (p.trim().startsWith('topicast.token.') ? 'topicast.token.<redacted>' : p.trim()));
        log.debug({ remote, offered: names, path: endpoint.path }, 'upgrade refused: subprotocol');
        return reply(res, errorReply(400, ErrorCode.badFrame, `WebSocket subprotocol "${subprotocol}" required`));
      }
      const refused = admitConnection(ctx, gate, remote, origin, host);
      if (refused) return replyRefused(res, refused);
      void version;
      // Leaves uWS's HTTP context: no filter close follows for it; the WebSocket close releases its descriptor.
      admission?.established(undefined);
      if (endpoint.authentication === 'in-band' || !ctx.auth.configured) {
        res.upgrade<SocketData>({ conn: new UwsConnection(remote) }, key, subprotocol, extensions, context);
        return;
      }
      // The token is checked while the socket opens (session/authenticating.ts says why the upgrade does not
      // wait); nothing of the protocol is sent before it is accepted. A refused token gets a close 4001 with
      // the reason: browsers hide HTTP statuses of failed upgrades, a close code they can read.
      const auth = authenticate(ctx, remote, upgradeToken(offered, authorization));
      res.upgrade<SocketData>({ conn: new UwsConnection(remote), auth }, key, subprotocol, extensions, context);
    },
    open: (ws) => {
      const data = ws.getUserData();
      const conn = data.conn;
      conn.ws = ws;
      const remote = conn.remoteAddress;
      ctx.auth.guard.opened(remote);
      const auth = data.auth;
      if (auth === undefined) {
        conn.handler = protocol.open(conn);
        return;
      }
      data.auth = undefined; // settled or not, the AuthenticatingHandler holds it from here
      conn.handler = new AuthenticatingHandler(auth, {
        open: (principal) => protocol.open(conn, principal),
        refuse: (reason) => {
          log.info({ remote, reason }, 'authentication failed');
          conn.close(CloseCode.unauthenticated, reason);
        },
        close: (code, reason, err) => {
          if (err !== undefined) log.error({ err, remote }, 'connection handler failed');
          conn.close(code, reason);
        },
      }, maxBufferedBytes);
    },
    message: (ws, message) => {
      const conn = ws.getUserData().conn;
      if (message.byteLength > endpoint.maxMessageBytes) {
        ctx.counters.malformed++;
        conn.close(CloseCode.messageTooBig, `message exceeds ${endpoint.maxMessageBytes} bytes`);
        return;
      }
      try {
        conn.handler?.onMessage(new Uint8Array(message));
      } catch (err) {
        // Handlers do not throw by design; if one does, log it with context and drop the connection, never the process.
        log.error({ err, remote: conn.remoteAddress }, 'connection handler failed');
        ctx.counters.malformed++;
        conn.close(1011, 'internal error');
      }
    },
    drain: (ws) => {
      ws.getUserData().conn.handler?.onDrain();
    },
    close: (ws, code, message) => {
      const conn = ws.getUserData().conn;
      conn.closed = true;
      admission?.closed(undefined, false);
      ctx.auth.guard.closed(conn.remoteAddress);
      const clean = !conn.closedByServer && (code === 1000 || code === 1001);
      conn.handler?.onClose(code, textDecoder.decode(message), clean);
    },
  });

  const historyRates = new HistoryRates(ctx);
  // Every protocol's WebSocket paths, streams and request prefixes (session/handler.ts): looked up per request.
  const websockets = new Map<string, ProtocolHandler>();
  const streams = new Map<string, StreamEndpoint>();
  const requests: RequestEndpoint[] = [];
  for (const p of options.protocols) {
    if (p.websocket) websockets.set(p.websocket.path, p);
    for (const e of p.streams ?? []) streams.set(e.path, e);
    requests.push(...(p.requests ?? []));
  }

  /**
   * Authenticates a request (authentication on) after the per-IP failure backoff of docs/SECURITY.md
   * (refused with 429 before the credentials are checked again), then `go` on with the principal.
   */
  const authenticated = (res: uWS.HttpResponse, state: Aborted, remote: string, token: string | undefined, go: (principal: Principal) => void): void => {
    const backoff = admitRequest(ctx.auth.guard, remote);
    if (backoff) return replyRefused(res, backoff, { Connection: 'close' }, state);
    void authenticate(ctx, remote, token).then((auth) => {
      if (state.aborted) return;
      if (auth.ok) go(auth.principal);
      else reply(res, unauthenticated(auth.reason), { 'WWW-Authenticate': 'Bearer' }, false, state);
    });
  };

  const onRequest = (res: uWS.HttpResponse, req: uWS.HttpRequest): void => {
    // Attached before anything else: uWS aborts the process if a handler returns without
    // responding or an abort handler (e.g. after endWithoutBody for HEAD), and async replies need it.
    const state: Aborted = { aborted: false, onAbort: undefined };
    res.onAborted(() => {
      state.aborted = true;
      state.onAbort?.();
    });
    if (refuseFraming(res, req)) return;
    if (admission) admission.settleOldest(remoteOf(res));
    const method = req.getCaseSensitiveMethod().toUpperCase();
    const path = req.getUrl();
    const query = req.getQuery() ?? '';
    if (websockets.has(path)) {
      if (method !== 'GET') return reply(res, errorReply(405, 0, `method ${method} not allowed`), { Allow: 'GET' }, false, state);
      return reply(res, errorReply(426, 0, 'WebSocket upgrade required'), { Upgrade: 'websocket' }, false, state);
    }
    const stream = streams.get(path);
    if (stream) {
      if (method !== 'GET') return reply(res, errorReply(405, 0, `method ${method} not allowed`), { Allow: 'GET' }, false, state);
      return streamRequest(res, req, stream, query, state);
    }
    const endpoint = requests.find((e) => path.startsWith(e.prefix));
    if (endpoint) {
      if (!endpoint.methods.includes(method)) return reply(res, errorReply(405, 0, `method ${method} not allowed`), { Allow: endpoint.methods.join(', ') }, false, state);
      return protocolRequest(res, req, endpoint, method, path.slice(endpoint.prefix.length), query, state);
    }
    const allowed = allowedMethods(path);
    if (allowed.length === 0) return reply(res, errorReply(404, 0, 'not found'), {}, false, state);
    if (!allowed.includes(method)) return reply(res, errorReply(405, 0, `method ${method} not allowed`), { Allow: allowed.join(', ') }, false, state);
    if (path === '/healthz') return reply(res, healthz(ctx, options.ready(), gate.draining, query), {}, method === 'HEAD', state);
    if (path === '/metrics') return reply(res, metrics(ctx), {}, method === 'HEAD', state);
    if (path.startsWith(HISTORY_PREFIX)) {
      const remote = remoteOf(res);
      if (!ctx.auth.configured) return sendHistory(res, historyExport(ctx, historyRates, path, query, remote), state);
      return authenticated(res, state, remote, bearerToken(req.getHeader('authorization')), (principal) => sendHistory(res, historyExport(ctx, historyRates, path, query, remote, principal), state));
    }
    if (method === 'POST') {
      const contentType = req.getHeader('content-type'); // read now: req is invalid after this handler returns
      const maxBytes = ctx.publishLimits.maxPayloadBytes;
      if (!ctx.auth.configured) return readBody(res, state, maxBytes, (body) => replyWhenReady(res, publish(ctx, path, query, body, undefined, contentType), state));
      const remote = remoteOf(res);
      const backoff = admitRequest(ctx.auth.guard, remote);
      if (backoff) return replyRefused(res, backoff, { Connection: 'close' }, state);
      // Authentication runs while the body arrives; the publish waits for both.
      const auth = authenticate(ctx, remote, bearerToken(req.getHeader('authorization')));
      return readBody(res, state, maxBytes, (body) => {
        void auth.then((outcome) => {
          if (outcome.ok) replyWhenReady(res, publish(ctx, path, query, body, outcome.principal, contentType), state);
          else reply(res, unauthenticated(outcome.reason), { 'WWW-Authenticate': 'Bearer' }, false, state);
        });
      });
    }
    const head = method === 'HEAD';
    if (isSdkBundlePath(path)) return serveSdkBundle(res, state, path, req.getHeader('if-none-match'), head);
    if (path === DASHBOARD_PREFIX) return reply(res, { status: 301, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: '' }, { Location: `${DASHBOARD_PREFIX}/${query ? `?${query}` : ''}` }, head, state);
    if (path.startsWith(`${DASHBOARD_PREFIX}/`)) return serveStatic(res, state, options.dashboardRoot, path.slice(DASHBOARD_PREFIX.length), head);
    return serveStatic(res, state, options.staticRoot, path, head);
  };

  const loadSdkBundle = sdkBundleLoader(options.sdkRoot);
  const serveSdkBundle = (res: uWS.HttpResponse, state: Aborted, path: SdkBundlePath, ifNoneMatch: string, head: boolean): void => {
    loadSdkBundle(path).then(
      (bundle) => {
        const headers = { ETag: bundle.etag, 'Cache-Control': 'no-cache', 'Content-Type': 'text/javascript; charset=utf-8', 'X-Content-Type-Options': 'nosniff', 'Access-Control-Allow-Origin': '*' };
        if (etagMatches(ifNoneMatch, bundle.etag)) return reply(res, { status: 304, headers, body: '' }, {}, true, state);
        reply(res, { status: 200, headers, body: bundle.body }, {}, head, state);
      },
      () => reply(res, errorReply(404, 0, 'not found (this build has no SDK browser bundle)'), {}, head, state),
    );
  };

  /**
   * A protocol's stream (e.g. `GET /api/subscribe`, PROTOCOL.md §10): the request read by the
   * protocol (400), the same admission as a WebSocket upgrade (session/admission.ts), the token from a
   * bearer header, a `topicast_token` cookie or the query (EventSource can send no header), the
   * protocol's checks against the principal, then the stream.
   */
  const streamRequest = (res: uWS.HttpResponse, req: uWS.HttpRequest, endpoint: StreamEndpoint, query: string, state: Aborted): void => {
    const start = endpoint.accept(query, (name) => req.getHeader(name));
    if (!('open' in start)) return reply(res, answerReply(start), {}, false, state);
    const remote = remoteOf(res);
    const origin = req.getHeader('origin');
    const refused = admitConnection(ctx, gate, remote, origin, req.getHeader('host'));
    if (refused) return replyRefused(res, refused, {}, state);
    const open = (principal: Principal | undefined): void => {
      if (state.aborted) return;
      const problem = start.check(principal);
      if (problem) return reply(res, answerReply(problem), {}, false, state);
      openStream(res, state, remote, principal, origin, endpoint, start);
    };
    if (!ctx.auth.configured) return open(undefined);
    const token = bearerToken(req.getHeader('authorization')) ?? cookieToken(req.getHeader('cookie')) ?? start.token;
    void authenticate(ctx, remote, token).then((auth) => {
      if (auth.ok) open(auth.principal);
      else reply(res, unauthenticated(auth.reason), { 'WWW-Authenticate': 'Bearer' }, false, state);
    });
  };

  const openStream = (res: uWS.HttpResponse, state: Aborted, remote: string, principal: Principal | undefined, origin: string, endpoint: StreamEndpoint, start: StreamStart): void => {
    // A stream is established like an upgrade, but its socket stays in the HTTP context: pending again when it ends.
    admission?.established(undefined);
    const conn = new UwsStream(res, remote, () => {
      ctx.auth.guard.closed(remote);
      admission?.unestablished();
    });
    ctx.auth.guard.opened(remote);
    res.cork(() => {
      res.writeStatus('200 OK');
      for (const [k, v] of Object.entries(endpoint.headers)) res.writeHeader(k, v);
      // An allowed page elsewhere (a CGI server's) may read the stream; never with the visitor's cookies.
      if (origin !== '') res.writeHeader('Access-Control-Allow-Origin', origin).writeHeader('Vary', 'Origin');
    });
    // From here the response belongs to the stream: its abort is the session's close.
    state.onAbort = () => conn.aborted();
    res.onWritable(() => conn.writable());
    conn.handler = start.open(conn, principal);
  };

  /** A protocol's request (e.g. `POST` / `DELETE /api/session/<id>`, PROTOCOL.md §10.5): its body read within the endpoint's bound. */
  const protocolRequest = (res: uWS.HttpResponse, req: uWS.HttpRequest, endpoint: RequestEndpoint, method: string, rest: string, query: string, state: Aborted): void => {
    const origin = req.getHeader('origin');
    const cors: Record<string, string> = origin !== '' && ctx.auth.originAllowed(origin, req.getHeader('host')) ? { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' } : {};
    if (method === 'DELETE' || method === 'GET') return reply(res, answerReply(endpoint.handle(method, rest, query, EMPTY)), cors, false, state);
    readBody(res, state, endpoint.maxBodyBytes, (body) => reply(res, answerReply(endpoint.handle(method, rest, query, body)), cors, false, state));
  };

  /**
   * Every socket uWS accepts, before any byte of it is parsed (admission.ts): refused ones are
   * closed at once. Count 1 is an accept, -1 the close of a socket still in the HTTP context
   * (an upgraded one leaves it and is released by the WebSocket close). The address is only
   * readable at the accept, so the per-IP entry is released by an abort handler set there,
   * which uWS runs if the socket closes before its first request (a request replaces it).
   */
  let refusing = false;
  const admit = (res: uWS.HttpResponse, count: Number): void => { // the bundled typings say Number
    if (!admission) return;
    if (Number(count) !== 1) {
      if (!refusing) admission.closed(undefined, true);
      return;
    }
    const admitted = admission.accept(remoteOf(res));
    if ('refusal' in admitted) {
      refusing = true;
      try {
        res.close();
      } finally {
        refusing = false;
      }
      return;
    }
    const entry = admitted.entry;
    if (entry) res.onAborted(() => admission.release(entry));
  };

  /** Registers every route on an app; with TLS a new app is built for each certificate reload. */
  const routes = (app: uWS.TemplatedApp): uWS.TemplatedApp => {
    app.filter(admit);
    for (const p of options.protocols) if (p.websocket) app.ws<SocketData>(p.websocket.path, behavior(p, p.websocket));
    return app.any('/*', onRequest);
  };
  const tls = options.tls;
  const newApp = (): uWS.TemplatedApp =>
    routes(tls ? uWS.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile }) : uWS.App());

  // Exclusive: by default uSockets sets SO_REUSEPORT, and a second broker on the same port would
  // silently take half the connections instead of failing to start. (The 4-argument form exists at
  // runtime; the bundled typings only declare it without a host; uWS calls back synchronously.)
  const exclusive = (uWS as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number }).LIBUS_LISTEN_EXCLUSIVE_PORT;
  const SHARED = 0; // uSockets' default: SO_REUSEPORT
  const listenOn = (app: uWS.TemplatedApp, port: number, mode: number): uWS.us_listen_socket | false => {
    let socket: uWS.us_listen_socket | false = false;
    (app.listen.bind(app) as unknown as (host: string, port: number, options: number, cb: (s: uWS.us_listen_socket | false) => void) => void)(
      options.host, port, mode, (s) => (socket = s),
    );
    return socket;
  };
  // Apps replaced by a reload keep serving the connections they accepted: kept referenced until shutdown.
  const apps = [newApp()];
  return new Promise((resolvePromise, reject) => {
    let listenSocket = listenOn(apps[0]!, options.port, exclusive);
    if (!listenSocket) {
      reject(new Error(`cannot listen on ${options.host}:${options.port} (in use by another process, or not permitted)`));
      return;
    }
    const port = uWS.us_socket_local_port(listenSocket);
    if (tls) {
      // With TLS the exclusive listen above only proves the port is ours; the port is then shared (SO_REUSEPORT)
      // so that a reload opens the new certificate's socket before closing the old one: nothing is refused.
      uWS.us_listen_socket_close(listenSocket);
      listenSocket = listenOn(apps[0]!, port, SHARED);
      if (!listenSocket) {
        reject(new Error(`cannot listen on ${options.host}:${port} (in use by another process, or not permitted)`));
        return;
      }
    }
    resolvePromise({
      port,
      stopListening() {
        if (listenSocket) uWS.us_listen_socket_close(listenSocket);
        listenSocket = false;
      },
      reloadTls() {
        if (!tls || !listenSocket) return;
        // A new SSLApp reads the files and listens beside the old one; then the old one stops accepting
        // and keeps serving the connections it has.
        const next = newApp();
        const socket = listenOn(next, port, SHARED);
        if (!socket) throw new Error(`cannot listen on ${options.host}:${port} with the reloaded certificate`);
        uWS.us_listen_socket_close(listenSocket);
        listenSocket = socket;
        apps.push(next);
      },
    });
  });
}

interface Aborted {
  aborted: boolean;
  /** Set when the response became a stream (`UwsStream`). */
  onAbort: (() => void) | undefined;
}

function cookieToken(cookie: string): string | undefined {
  for (const part of cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === 'topicast_token') return decodeURIComponent(part.slice(eq + 1).trim()) || undefined;
  }
  return undefined;
}

/**
 * A `Connection` over a streaming HttpResponse (HTTP streaming, PROTOCOL.md §10). uWS.js does not
 * expose an HTTP response's buffered amount: `backlog` counts the bytes handed to uWS since the last
 * write it took whole (an over-estimate, so the outbox's policy errs toward the reader being slow).
 * `onWritable` fires before uWS drains its buffer: a heartbeat comment written on the next turn
 * probes whether it drained, and only then is the session told to write more.
 */
class UwsStream implements Connection {
  handler: ConnectionHandler | undefined = undefined;
  private closed = false;
  private backlog = 0;
  private probing = false;

  constructor(private readonly res: uWS.HttpResponse, readonly remoteAddress: string, private readonly released: () => void) {}

  send(bytes: Uint8Array): SendResult {
    if (this.closed) return SendResult.dropped;
    if (batching === this) {
      batch.push(bytes);
      batchBytes += bytes.length;
      return SendResult.sent;
    }
    return this.write(bytes);
  }

  private write(bytes: Uint8Array): SendResult {
    if (this.res.write(bytes)) {
      this.backlog = 0;
      return SendResult.sent;
    }
    this.backlog += bytes.length;
    return SendResult.backpressure;
  }

  bufferedBytes(): number {
    return this.backlog + (batching === this ? batchBytes : 0);
  }

  /**
   * Sends made inside `fn` become one HTTP chunk: each `res.write` costs a chunk header and a call
   * into uWS, which made a delivery over SSE cost several times one over WebSocket (bench fan-out).
   */
  cork(fn: () => void): void {
    if (this.closed) return;
    if (batching !== undefined) return fn(); // already inside a cork: its batch takes these too
    batching = this;
    try {
      this.res.cork(() => {
        fn();
        const n = batch.length;
        if (n === 0 || this.closed) return;
        this.write(n === 1 ? batch[0]! : Buffer.concat(batch, batchBytes));
      });
    } finally {
      batching = undefined;
      batch.length = 0;
      batchBytes = 0;
    }
  }

  /** Ends the stream: gracefully when uWS holds nothing for it, at once when the reader is backed up (its buffer would never drain). */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.backlog > 0) this.res.close();
    else this.res.cork(() => this.res.end());
    this.ended(code, reason);
  }

  /** The client went away (or `close` above forced it). */
  aborted(): void {
    if (this.closed) return;
    this.closed = true;
    this.ended(1001, 'client went away');
  }

  writable(): boolean {
    if (!this.closed && !this.probing) {
      this.probing = true;
      setImmediate(this.probe);
    }
    return true; // uWS drains its own buffer after this returns true
  }

  private readonly probe = (): void => {
    this.probing = false;
    if (this.closed) return;
    this.cork(() => this.send(STREAM_PROBE));
    if (this.backlog === 0) this.handler?.onDrain();
  };

  private ended(code: number, reason: string): void {
    this.released();
    this.handler?.onClose(code, reason, false);
  }
}

/** The stream whose sends `UwsStream.cork` is gathering (cork runs synchronously), and what it gathered. */
let batching: UwsStream | undefined;
const batch: Uint8Array[] = [];
let batchBytes = 0;

/** An SSE comment: what `UwsStream` writes to learn whether uWS drained its buffer. */
const STREAM_PROBE = new Uint8Array([0x3a, 0x0a]); // ":\n"


const EMPTY = new Uint8Array(0);

/** A refusal of session/admission.ts in its HTTP form (core/errors.ts), with Retry-After where it has one. */
function replyRefused(res: uWS.HttpResponse, refused: Refused, extraHeaders: Record<string, string> = {}, state?: Aborted): void {
  reply(res, refusalReply(refused), extraHeaders, false, state);
}

function reply(res: uWS.HttpResponse, r: HttpReply, extraHeaders: Record<string, string> = {}, head = false, state?: Aborted): void {
  if (state?.aborted) return;
  res.cork(() => {
    res.writeStatus(STATUS_TEXT[r.status] ?? String(r.status));
    for (const [k, v] of Object.entries(r.headers)) res.writeHeader(k, v);
    for (const [k, v] of Object.entries(extraHeaders)) res.writeHeader(k, v);
    if (head) res.endWithoutBody(typeof r.body === 'string' ? Buffer.byteLength(r.body) : r.body.length);
    else res.end(r.body);
  });
}

/** Chunks written per event-loop turn before yielding, so one export never holds up other connections for long. */
const CHUNKS_PER_TURN = 16;

/**
 * Streams a history answer (http/history.ts) with chunked encoding: a chunk is rendered only when
 * the socket took the last one (`write` true), else on `onWritable`; at most CHUNKS_PER_TURN per turn.
 * An aborted request stops it; the captured answer is then garbage.
 */
function sendHistory(res: uWS.HttpResponse, r: HttpReply | HistoryStream, state: Aborted): void {
  if (!('next' in r)) return reply(res, r, {}, false, state);
  if (state.aborted) return;
  let waiting = false;
  let scheduled = false;
  const pump = (): void => {
    scheduled = false;
    for (let n = 0; n < CHUNKS_PER_TURN; n++) {
      if (state.aborted) return;
      const chunk = r.next();
      let ok = true;
      res.cork(() => {
        if (chunk === undefined) res.end();
        else ok = res.write(chunk);
      });
      if (chunk === undefined) return;
      if (!ok) {
        waiting = true; // the socket holds this chunk; go on when it drained
        return;
      }
    }
    scheduled = true;
    setImmediate(pump);
  };
  res.onWritable(() => {
    if (waiting && !scheduled) {
      waiting = false;
      pump();
    }
    return true;
  });
  res.cork(() => {
    res.writeStatus(STATUS_TEXT[r.status]!);
    for (const [k, v] of Object.entries(r.headers)) res.writeHeader(k, v);
  });
  pump();
}

/** Replies now, or once a reply that waits for storage is ready. */
function replyWhenReady(res: uWS.HttpResponse, r: HttpReply | Promise<HttpReply>, state: Aborted): void {
  if (r instanceof Promise) void r.then((ready) => reply(res, ready, {}, false, state));
  else reply(res, r, {}, false, state);
}

/** Reads a request body of at most `limit` bytes, copying each chunk (uWS reuses them). */
function readBody(res: uWS.HttpResponse, state: Aborted, limit: number, done: (body: Uint8Array) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let refused = false;
  res.onData((chunk, isLast) => {
    if (refused || state.aborted) return;
    size += chunk.byteLength;
    if (size > limit) {
      refused = true;
      reply(res, errorReply(413, ErrorCode.payloadTooLarge, `body exceeds maxPayloadBytes ${limit}`), { Connection: 'close' }, false, state);
      return;
    }
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  });
}

/** Where the bundled dashboard stays reachable whatever --static serves at /. */
const DASHBOARD_PREFIX = '/topicast';

function serveStatic(res: uWS.HttpResponse, state: Aborted, root: string, path: string, head: boolean): void {
  loadStatic(root, path).then(
    (r) => {
      if (r.kind === 'bad-path') return reply(res, errorReply(400, 0, 'bad path'), {}, false, state);
      if (r.kind === 'not-found') return reply(res, errorReply(404, 0, 'not found'), {}, head, state);
      const headers: Record<string, string> = {
        'Content-Type': r.contentType,
        'X-Content-Type-Options': 'nosniff',
        'Cache-Control': r.contentType.startsWith('text/html') ? 'no-cache' : 'public, max-age=300',
      };
      reply(res, { status: 200, headers, body: r.body }, {}, head, state);
    },
    () => reply(res, errorReply(500, ErrorCode.internal, 'internal error'), {}, false, state),
  );
}
