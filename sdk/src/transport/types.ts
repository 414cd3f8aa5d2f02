/**
 * The seam between the client and a WebSocket implementation. transport/browser.ts
 * wraps the native WebSocket, transport/node.ts the `ws` package; the package.json
 * `imports` map (`#transport`) picks one per platform, so `ws` never reaches a
 * browser bundle. Tests pass a fake through the `transport` connect option.
 *
 * Contract: after `open` the transport calls `message` once per binary message, in
 * order; it calls `close` exactly once, last (also when opening fails, after `error`);
 * no callback runs synchronously inside the factory call, `send`, `close` or `terminate`.
 */

/**
 * Callbacks a transport calls.
 * @example
 * const t: Transport = (url, protocols, on: TransportHandlers) => { const s = open(url); s.onbytes = (b) => on.message(b); return s; };
 */
export interface TransportHandlers {
  open(): void;
  /** One binary WebSocket message. A text message is reported through `error`, then the socket is dropped with close 1002. */
  message(data: Uint8Array): void;
  /** The socket is gone (1006 when it vanished without a close frame). Called exactly once. */
  close(code: number, reason: string): void;
  /** Diagnostic: a failure the `close` that follows is caused by. */
  error(error: Error): void;
}

/**
 * One WebSocket, as the client uses it.
 * @example
 * const socket: TransportSocket = { send: (d) => ws.send(d), close: (c, r) => ws.close(c, r), terminate: () => ws.close(), get bufferedAmount() { return ws.bufferedAmount; } };
 */
export interface TransportSocket {
  send(data: Uint8Array): void;
  /** Starts a clean close handshake with `code` (1000 clears the will on the broker). */
  close(code: number, reason: string): void;
  /** Drops the connection now without a handshake (used for dead connections). */
  terminate(): void;
  /** Bytes queued by `send` and not yet written. */
  readonly bufferedAmount: number;
}

/**
 * Opens a WebSocket to `url` offering `protocols` as `Sec-WebSocket-Protocol`.
 * @example
 * const client = await connect(url, { transport: (url, protocols, on) => myFakeSocket(url, protocols, on) });
 */
export type Transport = (url: string, protocols: string[], handlers: TransportHandlers) => TransportSocket;
