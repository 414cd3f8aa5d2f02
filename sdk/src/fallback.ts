/**
 * Which transport the client dials (broker PROTOCOL.md §10.5): its second state machine, kept
 * out of client.ts. `via: 'auto'` (the default) dials WebSocket; when a WebSocket attempt fails
 * before the broker's WELCOME (a refused upgrade, a proxy's answer, a timeout), the next attempt
 * goes over HTTP streaming at once; when that fails too, the one after tries WebSocket again, so
 * an outage alternates. While open over HTTP, WebSocket is probed every `webSocketRetryMs`; once
 * a probe opens, the client moves back (a planned reconnect, like leaving a draining node).
 * `via: 'websocket'` or `'sse'` forces one.
 */

/**
 * The transport a client uses: WebSocket, or HTTP streaming (Server-Sent Events plus POSTs).
 * @example
 * if (client.transport === 'sse') banner.textContent = 'connected without WebSocket';
 */
export type TransportKind = 'websocket' | 'sse';

/**
 * What the client may use: both (WebSocket first), or only one.
 * @example
 * const client = await connect(url, { via: 'sse' }); // never tries WebSocket
 */
export type Via = 'auto' | TransportKind;

/**
 * Default `webSocketRetryMs`. 60 s: a proxy that refused the upgrade rarely changes its mind sooner, and a probe costs one handshake.
 * @example
 * await connect(url, { webSocketRetryMs: 5 * DEFAULT_WEBSOCKET_RETRY_MS });
 */
export const DEFAULT_WEBSOCKET_RETRY_MS = 60_000;

export class TransportChoice {
  /** The transport of the current or last attempt. */
  current: TransportKind;
  private webSocketFailed = false;

  constructor(readonly via: Via) {
    this.current = via === 'sse' ? 'sse' : 'websocket';
  }

  /** The transport for the next attempt. */
  next(): TransportKind {
    if (this.via !== 'auto') return (this.current = this.via);
    return (this.current = this.webSocketFailed ? 'sse' : 'websocket');
  }

  /** An attempt failed before WELCOME; returns true when the next one switches transport (dial it at once). */
  failedToOpen(): boolean {
    if (this.via !== 'auto') return false;
    this.webSocketFailed = this.current === 'websocket';
    return true;
  }

  /** A connection opened over the current transport. */
  opened(): void {
    if (this.current === 'websocket') this.webSocketFailed = false;
  }

  /** Whether WebSocket should be probed while open (auto, currently on HTTP streaming). */
  get probing(): boolean {
    return this.via === 'auto' && this.current === 'sse';
  }

  /** A probe opened a WebSocket: the next attempt uses it. */
  webSocketWorks(): void {
    this.webSocketFailed = false;
  }
}
