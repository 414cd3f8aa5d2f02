/**
 * The seam between transports and protocols: a transport (uws.ts, tcp.ts)
 * opens a ConnectionHandler per connection from a ProtocolHandler and feeds it
 * bytes; the protocol never sees a socket.
 *
 * A ProtocolHandler is also the whole plug-in: it says where it is reached (a WebSocket
 * path and subprotocol, HTTP streams and requests), how it drains and closes, and its name
 * for the counters and /metrics. The transports, the drain and the composition root read
 * these and name no protocol: adding one is its folder plus one line in broker.ts.
 */
import type { Principal } from './principal.js';
import type { Connection } from './connection.js';

export interface ConnectionHandler {
  /** One transport message (a WebSocket message or a TCP chunk). `bytes` is valid only during the call: copy what you keep. */
  onMessage(bytes: Uint8Array): void;
  /** The transport buffer drained: write more. */
  onDrain(): void;
  /** The transport closed (either side). `clean` is true for a close the client initiated with a normal code. */
  onClose(code: number, reason: string, clean: boolean): void;
}

/** A WebSocket endpoint of a protocol on the HTTP port. */
export interface WebSocketEndpoint {
  /** The path, e.g. `/ws`. */
  readonly path: string;
  /** The subprotocol a client must offer (`Sec-WebSocket-Protocol`). */
  readonly subprotocol: string;
  /** Largest WebSocket message taken (close 1009 beyond); Infinity where the protocol bounds its own packets. */
  readonly maxMessageBytes: number;
  /**
   * `upgrade`: with authentication on, the token of the upgrade (PROTOCOL.md §1) is checked while
   * the socket opens and `open` gets the principal; `in-band`: the protocol authenticates itself (MQTT CONNECT).
   */
  readonly authentication: 'upgrade' | 'in-band';
}

/** An HTTP answer without a stream: a status, and for an error the code and message of its JSON body. */
export interface HttpAnswer {
  readonly status: number;
  readonly code?: number;
  readonly message?: string;
}

/** A checked stream request, ready to start once its credentials are known. */
export interface StreamStart {
  /** A token from the query (EventSource can send no header); never log it. */
  readonly token: string | undefined;
  /** Checks against the authenticated principal: a refusal to answer, or undefined to go on. */
  check(principal: Principal | undefined): HttpAnswer | undefined;
  /** Starts the stream on a response already answered 200 with the endpoint's headers. */
  open(conn: Connection, principal: Principal | undefined): ConnectionHandler;
}

/**
 * A `GET` on the HTTP port that becomes a long-lived connection (an event stream). The transport
 * admits it like a WebSocket upgrade (session/admission.ts) and authenticates its bearer header,
 * `topicast_token` cookie or `token` in the query.
 */
export interface StreamEndpoint {
  readonly path: string;
  /** Response headers of the stream (its content type, caching). */
  readonly headers: Readonly<Record<string, string>>;
  /** Reads the query and headers (`header(name)`, lower case; empty when absent): a refusal, or the stream to start. */
  accept(query: string, header: (name: string) => string): StreamStart | HttpAnswer;
}

/** Requests under a path prefix answered by the protocol (e.g. an emulated session's POSTs). */
export interface RequestEndpoint {
  /** The prefix, e.g. `/api/session/`; the rest of the path is handed to `handle`. */
  readonly prefix: string;
  readonly methods: readonly string[];
  /** Largest body taken (413 beyond). */
  readonly maxBodyBytes: number;
  handle(method: string, rest: string, query: string, body: Uint8Array): HttpAnswer;
}

export interface ProtocolHandler {
  /** The protocol's name: its key in `counters.open` and its label in /metrics. */
  readonly name: string;
  /** `principal`: who the transport authenticated (an `upgrade` WebSocket, a stream); protocols that authenticate in-band ignore it. */
  open(conn: Connection, principal?: Principal): ConnectionHandler;
  /** Its WebSocket endpoint, if any. */
  readonly websocket?: WebSocketEndpoint;
  /** Its HTTP streams, if any. */
  readonly streams?: readonly StreamEndpoint[];
  /** Its HTTP request endpoints, if any. */
  readonly requests?: readonly RequestEndpoint[];
  /**
   * Drain (session/drain.ts): tell this protocol's connections to leave over `windowMs` (each at its
   * own moment), counting in its own metrics; returns a cancel for what is still scheduled.
   */
  drain?(windowMs: number): () => void;
  /** Closes every connection of the protocol (graceful shutdown): clients retry elsewhere. */
  closeAll?(): void;
}
